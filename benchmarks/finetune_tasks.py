"""Fine-tuning quality on the real datasets of ../shared/data, one JSON record per task.

    python benchmarks/finetune_tasks.py --tasks conll,squad --out benchmarks/results/finetune_tasks.json

Tasks (model, train split -> report split, settings): see TASKS below. ``--train-limit N`` caps
the training examples (time-bound runs; the JSON records the cap). Results are merged into the
output file, so tasks can be run one at a time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
E5 = str(ROOT.parent / "shared" / "models" / "multilingual-e5-small-zhen")
MINILM = "sentence-transformers/all-MiniLM-L6-v2"

# Settings sized for a 2-core CPU session: ``limit`` caps training examples (0 = all); every
# report split is evaluated in full.
TASKS = {
    "conll": dict(task="tag", model=MINILM, train="conll2003/train.txt", eval="conll2003/valid.txt", limit=0,
                  args=dict(epochs=2, batch_size=32, learning_rate=1e-4, max_length=128), target="f1 >= 88"),
    "squad": dict(task="span_qa", model=MINILM, train="squad_v1.1/dev-v1.1.json", eval="squad_v1.1/dev-v1.1.json",
                  limit=0, args=dict(epochs=2, batch_size=32, learning_rate=1e-4, max_length=384, group_by_length=True),
                  train_data=dict(articles=(0, 38)), eval_data=dict(articles=(38, 48)), target="EM >= 50, F1 >= 65"),
    "chnsenticorp": dict(task="classify", model=E5, train="chnsenticorp/train.tsv", eval="chnsenticorp/dev.tsv",
                         limit=0, args=dict(epochs=2, batch_size=32, learning_rate=5e-5, max_length=128,
                                               group_by_length=True),
                         data=dict(text_column="text_a"), target="accuracy >= 92"),
    "tnews": dict(task="classify", model=E5, train="tnews/train.tsv", eval="tnews/dev.tsv", limit=0,
                  args=dict(epochs=2, batch_size=32, learning_rate=5e-5, max_length=64, group_by_length=True),
                  data=dict(text_column=0, label_column=1), target="full-data reference of the few-shot runs"),
    "afqmc": dict(task="classify", model=E5, train="afqmc/train.txt", eval="afqmc/dev.txt", limit=0,
                  args=dict(epochs=1, batch_size=32, learning_rate=5e-5, max_length=64, group_by_length=True),
                  data=dict(text_column=0, text_pair_column=1, label_column=2), target="accuracy >= 70"),
    "msra": dict(task="tag", model=E5, train="msra_ner/train.bio", eval="msra_ner/test.bio", limit=0,
                 args=dict(epochs=1, batch_size=32, learning_rate=1e-4, max_length=128, group_by_length=True),
                 target="f1 >= 90"),
    "cmrc": dict(task="span_qa", model=E5, train="cmrc2018/cmrc2018_trial.json", eval="cmrc2018/cmrc2018_dev.json",
                 limit=0, args=dict(epochs=2, batch_size=16, learning_rate=1e-4, max_length=384),
                 target="EM/F1 reported"),
    # the 10,142 training questions: about 4 h per epoch on a 2-core CPU, minutes on a GPU (--device cuda)
    "cmrc_train": dict(task="span_qa", model=E5, train="cmrc2018/cmrc2018_train.json",
                       eval="cmrc2018/cmrc2018_dev.json", limit=0,
                       args=dict(epochs=2, batch_size=32, learning_rate=1e-4, max_length=384),
                       target="EM >= 60, F1 >= 80"),
}


def run_task(name: str, train_limit: int, out_dir: Path, model: str | None = None,
             epochs: float | None = None, learning_rate: float | None = None, device: str = "cpu") -> dict:
    """Fine-tune task ``name`` (from ``model``, default its TASKS model) on ``device`` and evaluate on its
    report split there."""
    from nlpforge.checkpoint import load_checkpoint
    from nlpforge.device import resolve_device
    from nlpforge.recipes.finetune import FinetuneArgs, finetune
    from nlpforge.tasks import DataOptions, get_task

    spec = {**TASKS[name], **({"model": model} if model else {})}
    if epochs:
        spec["args"] = {**spec["args"], "epochs": epochs}
    if learning_rate:
        spec["args"] = {**spec["args"], "learning_rate": learning_rate}
    data = {**spec.get("data", {}), **spec.get("train_data", {})}
    train_limit = train_limit or spec["limit"]
    args = FinetuneArgs(task=spec["task"], model=spec["model"], train=str(DATA / spec["train"]), out=str(out_dir),
                        max_train_examples=train_limit, progress=False, save_every=10**9, log_every=100,
                        device=device, data=data, **spec["args"])
    start = time.perf_counter()
    finetune(args)
    train_seconds = time.perf_counter() - start
    loaded = load_checkpoint(out_dir)
    loaded.model.to(resolve_device(device))
    task = get_task(spec["task"])
    options = DataOptions(**{**spec.get("data", {}), **spec.get("eval_data", {})})
    examples = task.read(DATA / spec["eval"], options)
    start = time.perf_counter()
    metrics = task.evaluate(loaded.model, loaded.tokenizer, examples, loaded.meta.get("labels"),
                              spec["args"]["max_length"], 64, options)
    return {"task": spec["task"], "model": spec["model"], "train": spec["train"], "report_on": spec["eval"],
            "train_limit": train_limit or None, "settings": {**spec["args"], "data": data}, "device": device,
            "train_seconds": round(train_seconds, 1), "eval_seconds": round(time.perf_counter() - start, 1),
            "metrics": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in metrics.items()},
            "target": spec["target"], "command": "python " + " ".join(sys.argv)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--train-limit", type=int, default=0, help="override every task's training cap")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "finetune_tasks.json")
    parser.add_argument("--keep", type=Path, help="keep each trained model in KEEP/<task> (default: discarded)")
    parser.add_argument("--epochs", type=float, help="override every task's epochs")
    parser.add_argument("--learning-rate", type=float, help="override every task's peak learning rate")
    parser.add_argument("--model", help="start from this checkpoint instead of each task's model "
                        "(e.g. a reader trained before, for more epochs under a fresh schedule)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (nlpforge train --device)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine import machine_record

    report = json.loads(args.out.read_text()) if args.out.is_file() else {"benchmark": "finetune_tasks", "tasks": {}}
    report["machine"] = machine_record()
    for name in args.tasks.split(","):
        if name not in TASKS:
            sys.exit(f"error: unknown task {name!r}; choose from {', '.join(TASKS)}")
        with tempfile.TemporaryDirectory() as tmp:
            result = run_task(name, args.train_limit, (args.keep or Path(tmp)) / name, model=args.model,
                              epochs=args.epochs, learning_rate=args.learning_rate, device=args.device)
        report["tasks"][name] = result
        print(json.dumps({name: result}), file=sys.stderr)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
