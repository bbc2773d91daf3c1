"""Community QA on AFQMC: find the FAQ question that asks the same thing, answer with its answer.

    python benchmarks/qa_cqa_afqmc.py --reranker benchmarks/work/afqmc   # a classify checkpoint on AFQMC train
    python benchmarks/qa_cqa_afqmc.py --keep benchmarks/work/afqmc       # trains that checkpoint first

The FAQ is built from AFQMC dev (../shared/data/afqmc): the second question of every pair is an
FAQ entry, answered by its pair's id; the first question of every positive pair is asked, and the
right match is its own pair's second question (compared as text, so a duplicate entry counts too).
Every other entry is a distractor, among them the second questions of the negative pairs, which
AFQMC drew to look like their first. Reported: P@1 and recall@N of BM25, dense (e5-small-zhen,
mean-pooled) and hybrid retrieval alone; P@1 once a pair classifier re-ranks the hybrid top N
(``nlpforge cqa ask --reranker``); the classifier's accuracy on the dev pairs (``nlpforge cqa
eval``); questions per second. Without --reranker a classifier is trained on AFQMC train first
(1 epoch, lr 5e-5, batch 32, max length 64: the spec of benchmarks/finetune_tasks.py).
Writes benchmarks/results/qa_cqa_afqmc.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AFQMC = ROOT.parent / "shared" / "data" / "afqmc"
E5 = str(ROOT.parent / "shared" / "models" / "multilingual-e5-small-zhen")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reranker", help="a classify checkpoint trained on AFQMC train (default: train one)")
    parser.add_argument("--keep", type=Path, help="where the trained classifier is kept (default: a temp dir)")
    parser.add_argument("--encoder", default=E5)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions asked (0: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "qa_cqa_afqmc.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine import machine_record
    from nlpforge.predictor import Predictor
    from nlpforge.qa.cqa import CommunityQA, build_faq_index, evaluate_pairs, read_pairs
    from nlpforge.qa.index import QAIndex
    from nlpforge.recipes.configs import FinetuneArgs
    from nlpforge.recipes.finetune import finetune
    from nlpforge.tasks import DataOptions

    pairs = read_pairs(AFQMC / "dev.txt")
    asked = [(a, b) for a, b, label in pairs if label == "1"][: args.limit or None]
    record: dict = {"benchmark": "qa_cqa_afqmc", "faq_entries": len(pairs), "questions": len(asked),
                    "encoder": args.encoder, "candidates": args.candidates, "command": "python " + " ".join(sys.argv)}
    with tempfile.TemporaryDirectory() as tmp:
        reranker = args.reranker
        if reranker is None:
            reranker = str(args.keep or Path(tmp) / "afqmc")
            settings = dict(epochs=1, batch_size=32, learning_rate=5e-5, max_length=64, group_by_length=True)
            start = time.perf_counter()
            finetune(FinetuneArgs(task="classify", model=args.encoder, train=str(AFQMC / "train.txt"), out=reranker,
                                  progress=False, save_every=10**9, log_every=200,
                                  data=DataOptions(text_column=0, text_pair_column=1, label_column=2), **settings))
            record["reranker_training"] = {**settings, "train": "afqmc/train.txt",
                                           "seconds": round(time.perf_counter() - start, 1)}
        record["reranker"] = reranker
        faq = Path(tmp) / "faq.tsv"
        faq.write_text("".join(f"{b}\tpair {i}\n" for i, (_, b, _) in enumerate(pairs)), encoding="utf-8")
        start = time.perf_counter()
        build_faq_index(faq, Path(tmp) / "index", "hybrid", args.encoder, progress=False)
        record["index_seconds"] = round(time.perf_counter() - start, 1)
        index = QAIndex.load(Path(tmp) / "index")
        record["retrieval"] = {}
        for retriever in ("bm25", "dense", "hybrid"):
            start = time.perf_counter()
            hits = [[p.text for p, _ in index.search(a, args.candidates, retriever)] for a, _ in asked]
            seconds = time.perf_counter() - start
            found = [(h, b) for h, (_, b) in zip(hits, asked, strict=True)]
            record["retrieval"][retriever] = {
                "p@1": round(100.0 * sum(bool(h) and h[0] == b for h, b in found) / len(asked), 2),
                f"recall@{args.candidates}": round(100.0 * sum(b in h for h, b in found) / len(asked), 2),
                "questions_per_s": round(len(asked) / seconds, 1)}
            print(json.dumps({retriever: record["retrieval"][retriever]}), flush=True)
        classifier = Predictor.load(reranker)
        community = CommunityQA(index, classifier, args.candidates)
        start = time.perf_counter()
        answers = community.ask_many([a for a, _ in asked])
        seconds = time.perf_counter() - start
        right = sum(r["matched_question"] == b for r, (_, b) in zip(answers, asked, strict=True))
        record["reranked"] = {"p@1": round(100.0 * right / len(asked), 2),
                              "questions_per_s": round(len(asked) / seconds, 1)}
        record["pairs"] = evaluate_pairs(classifier, pairs)
    record["machine"] = machine_record()
    args.out.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in record.items() if k != "machine"}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
