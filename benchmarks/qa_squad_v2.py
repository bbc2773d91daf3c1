"""SQuAD 2.0 (unanswerable questions): HasAns / NoAns / overall EM and F1 as the official v2 script.

    python benchmarks/qa_squad_v2.py

../shared/data/squad_v2/dev-v2.0.json holds 16 articles: the first 12 are training data, the last 4
the report split. About 2,000 answerable questions are too few for a small encoder to learn spans that
depend on the question while half the windows teach the null answer, so training has two stages:

1. (``--v1-epochs``, 0 to skip) SQuAD v1.1 (../shared/data/squad_v1.1): every article whose title is
   not one of the four report articles, answerable questions only;
2. the reader of stage 1 goes on training on v2 articles 0..12 as ``nlpforge train`` does
   (unanswerable questions train towards token 0; the questions of every tenth context are held out
   and the null-score threshold of best F1 on them, the official ``find_best_thresh``, is saved with
   the reader).

The report split is scored at that learnt threshold, at threshold 0 (answer whenever a span beats the
null score) and never abstaining (HasAns then measures the spans alone). Writes benchmarks/results/qa_squad_v2.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SQUAD_V2 = ROOT.parent / "shared" / "data" / "squad_v2" / "dev-v2.0.json"
SQUAD_V1 = ROOT.parent / "shared" / "data" / "squad_v1.1" / "dev-v1.1.json"
REPORT_ARTICLES = (12, 16)


def write_v1_without_report_titles(out: Path) -> dict:
    """SQuAD v1.1 minus the articles titled as a v2 report article (their answerable questions are
    the v2 report's): written to ``out``; returns what it holds."""
    report = {a["title"] for a in json.loads(SQUAD_V2.read_text(encoding="utf-8"))["data"][slice(*REPORT_ARTICLES)]}
    squad = json.loads(SQUAD_V1.read_text(encoding="utf-8"))
    kept = [a for a in squad["data"] if a["title"] not in report]
    out.write_text(json.dumps({**squad, "data": kept}), encoding="utf-8")
    questions = sum(len(p["qas"]) for a in kept for p in a["paragraphs"])
    return {"data": "squad_v1.1 dev-v1.1.json", "articles": len(kept), "questions": questions,
            "left_out": sorted(report & {a["title"] for a in squad["data"]})}
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=MINILM)
    parser.add_argument("--v1-epochs", type=float, default=1.0,
                        help="stage 1: epochs on SQuAD v1.1 without the report titles (0: start from --model)")
    parser.add_argument("--v1-reader", type=Path, help="start stage 2 from this stage-1 reader (a --keep "
                        "directory's v1.1/) instead of training one")
    parser.add_argument("--epochs", type=float, default=1.0, help="stage 2: epochs on SQuAD 2.0 articles 0..12")
    parser.add_argument("--v1-learning-rate", type=float, default=1e-4)
    parser.add_argument("--learning-rate", type=float, default=5e-5, help="stage 2")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--keep", type=Path, help="keep the trained reader here")
    parser.add_argument("--reader", type=Path, help="score this reader (trained on articles 0..12 before, e.g. a "
                        "--keep directory) instead of training one")
    parser.add_argument("--train-limit", type=int, default=0, help="first N training questions (0: all; a smoke run)")
    parser.add_argument("--eval-limit", type=int, default=0, help="first N questions of each scored split (0: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "qa_squad_v2.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine import machine_record
    from nlpforge.checkpoint import load_checkpoint
    from nlpforge.recipes.finetune import FinetuneArgs, finetune
    from nlpforge.tasks import DataOptions, get_task

    task = get_task("span_qa")
    settings = dict(epochs=args.epochs, batch_size=32, learning_rate=args.learning_rate, max_length=args.max_length)
    record: dict = {"benchmark": "qa_squad_v2", "model": args.model, "train_articles": [0, 12],
                    "threshold": "learnt in training on every 10th context of the training articles",
                    "report_articles": list(REPORT_ARTICLES), "settings": settings,
                    "command": "python " + " ".join(sys.argv)}

    def train(model: str, data: Path, out: str, options: dict) -> float:
        start = time.perf_counter()
        finetune(FinetuneArgs(task="span_qa", model=model, train=str(data), out=out, progress=False,
                              save_every=10**9, log_every=100, data=options, max_train_examples=args.train_limit,
                              **settings))
        return round(time.perf_counter() - start, 1)

    with tempfile.TemporaryDirectory() as tmp:
        reader = str(args.reader or args.keep or Path(tmp) / "reader")
        if args.reader:  # its training settings are those of the run that wrote it, not these flags
            record["reader"] = reader
            del record["settings"]
        else:
            start_from = args.model
            if args.v1_reader:
                start_from = str(args.v1_reader)
                record["stage_1"] = {"reader": start_from}
            elif args.v1_epochs:
                v1 = Path(tmp) / "squad_v1.json"
                record["stage_1"] = write_v1_without_report_titles(v1)
                start_from = str(args.keep.with_name(args.keep.name + "_v1") if args.keep else Path(tmp) / "v1")
                stage_2 = dict(settings)
                settings.update(epochs=args.v1_epochs, learning_rate=args.v1_learning_rate)
                record["stage_1"]["settings"] = dict(settings)
                record["stage_1"]["train_seconds"] = train(args.model, v1, start_from, {})
                settings.update(stage_2)
            record["train_seconds"] = train(start_from, SQUAD_V2, reader, {"articles": (0, 12)})
        loaded = load_checkpoint(reader)

        def score(articles: tuple[int, int], threshold: float | None) -> dict:
            options = DataOptions(articles=articles, null_threshold=threshold)
            examples = task.read(SQUAD_V2, options)[: args.eval_limit or None]
            metrics = task.evaluate(loaded.model, loaded.tokenizer, examples, None, args.max_length, 64,
                                    dataclasses.replace(options, articles=None))
            return {k: round(v, 2) if isinstance(v, float) else v for k, v in metrics.items()}

        threshold = loaded.task.null_threshold
        if threshold is None:
            raise SystemExit(f"{reader} has no learnt no-answer threshold (trained without unanswerable questions)")
        record["threshold"] = round(threshold, 4)
        record["report"] = score(REPORT_ARTICLES, threshold)
        record["report_at_threshold_0"] = score(REPORT_ARTICLES, 0.0)
        # never abstaining: HasAns is then the quality of the spans alone, apart from the no-answer decision
        record["report_never_abstaining"] = score(REPORT_ARTICLES, 1e9)
    record["machine"] = machine_record()
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in record.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
