"""Multiple-choice reading comprehension on C3: accuracy on the dev sets after training on train.

    python benchmarks/qa_c3.py                                   # all of c3-m and c3-d train, 2 epochs
    python benchmarks/qa_c3.py --train-limit 2000 --epochs 1     # a slice (CPU)
    python benchmarks/qa_c3.py --device cuda                     # all of train on a GPU

Trains ``nlpforge train --task multiple_choice`` (e5-small-zhen by default) on the C3 training
questions (mixed-genre ``m`` and dialogue ``d`` files joined), evaluates on both dev files
(../shared/data/c3) and writes benchmarks/results/qa_c3.json with the settings, the seconds and
the accuracy per dev file and overall, beside CLUE's published C3 baselines (``CLUE_C3``).
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
C3 = ROOT.parent / "shared" / "data" / "c3"
E5 = str(ROOT.parent / "shared" / "models" / "multilingual-e5-small-zhen")
# CLUE's reading-comprehension leaderboard table (github.com/CLUEbenchmark/CLUE README), C3 accuracy on
# CLUE's C3 test set (ours is on the public dev files, so the comparison is indicative). The small-model
# baseline is ALBERT-tiny (brightmart/albert_zh, 4-layer).
CLUE_C3 = {"source": "CLUEbenchmark/CLUE README, reading comprehension table, C3 column (test accuracy)",
           "ALBERT-tiny": 50.26, "ALBERT-base": 59.58, "ALBERT-large": 64.41, "ERNIE-base": 64.10,
           "BERT-base": 64.50, "RoBERTa-wwm-ext": 66.50, "RoBERTa-large": 67.55, "XLNet-mid": 67.68,
           "BERT-wwm-ext": 68.50, "ALBERT-xlarge": 70.32, "ALBERT-xxlarge": 73.28, "RoBERTa-wwm-large": 73.82}


def write_jsonl(examples: list, path: Path) -> None:
    with path.open("w", encoding="utf-8") as file:
        for e in examples:
            file.write(json.dumps({"context": e.context, "question": e.question, "choices": e.choices,
                                   "answer": e.answer}, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=E5)
    parser.add_argument("--train-limit", type=int, default=0, help="a random sample of N training questions (0: all)")
    parser.add_argument("--eval-limit", type=int, default=0, help="the first N questions of each dev file (0: all)")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--learning-rate", type=float, default=3e-5)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "qa_c3.json")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (nlpforge train --device)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine import machine_record
    from nlpforge.checkpoint import load_checkpoint
    from nlpforge.device import resolve_device
    from nlpforge.recipes.finetune import FinetuneArgs, finetune
    from nlpforge.tasks import DataOptions, get_task

    task = get_task("multiple_choice")
    train = task.read(C3 / "c3-m-train.json", DataOptions()) + task.read(C3 / "c3-d-train.json", DataOptions())
    if args.train_limit:
        train = random.Random(0).sample(train, args.train_limit)
    settings = dict(epochs=args.epochs, batch_size=8, learning_rate=args.learning_rate, max_length=args.max_length,
                    group_by_length=True)
    record: dict = {"benchmark": "qa_c3", "model": args.model, "train_questions": len(train), "settings": settings,
                    "device": args.device,
                    "command": "python " + " ".join(sys.argv), "clue_baselines": CLUE_C3}
    with tempfile.TemporaryDirectory() as tmp:
        write_jsonl(train, Path(tmp) / "train.jsonl")
        start = time.perf_counter()
        finetune(FinetuneArgs(task="multiple_choice", model=args.model, train=str(Path(tmp) / "train.jsonl"),
                              out=str(Path(tmp) / "model"), progress=False, save_every=10**9, log_every=100,
                              device=args.device, **settings))
        record["train_seconds"] = round(time.perf_counter() - start, 1)
        loaded = load_checkpoint(Path(tmp) / "model")
        loaded.model.to(resolve_device(args.device))
        right = total = 0
        record["dev"] = {}
        for name in ("c3-m-dev.json", "c3-d-dev.json"):
            examples = task.read(C3 / name, DataOptions())[: args.eval_limit or None]
            metrics = task.evaluate(loaded.model, loaded.tokenizer, examples, None, args.max_length, 16, DataOptions())
            record["dev"][name] = {"accuracy": round(metrics["accuracy"], 2), "questions": len(examples)}
            right += metrics["accuracy"] * len(examples) / 100
            total += len(examples)
        record["accuracy"] = round(100.0 * right / total, 2)
        record["above_small_model_baseline"] = record["accuracy"] > CLUE_C3["ALBERT-tiny"]
    record["machine"] = machine_record()
    args.out.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in record.items() if k != "machine"}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
