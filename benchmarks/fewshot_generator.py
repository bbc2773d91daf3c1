"""The prompt generator on a task held out of its meta-training, beside plain prompt tuning.

    python benchmarks/fewshot_generator.py --heldout chnsenticorp --k 16 --seeds 5

1. The training splits of the other tasks (SST-2, TNEWS, ChnSentiCorp; AFQMC is a pair task and
   stays out) are written as JSONL (text, label) to benchmarks/work/fewshot/ and the generator is
   meta-trained on them (``nlpforge fewshot meta-train``) with multilingual-e5-small-zhen frozen.
2. On the held-out task, ``nlpforge fewshot --method generator`` (no encoder gradient) and
   ``--method prompt`` (prompt tuning, same prompt length, same K, samples and seeds) run on its
   training file and are evaluated on its report split; the seconds to adapt are the run's seconds.
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
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch

    from machine import machine_record
    from nlpforge.recipes.configs import FewshotArgs, MetaTrainArgs
    from nlpforge.recipes.fewshot import fewshot, meta_train

    torch.set_num_threads(args.threads)
    report = {"benchmark": "fewshot_generator", "backbone": E5, "heldout": args.heldout, "k": args.k,
              "command": "python " + " ".join(sys.argv)}
    training = [as_jsonl(name, 0) for name in TASKS if name != args.heldout]
    if not args.skip_meta_train:
        start = time.perf_counter()
        report["meta_train"] = meta_train(MetaTrainArgs(
            model=E5, tasks=[str(p) for p in training], out=str(args.generator_dir), episodes=args.episodes,
            k=args.meta_k, queries=args.meta_k, progress=False))
        report["meta_train"]["seconds"] = round(time.perf_counter() - start, 1)
        print(json.dumps(report["meta_train"]["last"]), flush=True)
    train, evaluation = as_jsonl(args.heldout, 0), as_jsonl(args.heldout, 1)
    for method in ("generator", "prompt"):
        with tempfile.TemporaryDirectory() as tmp:
            result = fewshot(FewshotArgs(method=method, model=E5, train=str(train), eval=str(evaluation), out=tmp,
                                         k=str(args.k), seeds=args.seeds, prompt_length=10, progress=False,
                                         generator=str(args.generator_dir) if method == "generator" else None))
        report[method] = {key: result[key] for key in ("runs", "mean_accuracy", "std_accuracy", "mean_seconds")}
        print(json.dumps({"method": method, "mean_accuracy": result["mean_accuracy"],
                          "mean_seconds": result["mean_seconds"]}), flush=True)
        report["machine"] = machine_record()
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
