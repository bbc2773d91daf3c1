"""Streaming a large corpus into pre-training blocks: throughput and peak memory of
iter_documents -> iter_token_blocks -> 512-token blocks. Target: peak RSS under 1.5 GB on a 2 GB file.

    python benchmarks/pretrain_corpus.py [--size-gb 2] [--tokenizer wordpiece|PATH]
        ->  benchmarks/results/pretrain_corpus.json   (--size-gb 0.05 for a smoke run)

1. Writes a plain-text file of --size-gb (benchmarks/work/pretrain_corpus/corpus.txt, git-ignored):
   documents of 1-4 lines drawn from ../shared/data/corpus_zh (the <doc> tags of zhwiki_00 left out)
   and corpus_en, Chinese and English in turn, a blank line after each, each pass over the sources
   shuffled again (seeded), until the size is reached.
2. Tokenizer: ``wordpiece`` (default) trains one with nlpforge.tokenizer_training on corpus_zh and
   corpus_en/valid.txt (21,128 tokens as bert-base-chinese); or a tokenizer directory, e.g.
   ../shared/models/multilingual-e5-small-zhen.
3. Reads the train part (the first 95% of the file) twice: documents only (iter_documents: line
   reading, sentence splitting), then the whole pipeline into --block-size blocks (each block's ids
   are counted and dropped, as a training loop would consume them).
Peak RSS: psutil's RSS sampled every 0.2 s during each pass, and ru_maxrss for the whole process.
The generated file is deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WORK = ROOT / "benchmarks" / "work" / "pretrain_corpus"
TARGET_RSS_GB = 1.5


def source_lines() -> tuple[list[str], list[str]]:
    """Non-empty lines of the Chinese and English corpora (WikiExtractor tags left out)."""
    def lines_of(paths: list[Path]) -> list[str]:
        out = []
        for path in paths:
            for line in path.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith(("<doc", "</doc>")):
                    out.append(line)
        return out

    return (lines_of(sorted((SHARED / "data" / "corpus_zh").glob("*.txt"))),
            lines_of(sorted((SHARED / "data" / "corpus_en").glob("*.txt"))))


def generate(path: Path, size_bytes: int, seed: int = 0) -> int:
    """Write documents of 1-4 lines, Chinese and English in turn, until ``size_bytes``; returns the size."""
    zh, en = source_lines()
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(path, "wb") as handle:
        while written < size_bytes:
            zh_order, en_order = zh[:], en[:]
            rng.shuffle(zh_order)
            rng.shuffle(en_order)
            zi = ei = 0
            chunk: list[str] = []
            while (zi < len(zh_order) or ei < len(en_order)) and written < size_bytes:
                for source, at in ((zh_order, zi), (en_order, ei)):
                    count = rng.randint(1, 4)
                    chunk.extend(source[at:at + count])
                    chunk.append("")
                zi, ei = zi + rng.randint(1, 4), ei + rng.randint(1, 4)
                if len(chunk) > 2000:
                    data = ("\n".join(chunk) + "\n").encode("utf-8")
                    handle.write(data)
                    written += len(data)
                    chunk = []
            if chunk and written < size_bytes:
                data = ("\n".join(chunk) + "\n").encode("utf-8")
                handle.write(data)
                written += len(data)
    return path.stat().st_size


class RssSampler:
    """The largest RSS (bytes) of this process seen every ``interval`` seconds while running."""

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self.process, self.interval, self.peak = psutil.Process(), interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def gb(value: float) -> float:
    return round(value / 1e9, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=2.0, help="Size of the generated corpus file.")
    parser.add_argument("--block-size", type=int, default=512)
    parser.add_argument("--batch-lines", type=int, default=1000, help="Sentences per tokenizer call.")
    parser.add_argument("--tokenizer", default="wordpiece",
                        help="'wordpiece' (trained here on corpus_zh + corpus_en/valid.txt) or a tokenizer directory.")
    parser.add_argument("--keep", action="store_true", help="Keep the generated corpus file.")
    parser.add_argument("--note", default="", help="A remark stored in the JSON (why this size, say).")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pretrain_corpus.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from transformers import AutoTokenizer

    from machine import machine_record
    from nlpforge.data.corpus import corpus_files, heldout_start, iter_documents, iter_token_blocks
    from nlpforge.tokenizer_training import train_tokenizer

    corpus = WORK / "corpus.txt"
    load_before = os.getloadavg()
    start = time.perf_counter()
    size = generate(corpus, int(args.size_gb * 1e9))
    generate_s = time.perf_counter() - start
    print(f"generated {corpus}: {size / 1e6:,.0f} MB in {generate_s:.0f} s", file=sys.stderr, flush=True)

    tokenizer_record: dict[str, object] = {"name": args.tokenizer}
    if args.tokenizer == "wordpiece":
        sources = [SHARED / "data" / "corpus_zh", SHARED / "data" / "corpus_en" / "valid.txt"]
        tokenizer_record.update(train_tokenizer(sources, "wordpiece", 21128, WORK / "tokenizer"))
        tokenizer_dir = WORK / "tokenizer"
    else:
        tokenizer_dir = Path(args.tokenizer)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer_record["vocab_size"] = len(tokenizer)

    files = corpus_files([corpus])
    train_bytes = heldout_start(corpus, 0.05)
    rss_before = RssSampler().process.memory_info().rss

    with RssSampler() as read_rss:
        start = time.perf_counter()
        documents = sentences = 0
        for document in iter_documents(files, part="train"):
            documents += 1
            sentences += len(document)
        read_s = time.perf_counter() - start
    print(f"documents only: {train_bytes / 1e6 / read_s:.1f} MB/s, {documents:,} documents", file=sys.stderr,
          flush=True)

    with RssSampler() as pipeline_rss:
        start = time.perf_counter()
        blocks = 0
        report_at = time.perf_counter() + 60
        for block in iter_token_blocks(tokenizer, iter_documents(files, part="train"), args.block_size,
                                       args.batch_lines):
            blocks += 1
            if len(block) != args.block_size:
                raise AssertionError(f"block {blocks} has {len(block)} ids")
            if time.perf_counter() > report_at:
                report_at += 60
                done = blocks * args.block_size
                print(f"  {blocks:,} blocks ({done / 1e6:,.0f}M tokens) after {time.perf_counter() - start:.0f} s, "
                      f"RSS now {gb(pipeline_rss.process.memory_info().rss)} GB", file=sys.stderr, flush=True)
        pipeline_s = time.perf_counter() - start
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    results = {
        "file_bytes": size, "train_part_bytes": train_bytes, "generate_s": round(generate_s, 1),
        "documents": documents, "sentences": sentences, "blocks": blocks, "tokens": blocks * args.block_size,
        "read_only": {"seconds": round(read_s, 1), "mb_per_s": round(train_bytes / 1e6 / read_s, 2),
                      "peak_rss_gb": gb(read_rss.peak)},
        "pipeline": {"seconds": round(pipeline_s, 1), "mb_per_s": round(train_bytes / 1e6 / pipeline_s, 2),
                     "tokens_per_s": round(blocks * args.block_size / pipeline_s),
                     "peak_rss_gb": gb(pipeline_rss.peak)},
        "rss_before_streaming_gb": gb(rss_before),
        "ru_maxrss_gb": gb(max_rss),
        "load_average_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "under_target": max(read_rss.peak, pipeline_rss.peak, max_rss) < TARGET_RSS_GB * 1e9,
    }
    record = {"benchmark": "pretrain_corpus", "target_peak_rss_gb": TARGET_RSS_GB, "machine": machine_record(),
              "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", "(unset: Rust default)"),
              "command": " ".join(["python", "benchmarks/pretrain_corpus.py", *sys.argv[1:]]),
              "settings": {"size_gb": args.size_gb, "block_size": args.block_size, "batch_lines": args.batch_lines,
                           "part": "train (heldout_share 0.05)"}, "note": args.note,
              "tokenizer": tokenizer_record, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, args.out)
    print(json.dumps(results, indent=2))
    if not args.keep:
        corpus.unlink()


if __name__ == "__main__":
    main()
