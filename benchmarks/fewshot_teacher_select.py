"""Choosing the self-training teacher on the train split only: how right are its pseudo-labels?

    python benchmarks/fewshot_teacher_select.py --dataset chnsenticorp --examples 50 --seeds 0,1 --holdout 1000

The train split is shuffled (seed 0); its first --holdout rows are the evaluation set and the rest the
training rows, exactly as ``fewshot_compare.py --holdout``. Per seed and teacher method (``--methods``,
each trained by ``nlpforge.recipes.fewshot`` on the same sample), the teacher labels the pool that
``--self-train N`` would give it (``unlabelled_pool``), and the benchmark reads the pool's true labels,
which self-training never does: the teacher's accuracy on the hold-out, its accuracy on the whole pool,
and the precision of the confident balanced half a student learns from (``confident_balanced``). The
averaged probabilities of all the teachers are scored too ("ensemble"). A student cannot be much better
than the labels it is given, so this ranks teachers at a fraction of the cost of training students.
Writes benchmarks/results/fewshot_<dataset>_teacher_select.json after every seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="chnsenticorp")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--examples", type=int, default=0, help="N examples in total, stratified (instead of --k)")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--holdout", type=int, default=1000)
    parser.add_argument("--pool", type=int, default=6000, help="unlabelled rows the teachers label (--self-train)")
    parser.add_argument("--methods", default="contrastive,finetune", help="the teachers")
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
    base_args, train, evaluation, labels = held_out_setting(args.dataset, args.holdout, "finetune", args.k,
                                                            args.examples, args.max_length)
    methods = args.methods.split(",")
    out_file = args.out or ROOT / "benchmarks" / "results" / f"fewshot_{args.dataset}_teacher_select.json"
    report: dict[str, Any] = {"benchmark": "fewshot_teacher_select", "dataset": args.dataset,
                              **({"examples": args.examples} if args.examples else {"k": args.k}),
                              "evaluation": f"{train_file}: {args.holdout} rows held out (seed 0)",
                              "pool": args.pool, "command": "python " + " ".join(sys.argv), "runs": [],
                              "machine": machine_record()}

    def pseudo_label_scores(pool: list[Any], truth: dict[tuple, str], predictions: list[dict[str, Any]]
                            ) -> dict[str, float]:
        """Accuracy of the teacher's best label over the pool, and precision of the half a student sees
        (``truth``: the true label of each (text, text_pair) of the train split)."""
        best = [max(labels, key=lambda label: p["scores"][label]) for p in predictions]
        gold = [truth[(example.text, example.text_pair)] for example in pool]
        kept = confident_balanced(pool, predictions, labels)
        return {"pool_accuracy": round(100 * statistics.mean(b == g for b, g in zip(best, gold, strict=True)), 2),
                "kept_precision": round(100 * statistics.mean(
                    example.label == truth[(example.text, example.text_pair)] for example in kept), 2)}

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for seed in (int(s) for s in args.seeds.split(",")):
            sample = (sample_stratified(train, args.examples, seed, train_file) if args.examples
                      else sample_per_class(train, args.k, seed, train_file))
            pool = unlabelled_pool(train, sample, args.pool, seed)
            truth = {(example.text, example.text_pair): example.label for example in train}
            run: dict[str, Any] = {"seed": seed}
            all_predictions = []
            for method in methods:
                start = time.perf_counter()
                method_args = dataclasses.replace(base_args, method=method)
                teacher_dir = fewshot.METHODS[method](method_args, sample, labels, seed, work / f"{method}{seed}")
                seconds = round(time.perf_counter() - start)
                predictions = Predictor.load(teacher_dir, batch_size=base_args.eval_batch_size).predict_parsed(pool)
                all_predictions.append(predictions)
                run[method] = {"accuracy": fewshot.evaluate_model(teacher_dir, evaluation, labels,
                                                                  method_args)["accuracy"],
                               **pseudo_label_scores(pool, truth, predictions), "seconds": seconds}
            if len(methods) > 1:
                averaged = [{"scores": {label: statistics.mean(p[i]["scores"][label] for p in all_predictions)
                                        for label in labels}} for i in range(len(pool))]
                run["ensemble"] = pseudo_label_scores(pool, truth, averaged)
            report["runs"].append(run)
            report["mean"] = {name: {key: round(statistics.mean(r[name][key] for r in report["runs"]), 2)
                                     for key in report["runs"][0][name] if key != "seconds"}
                              for name in report["runs"][0] if name != "seed"}
            out_file.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
            print(json.dumps(run), flush=True)


if __name__ == "__main__":
    main()
