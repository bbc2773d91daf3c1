"""LoRA beside full fine-tuning in one run: trainable parameters, accuracy, training tokens/s, peak memory.

    python benchmarks/lora_compare.py --dataset sst2 --train-limit 20000

Each configuration runs ``nlpforge.recipes.finetune.finetune`` in its own process (so the peak
resident memory, ``ru_maxrss``, is that run's alone), on the first --train-limit training examples,
evaluated on the dataset's report split. LoRA: rank 8, alpha 16, all of attention and FFN (or rank 4
on attention only), lr 5e-4; full fine-tuning: lr 5e-5; the rest (epochs, batch 32, max length 128,
seed) is shared.
Writes benchmarks/results/lora_<dataset>.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATASETS = {"sst2": ("minilm", "sst2/train.tsv", "sst2/dev.tsv", {}),
            "chnsenticorp": ("e5", "chnsenticorp/train.tsv", "chnsenticorp/dev.tsv", {"text_column": "text_a"})}
CONFIGS = {"full": {"learning_rate": 5e-5},
           "lora": {"learning_rate": 5e-4, "lora_r": 8, "lora_alpha": 16.0, "lora_targets": "all"},
           # under 1% of MiniLM's parameters with the head: rank 4 on attention only
           "lora_r4_attention": {"learning_rate": 5e-4, "lora_r": 4, "lora_alpha": 8.0, "lora_targets": "attention"},
           # rank 8 on the fused q/k/v projection only (the LoRA paper's choice of W_q, W_v, here with W_k)
           "lora_r8_qkv": {"learning_rate": 5e-4, "lora_r": 8, "lora_alpha": 16.0, "lora_targets": "qkv"},
           "lora_r4_attention_lr1e3": {"learning_rate": 1e-3, "lora_r": 4, "lora_alpha": 8.0,
                                       "lora_targets": "attention"},
           # the head over the mean of the tokens, as sentence-embedding backbones were trained to be read
           "full_mean": {"learning_rate": 5e-5, "classifier_pooling": "mean"},
           "lora_r8_qkv_mean": {"learning_rate": 5e-4, "lora_r": 8, "lora_alpha": 16.0, "lora_targets": "qkv",
                                "classifier_pooling": "mean"},
           "lora_r4_attention_mean": {"learning_rate": 1e-3, "lora_r": 4, "lora_alpha": 8.0,
                                      "lora_targets": "attention", "classifier_pooling": "mean"}}
RUN = """
import json, resource, sys, tempfile
import torch
from nlpforge.recipes.configs import FinetuneArgs
from nlpforge.recipes.finetune import finetune
settings = json.loads(sys.argv[1])
torch.set_num_threads(settings.pop("threads"))
with tempfile.TemporaryDirectory() as tmp:
    summary = finetune(FinetuneArgs(out=tmp, progress=False, **settings))
summary["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
print("RESULT " + json.dumps(summary))
"""


def compare_with_full(runs: dict) -> dict:
    """Each adapter run beside the full fine-tuning run with the same head pooling (full / full_mean)."""
    compared = {}
    for name, run in runs.items():
        pooling = run["settings"].get("classifier_pooling", "cls")
        full = runs.get("full_mean" if pooling == "mean" else "full")
        if full is None or not name.startswith("lora"):
            continue
        compared[name] = {"full_run": "full_mean" if pooling == "mean" else "full",
                          "accuracy_ratio": round(run["best"] / full["best"], 4),
                          "trainable_percent": run["trainable_percent"],
                          "tokens_per_s_ratio": round(run["tokens_per_s"] / full["tokens_per_s"], 3),
                          "peak_rss_ratio": round(run["peak_rss_mb"] / full["peak_rss_mb"], 3)}
    return compared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=tuple(DATASETS), default="sst2")
    parser.add_argument("--train-limit", type=int, default=20000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from fewshot_compare import backbone_path
    from machine import machine_record

    backbone, train, report_split, data = DATASETS[args.dataset]
    out = args.out or ROOT / "benchmarks" / "results" / f"lora_{args.dataset}.json"
    report = json.loads(out.read_text()) if out.is_file() else {}  # a partial rerun keeps the other runs
    report = {**report, "benchmark": "lora_compare", "dataset": args.dataset, "backbone": backbone_path(backbone),
              "train_limit": args.train_limit, "epochs": args.epochs,
              "commands": [*report.get("commands", []), "python " + " ".join(sys.argv)], "runs": report.get("runs", {})}
    for name in args.configs.split(","):
        config = CONFIGS[name]
        settings = {"task": "classify", "model": backbone_path(backbone), "train": str(SHARED / "data" / train),
                    "eval": str(SHARED / "data" / report_split), "max_train_examples": args.train_limit,
                    "epochs": args.epochs, "batch_size": 32, "max_length": 128, "seed": 42, "group_by_length": True,
                    "threads": args.threads, "data": data, **config}
        done = subprocess.run([sys.executable, "-c", RUN, json.dumps(settings)], capture_output=True, text=True,
                              check=True)
        summary = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
        report["runs"][name] = {"settings": config, **{k: summary[k] for k in (
            "best", "trainable_parameters", "total_parameters", "trainable_percent", "tokens_per_s", "loop_seconds",
            "peak_rss_mb")}}
        print(json.dumps({name: report["runs"][name]}), flush=True)
        report["machine"] = machine_record()
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    report["vs_full"] = compare_with_full(report["runs"])
    print(json.dumps(report["vs_full"]))
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
