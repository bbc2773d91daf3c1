"""Encoder inference speed on SST-2 dev with all-MiniLM-L6-v2: transformers vs nlpforge.

(a) transformers' AutoModel on batches in file order, (b) our BertModel on the same batches,
(c) ``nlpforge embed``'s path (embed_texts: tokenise, sort by length, batch, pool, reorder).
Each variant runs in its own subprocess so that its peak RSS is its own; all run in this one
invocation, one after the other, on the same threads. Outputs of (b) are checked against (a).

    python benchmarks/encoder_speed.py --out benchmarks/results/encoder_speed.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def read_sentences(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as handle:
        return [row["text"] for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)]


def file_order_batches(tokenizer, texts: list[str], batch_size: int, max_length: int) -> list[dict]:
    return [tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt") for i in range(0, len(texts), batch_size)]


def run_variant(variant: str, args: argparse.Namespace) -> dict:
    """Time one variant in this process: best of ``--repeats`` passes over all sentences."""
    import torch
    import transformers

    from nlpforge.checkpoint import load_checkpoint
    from nlpforge.embed import embed_texts

    torch.set_num_threads(args.threads)
    texts = read_sentences(args.data)
    ours = load_checkpoint(MODEL, head="base")
    if variant == "transformers":
        model = transformers.AutoModel.from_pretrained(ours.path, dtype=torch.float32).eval()
        del ours.model
    else:
        model = ours.model
    batches = file_order_batches(ours.tokenizer, texts, args.batch_size, args.max_length)

    packed = {} if variant == "transformers" else {"packed": True}  # our inference path

    def one_pass() -> None:
        if variant == "nlpforge_embed":
            embed_texts(model, ours.tokenizer, texts, "mean", args.batch_size, args.max_length, progress=False)
            return
        for batch in batches:
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  token_type_ids=batch["token_type_ids"], **packed)

    with torch.inference_mode():
        model(**{k: v[:2] for k, v in batches[0].items()})  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            one_pass()
            times.append(time.perf_counter() - start)
    best = min(times)
    return {"variant": variant, "sentences": len(texts), "seconds_best": round(best, 4),
            "seconds_all": [round(t, 4) for t in times], "sentences_per_s": round(len(texts) / best, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def max_output_difference(args: argparse.Namespace) -> float:
    """Max |ours - transformers| over the real tokens' last hidden states, all file-order batches."""
    import torch
    import transformers

    from nlpforge.checkpoint import load_checkpoint

    torch.set_num_threads(args.threads)
    ours = load_checkpoint(MODEL, head="base")
    theirs = transformers.AutoModel.from_pretrained(ours.path, dtype=torch.float32).eval()
    worst = 0.0
    with torch.inference_mode():
        for batch in file_order_batches(ours.tokenizer, read_sentences(args.data), args.batch_size, args.max_length):
            real = batch["attention_mask"].bool()
            got = ours.model(**batch, packed=True).last_hidden_state[real]
            difference = got - theirs(**batch).last_hidden_state[real]
            worst = max(worst, float(difference.abs().max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "encoder_speed.json")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args)))
        return
    if not args.data.is_file():
        sys.exit(f"error: {args.data} not found (SST-2 dev from ../shared/data/sst2); pass --data")

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine import machine_record

    results = {}
    for variant in ("transformers", "nlpforge_model", "nlpforge_embed"):
        command = [sys.executable, __file__, "--variant", variant, "--data", str(args.data),
                   "--threads", str(args.threads), "--batch-size", str(args.batch_size),
                   "--max-length", str(args.max_length), "--repeats", str(args.repeats)]
        done = subprocess.run(command, capture_output=True, text=True, check=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(results[variant]), file=sys.stderr)
    reference = results["transformers"]["sentences_per_s"]
    report = {
        "benchmark": "encoder_speed",
        "model": MODEL,
        "data": str(args.data),
        "settings": {"threads": args.threads, "batch_size": args.batch_size, "max_length": args.max_length,
                     "repeats": args.repeats, "timing": "best of repeats, tokenisation excluded for (a) and (b), "
                                                         "included for (c)"},
        "machine": machine_record(),
        "results": results,
        "max_abs_diff_last_hidden_vs_transformers": max_output_difference(args),
        "ratios": {
            "nlpforge_model_vs_transformers": round(results["nlpforge_model"]["sentences_per_s"] / reference, 3),
            "nlpforge_embed_vs_transformers": round(results["nlpforge_embed"]["sentences_per_s"] / reference, 3),
        },
        "targets": {"nlpforge_model_vs_transformers": 1.0, "nlpforge_embed_vs_transformers": 1.5,
                    "max_abs_diff": 1e-4},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"ratios": report["ratios"],
                      "max_abs_diff": report["max_abs_diff_last_hidden_vs_transformers"]}, indent=2))


if __name__ == "__main__":
    main()
