"""Open-domain SQuAD: retrieve over paragraphs, then read, beside the reader given the right paragraph.

    python benchmarks/qa_open_squad.py --reader benchmarks/work/qa/squad
    python benchmarks/qa_open_squad.py --corpus all --reader benchmarks/work/qa/squad

The questions of the 10 report articles of ../shared/data/squad_v1.1/dev-v1.1.json (38..48) are
answered from an index (``nlpforge.qa``) over every paragraph of those 10 articles (--corpus
report) or of all 48 (--corpus all, harder: 4.8x the paragraphs). Each paragraph is one document
of a JSONL file, so passages are whole paragraphs, as the reader was trained on. Reported: recall@1/5/20
of BM25, dense (--encoder, default MiniLM-L6) and hybrid; the reader's EM / F1 reading the top
--top-k passages of each retriever, and reading the gold paragraph (the oracle); questions per
second end to end (retrieval + reading). Without --reader only retrieval is measured.
Writes benchmarks/results/qa_open_squad_<corpus>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SQUAD = ROOT.parent / "shared" / "data" / "squad_v1.1" / "dev-v1.1.json"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
REPORT_ARTICLES = (38, 48)


def write_paragraphs(out: Path, articles: tuple[int, int]) -> int:
    """The paragraphs of ``articles`` as JSONL documents (title, text); returns how many."""
    data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"][articles[0]:articles[1]]
    count = 0
    with out.open("w", encoding="utf-8") as file:
        for article in data:
            for paragraph in article["paragraphs"]:
                file.write(json.dumps({"title": article["title"], "text": paragraph["context"]}) + "\n")
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reader", help="a span_qa checkpoint trained on articles 0..38")
    parser.add_argument("--encoder", default=MINILM)
    parser.add_argument("--corpus", choices=("report", "all"), default="report")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions (0: all)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine import machine_record
    from nlpforge.data.squad import read_squad
    from nlpforge.predictor import Predictor
    from nlpforge.qa.answer import DocumentQA, evaluate_open, retrieval_recall
    from nlpforge.qa.index import build_index
    from nlpforge.tasks import DataOptions, get_task

    examples = read_squad(SQUAD, REPORT_ARTICLES)[: args.limit or None]
    record: dict = {"benchmark": "qa_open_squad", "corpus": args.corpus, "questions": len(examples),
                    "encoder": args.encoder, "reader": args.reader, "top_k": args.top_k,
                    "command": "python " + " ".join(sys.argv)}
    with tempfile.TemporaryDirectory() as tmp:
        documents = Path(tmp) / "paragraphs.jsonl"
        record["paragraphs"] = write_paragraphs(documents, (0, 48) if args.corpus == "all" else REPORT_ARTICLES)
        start = time.perf_counter()
        index = build_index([documents], Path(tmp) / "index", "hybrid", args.encoder, passage_chars=100_000,
                            progress=False)
        record["index_seconds"] = round(time.perf_counter() - start, 1)
        record["retrieval"] = {}
        for retriever in ("bm25", "dense", "hybrid"):
            start = time.perf_counter()
            recall = retrieval_recall(index, examples, retriever)
            record["retrieval"][retriever] = {**recall, "queries_per_s": round(len(examples) / (time.perf_counter()
                                                                                               - start), 1)}
            print(json.dumps({retriever: record["retrieval"][retriever]}), flush=True)
        if args.reader:
            reader = Predictor.load(args.reader)
            task = get_task("span_qa")
            start = time.perf_counter()
            oracle = task.evaluate(reader.model, reader.tokenizer, examples, None, reader.max_length, 64,
                                   DataOptions())
            record["oracle_paragraph"] = {"exact_match": round(oracle["exact_match"], 2), "f1": round(oracle["f1"], 2),
                                          "questions_per_s": round(len(examples) / (time.perf_counter() - start), 2)}
            record["open"] = {}
            for retriever in ("bm25", "dense", "hybrid"):
                report = evaluate_open(DocumentQA(index, reader, args.top_k, retriever), examples,
                                       retrievers=(retriever,), progress=False)
                record["open"][retriever] = {k: report[k] for k in ("exact_match", "f1", "questions_per_s")}
                print(json.dumps({retriever: record["open"][retriever]}), flush=True)
    record["machine"] = machine_record()
    out = args.out or ROOT / "benchmarks" / "results" / f"qa_open_squad_{args.corpus}.json"
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in record.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
