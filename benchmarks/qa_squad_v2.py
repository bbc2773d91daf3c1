"""SQuAD 2.0 (unanswerable questions): HasAns / NoAns / overall EM and F1 as the official v2 script.

    python benchmarks/qa_squad_v2.py

../shared/data/squad_v2/dev-v2.0.json holds 16 articles: the first 12 are training data, the last 4
the report split. A span_qa reader (MiniLM-L6) trains on articles 0..12 as ``nlpforge train`` does
(unanswerable questions train towards token 0; the questions of every tenth context are held out and
the null-score threshold of best F1 on them, the official ``find_best_thresh``, is saved with the
reader), then the report split is scored at that learnt threshold, and also at threshold 0 (answer
whenever a span beats the null score). Writes benchmarks/results/qa_squad_v2.json.
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
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=MINILM)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
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
                    "report_articles": [12, 16], "settings": settings,
                    "command": "python " + " ".join(sys.argv)}
    with tempfile.TemporaryDirectory() as tmp:
        reader = str(args.reader or args.keep or Path(tmp) / "reader")
        if args.reader:  # its training settings are those of the run that wrote it, not these flags
            record["reader"] = reader
            del record["settings"]
        else:
            start = time.perf_counter()
            finetune(FinetuneArgs(task="span_qa", model=args.model, train=str(SQUAD_V2), out=reader, progress=False,
                                  save_every=10**9, log_every=100, data={"articles": (0, 12)},
                                  max_train_examples=args.train_limit, **settings))
            record["train_seconds"] = round(time.perf_counter() - start, 1)
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
        record["report"] = score((12, 16), threshold)
        record["report_at_threshold_0"] = score((12, 16), 0.0)
    record["machine"] = machine_record()
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in record.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
