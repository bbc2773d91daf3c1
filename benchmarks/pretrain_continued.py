"""Continued pre-training of multilingual-e5-small-zhen with a new masked-LM head (whole-word
masking) on ../shared/data/corpus_zh, then ChnSentiCorp fine-tuning from it.

    python benchmarks/pretrain_continued.py --out benchmarks/results/pretrain_continued.json

1. ``nlpforge pretrain --objective wwm --model E5 --corpus corpus_zh`` (the last 5% of each file
   held out): held-out masked-token accuracy and perplexity at step 0 (the new head at BERT's
   initialisation) and after training, with the same fixed masks.
2. ChnSentiCorp fine-tuning (benchmarks/finetune_tasks.py's recipe: 2 epochs, lr 5e-5, batch 32,
   max length 128) from the continued model; the same fine-tune from the original E5 is either
   run here (``--baseline run``) or read from benchmarks/results/finetune_tasks.json
   (``--baseline recorded``, the default: it takes 30 min).

The continued model is the Chinese masked-LM backbone of the few-shot methods. It is written to
``benchmarks/work/pretrain/e5-zh-wwm`` (git-ignored); rebuild it with this script's first stage
alone: ``python benchmarks/pretrain_continued.py --skip-finetune``.
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
OUT_MODEL = ROOT / "benchmarks" / "work" / "pretrain" / "e5-zh-wwm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pretrain_continued.json")
    parser.add_argument("--model-out", type=Path, default=OUT_MODEL)
    parser.add_argument("--max-steps", type=int, default=300, help="0.42 epoch of corpus_zh at batch 16 (2 cores)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--skip-pretrain", action="store_true", help="reuse --model-out")
    parser.add_argument("--skip-finetune", action="store_true")
    parser.add_argument("--baseline", choices=("recorded", "run"), default="recorded")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from finetune_tasks import run_task
    from machine import machine_record
    from nlpforge.recipes.configs import PretrainArgs
    from nlpforge.recipes.pretrain import pretrain

    report = json.loads(args.out.read_text()) if args.out.is_file() else {"benchmark": "pretrain_continued"}
    settings = dict(objective="wwm", model=E5, corpus=[str(SHARED / "data" / "corpus_zh")], out=str(args.model_out),
                    max_steps=args.max_steps, block_size=128, batch_size=args.batch_size,
                    learning_rate=args.learning_rate, eval_every=max(args.max_steps // 4, 1), eval_blocks=0,
                    save_every=100, progress=False, seed=42, resume=True)
    if not args.skip_pretrain:
        start = time.perf_counter()
        summary = pretrain(PretrainArgs(**settings))
        lines = (args.model_out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        evaluations = [r for r in map(json.loads, lines) if "eval_perplexity" in r]
        report["pretrain"] = {
            "settings": {k: v for k, v in settings.items() if k not in ("progress", "resume")},
            "seconds": round(time.perf_counter() - start, 1), "summary": summary,
            "heldout_curve": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
                              for r in evaluations],
            "before": {k: round(evaluations[0][k], 3) for k in ("eval_perplexity", "eval_accuracy", "eval_loss")},
            "after": {k: round(evaluations[-1][k], 3) for k in ("eval_perplexity", "eval_accuracy", "eval_loss")},
            "model_dir": str(args.model_out.relative_to(ROOT)),
            "command": "python " + " ".join(sys.argv)}
        print(json.dumps(report["pretrain"]["after"]), flush=True)
        report["machine"] = machine_record()
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.skip_finetune:
        return
    with tempfile.TemporaryDirectory() as tmp:
        continued = run_task("chnsenticorp", 0, Path(tmp) / "continued", model=str(args.model_out))
    report["chnsenticorp_from_continued"] = continued
    if args.baseline == "run":
        with tempfile.TemporaryDirectory() as tmp:
            report["chnsenticorp_from_e5"] = run_task("chnsenticorp", 0, Path(tmp) / "e5")
    else:
        recorded = json.loads((ROOT / "benchmarks" / "results" / "finetune_tasks.json").read_text())
        report["chnsenticorp_from_e5"] = {**recorded["tasks"]["chnsenticorp"],
                                          "source": "benchmarks/results/finetune_tasks.json (same recipe, "
                                                    "an earlier run)"}
    report["accuracy_difference"] = round(continued["metrics"]["accuracy"]
                                          - report["chnsenticorp_from_e5"]["metrics"]["accuracy"], 2)
    report["machine"] = machine_record()
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({"difference": report["accuracy_difference"]}))


if __name__ == "__main__":
    main()
