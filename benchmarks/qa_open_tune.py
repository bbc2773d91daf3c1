"""Tune the open-domain answer ranking on training articles: how much a retrieval rank costs.

    python benchmarks/qa_open_tune.py --reader benchmarks/work/qa/squad --questions 600

A question's candidates are the reader's best span in each of its top --top-k passages; the answer
is the candidate with the best reader score - w x retrieval rank (``nlpforge.qa.answer.rank_answers``).
Reading is done once per retriever; every w of --weights then ranks the same candidates. The
questions (a seeded sample of --questions) and the index (every paragraph) come from the training
articles 0..38 of ../shared/data/squad_v1.1/dev-v1.1.json, never from the report articles 38..48
(benchmarks/qa_open_squad.py). The reader was trained on these articles, so its spans there are
more confident than on unseen text: the chosen w is a floor. Writes benchmarks/results/qa_open_tune.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from qa_open_squad import MINILM, SQUAD, write_paragraphs  # noqa: E402

TRAIN_ARTICLES = (0, 38)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reader", required=True, help="a span_qa checkpoint trained on articles 0..38")
    parser.add_argument("--encoder", default=MINILM)
    parser.add_argument("--questions", type=int, default=600)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--weights", default="0,0.25,0.5,1,1.5,2,3,4,6")
    parser.add_argument("--retrievers", default="bm25,hybrid")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "qa_open_tune.json")
    args = parser.parse_args()
    from machine import machine_record
    from nlpforge.data.squad import read_squad
    from nlpforge.predictor import Predictor
    from nlpforge.qa.answer import DocumentQA, rank_answers
    from nlpforge.qa.index import build_index
    from nlpforge.tasks.span_qa import squad_em_f1

    examples = read_squad(SQUAD, TRAIN_ARTICLES)
    examples = random.Random(0).sample(examples, min(args.questions, len(examples)))
    references = [[a.text for a in e.answers] for e in examples]
    weights = [float(w) for w in args.weights.split(",")]
    record: dict = {"benchmark": "qa_open_tune", "articles": list(TRAIN_ARTICLES), "questions": len(examples),
                    "reader": args.reader, "encoder": args.encoder, "top_k": args.top_k,
                    "command": "python " + " ".join(sys.argv), "retrievers": {}}
    reader = Predictor.load(args.reader)
    with tempfile.TemporaryDirectory() as tmp:
        documents = Path(tmp) / "paragraphs.jsonl"
        record["paragraphs"] = write_paragraphs(documents, TRAIN_ARTICLES)
        index = build_index([documents], Path(tmp) / "index", "hybrid", args.encoder, passage_chars=100_000,
                            progress=False)
        for retriever in args.retrievers.split(","):
            qa = DocumentQA(index, reader, args.top_k, retriever)
            start = time.perf_counter()
            candidates = [c for first in range(0, len(examples), 16)
                          for c in qa.read_candidates([e.question for e in examples[first:first + 16]])]
            seconds = time.perf_counter() - start
            grid = {}
            for weight in weights:
                predicted = [rank_answers(c, weight)["answer"] for c in candidates]
                scores = squad_em_f1(predicted, references)
                grid[str(weight)] = {"exact_match": round(scores["exact_match"], 2), "f1": round(scores["f1"], 2)}
            best = max(grid, key=lambda w: (grid[w]["f1"], grid[w]["exact_match"]))
            record["retrievers"][retriever] = {"grid": grid, "best_weight": float(best),
                                               "read_seconds": round(seconds, 1)}
            print(json.dumps({retriever: record["retrievers"][retriever]}), flush=True)
    record["machine"] = machine_record()
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
