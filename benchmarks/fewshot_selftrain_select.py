"""Choosing the self-training student's settings on the train split only (the report split untouched).

    python benchmarks/fewshot_selftrain_select.py --dataset tnews --k 8 --seeds 0,1,2 --holdout 2000
    python benchmarks/fewshot_selftrain_select.py --dataset chnsenticorp --examples 50 --seeds 0,1 --holdout 1000 \
        --pools 2000 --starts base --poolings cls,mean

The train split is shuffled (seed 0); its first --holdout rows are the evaluation set and the rest
the training rows, exactly as ``fewshot_compare.py --holdout``. Per seed: K examples per class (or --examples in total,
stratified) are sampled, the contrastive teacher is trained once (``nlpforge.recipes.fewshot.train_contrastively``),
and then one student per (pool size, starting point): the teacher labels a pool of unlabelled rows
(``unlabelled_pool``), the confident balanced half is kept (``confident_balanced``) and a student is
fine-tuned (batched by length, as ``--self-train`` does) on sample + pseudo-labels from the backbone
("base", what ``--self-train`` does) or from the teacher's checkpoint ("teacher"), its new head reading
the first token ("cls") or the mean of the tokens ("mean"; a column named SIZE-START-mean).
Writes benchmarks/results/fewshot_<dataset>_selftrain_select.json
after every student.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="tnews")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--examples", type=int, default=0, help="N examples in total, stratified (instead of --k)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--holdout", type=int, default=2000)
    parser.add_argument("--pools", default="3000,6000", help="unlabelled rows the teacher labels")
    parser.add_argument("--starts", default="base,teacher", help="the student starts from the backbone or teacher")
    parser.add_argument("--poolings", default="cls", help="what the student's head reads: cls, mean or both")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch

    from fewshot_compare import DATASETS, held_out_setting
    from machine import machine_record
    from nlpforge.adapt.sampling import sample_per_class, sample_stratified
    from nlpforge.adapt.self_training import confident_balanced, unlabelled_pool
    from nlpforge.predictor import Predictor
    from nlpforge.recipes import fewshot

    torch.set_num_threads(args.threads)
    train_file = DATASETS[args.dataset][1]
    teacher_args, train, evaluation, labels = held_out_setting(args.dataset, args.holdout, "contrastive", args.k,
                                                               args.examples, args.max_length)
    out_file = args.out or ROOT / "benchmarks" / "results" / f"fewshot_{args.dataset}_selftrain_select.json"
    report: dict[str, Any] = {"benchmark": "fewshot_selftrain_select", "dataset": args.dataset,
                              **({"examples": args.examples} if args.examples else {"k": args.k}),
                              "evaluation": f"{train_file}: {args.holdout} rows held out (seed 0)",
                              "student": {"epochs": teacher_args.self_train_epochs,
                                          "batch_size": fewshot.SELF_TRAIN_BATCH_SIZE,
                                          "learning_rate": fewshot.DEFAULT_LEARNING_RATE["finetune"]},
                              "command": "python " + " ".join(sys.argv), "runs": [], "machine": machine_record()}

    def score(model_dir: Path) -> float:
        return fewshot.evaluate_model(model_dir, evaluation, labels, teacher_args)["accuracy"]

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for seed in (int(s) for s in args.seeds.split(",")):
            sample = (sample_stratified(train, args.examples, seed, train_file) if args.examples
                      else sample_per_class(train, args.k, seed, train_file))
            start = time.perf_counter()
            teacher_dir = fewshot.train_contrastively(teacher_args, sample, labels, seed, work / f"teacher{seed}")
            run: dict[str, Any] = {"seed": seed, "teacher": score(teacher_dir),
                                   "teacher_seconds": round(time.perf_counter() - start)}
            report["runs"].append(run)
            teacher = Predictor.load(teacher_dir, batch_size=teacher_args.eval_batch_size)
            for size in (int(p) for p in args.pools.split(",")):
                pool = unlabelled_pool(train, sample, size, seed)
                pseudo = confident_balanced(pool, teacher.predict_parsed(pool), labels)
                for origin, pooling in ((o, p) for o in args.starts.split(",") for p in args.poolings.split(",")):
                    name = f"{size}-{origin}" + ("" if pooling == "cls" else f"-{pooling}")
                    start = time.perf_counter()
                    student_args = dataclasses.replace(
                        teacher_args, method="finetune", epochs=teacher_args.self_train_epochs,
                        batch_size=fewshot.SELF_TRAIN_BATCH_SIZE,
                        learning_rate=fewshot.DEFAULT_LEARNING_RATE["finetune"],
                        model=teacher_args.model if origin == "base" else str(teacher_dir))
                    student_dir = fewshot.train_by_finetuning(student_args, sample + pseudo, labels, seed,
                                                              work / f"student{seed}-{name}", group_by_length=True,
                                                              pooling=pooling)
                    run[name] = score(student_dir)
                    run[f"{name}_seconds"] = round(time.perf_counter() - start)
                    shutil.rmtree(student_dir, ignore_errors=True)
                    columns = [key for key in run if key != "seed" and not key.endswith("seconds")]
                    report["mean"] = {key: {"accuracy": round(statistics.mean(scores), 2), "seeds": len(scores)}
                                      for key in columns
                                      for scores in [[r[key] for r in report["runs"] if key in r]]}
                    out_file.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
                    print(json.dumps(run), flush=True)
            shutil.rmtree(teacher_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
