"""The prompt generator on a task held out of its meta-training, beside plain prompt tuning.

    python benchmarks/fewshot_generator.py --heldout chnsenticorp --k 16 --seeds 5

1. The training splits of the other tasks (SST-2, TNEWS, ChnSentiCorp; AFQMC is a pair task and
   stays out) are written as JSONL (text, label) to benchmarks/work/fewshot/ and the generator is
   meta-trained on them (``nlpforge fewshot meta-train``) with multilingual-e5-small-zhen frozen.
2. On the held-out task, ``nlpforge fewshot --method generator`` (no encoder gradient) and
   ``--method prompt`` (prompt tuning, same prompt length, same K, samples and seeds) run on its
   training file and are evaluated on its report split; the seconds to adapt are the run's seconds.
   ``no-prompt`` is the generator's prototype classifier over the plain encoder (what the prompt adds).
Writes benchmarks/results/fewshot_generator.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
E5 = str(SHARED / "models" / "multilingual-e5-small-zhen")
TASKS = {  # train file, report file, data options
    "sst2": ("sst2/train.tsv", "sst2/dev.tsv", {}),
    "chnsenticorp": ("chnsenticorp/train.tsv", "chnsenticorp/dev.tsv", {"text_column": "text_a"}),
    "tnews": ("tnews/train.tsv", "tnews/dev.tsv", {"text_column": 0, "label_column": 1}),
}
WORK = ROOT / "benchmarks" / "work" / "fewshot"


def as_jsonl(name: str, split: int) -> Path:
    """A task's file (0: train, 1: report) as JSONL with text and label fields."""
    from nlpforge.data.options import DataOptions
    from nlpforge.tasks import get_task

    out = WORK / f"{name}_{'train' if split == 0 else 'report'}.jsonl"
    if not out.is_file():
        WORK.mkdir(parents=True, exist_ok=True)
        examples = get_task("classify").read(SHARED / "data" / TASKS[name][split], DataOptions(**TASKS[name][2]))
        out.write_text("".join(json.dumps({"text": e.text, "label": e.label}, ensure_ascii=False) + "\n"
                               for e in examples), encoding="utf-8")
    return out


def prototypes_without_prompt(train: Path, evaluation: Path, k: int, seeds: int) -> dict:
    """The same prototype classifier over the plain encoder (no prompt): what the generated prompt adds."""
    import time

    import numpy as np

    from nlpforge.adapt.sampling import sample_per_class
    from nlpforge.checkpoint import load_checkpoint
    from nlpforge.data.options import DataOptions
    from nlpforge.embed import embed_texts
    from nlpforge.tasks import get_task

    task = get_task("classify")
    train_examples, eval_examples = task.read(train, DataOptions()), task.read(evaluation, DataOptions())
    labels = task.label_names(train_examples, None)
    encoder = load_checkpoint(E5, head="base")
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    queries = unit(embed_texts(encoder.model, encoder.tokenizer, [e.text for e in eval_examples], max_length=128,
                               progress=False))
    gold = np.array([labels.index(e.label) for e in eval_examples])
    runs = []
    for seed in range(seeds):
        start = time.perf_counter()
        sample = sample_per_class(train_examples, k, seed, train)
        support = unit(embed_texts(encoder.model, encoder.tokenizer, [e.text for e in sample], max_length=128,
                                   progress=False))
        ids = np.array([labels.index(e.label) for e in sample])
        centres = unit(np.stack([support[ids == c].mean(axis=0) for c in range(len(labels))]))
        accuracy = float((np.argmax(queries @ centres.T, axis=1) == gold).mean() * 100)
        runs.append({"seed": seed, "accuracy": round(accuracy, 2), "seconds": round(time.perf_counter() - start, 2)})
    accuracies = [r["accuracy"] for r in runs]
    return {"runs": runs, "mean_accuracy": round(float(np.mean(accuracies)), 2),
            "std_accuracy": round(float(np.std(accuracies, ddof=1)), 2) if seeds > 1 else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heldout", choices=tuple(TASKS), default="chnsenticorp")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=150)
    parser.add_argument("--meta-k", type=int, default=4, help="support examples per class in meta-training")
    parser.add_argument("--generator-dir", type=Path, default=WORK / "generator")
    parser.add_argument("--skip-meta-train", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fewshot_generator.json")
    parser.add_argument("--methods", default="generator,prompt,no-prompt",
                        help="no-prompt: the prototype classifier over the plain encoder")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch

    from machine import machine_record
    from nlpforge.recipes.configs import FewshotArgs, MetaTrainArgs
    from nlpforge.recipes.fewshot import fewshot, meta_train

    torch.set_num_threads(args.threads)
    report = json.loads(args.out.read_text()) if args.out.is_file() else {}  # a partial rerun keeps the rest
    report.update({"benchmark": "fewshot_generator", "backbone": E5, "heldout": args.heldout, "k": args.k})
    report.setdefault("commands", []).append("python " + " ".join(sys.argv))
    training = [as_jsonl(name, 0) for name in TASKS if name != args.heldout]
    if not args.skip_meta_train:
        start = time.perf_counter()
        report["meta_train"] = meta_train(MetaTrainArgs(
            model=E5, tasks=[str(p) for p in training], out=str(args.generator_dir), episodes=args.episodes,
            k=args.meta_k, queries=args.meta_k, progress=False))
        report["meta_train"]["seconds"] = round(time.perf_counter() - start, 1)
        print(json.dumps(report["meta_train"]["last"]), flush=True)
    train, evaluation = as_jsonl(args.heldout, 0), as_jsonl(args.heldout, 1)
    methods = args.methods.split(",")
    if "no-prompt" in methods:
        report["no-prompt"] = prototypes_without_prompt(train, evaluation, args.k, args.seeds)
        print(json.dumps({"method": "no-prompt", "mean_accuracy": report["no-prompt"]["mean_accuracy"]}), flush=True)
    for method in (m for m in ("generator", "prompt") if m in methods):
        with tempfile.TemporaryDirectory() as tmp:
            # 128 tokens, as the no-prompt baseline above reads them
            result = fewshot(FewshotArgs(method=method, model=E5, train=str(train), eval=str(evaluation), out=tmp,
                                         k=str(args.k), seeds=args.seeds, prompt_length=10, max_length=128,
                                         progress=False,
                                         generator=str(args.generator_dir) if method == "generator" else None))
        report[method] = {key: result[key] for key in ("runs", "mean_accuracy", "std_accuracy", "mean_seconds")}
        print(json.dumps({"method": method, "mean_accuracy": result["mean_accuracy"],
                          "mean_seconds": result["mean_seconds"]}), flush=True)
        report["machine"] = machine_record()
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    report["machine"] = machine_record()
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
