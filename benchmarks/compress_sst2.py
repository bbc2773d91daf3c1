"""Compression on SST-2 (or ChnSentiCorp with ``--dataset chnsenticorp``): E5 teacher (12 layers) ->
4-layer student -> INT8, and TextBrewer side by side.

1. teacher: ../shared/models/multilingual-e5-small-zhen fine-tuned with nlpforge on a seeded slice of
   the train split (``--train-size``), max length 64 (ChnSentiCorp: 128), 1 epoch, lr 5e-5;
2. ``nlpforge compress`` (recipes.compress): 4-layer student from teacher layers [3, 6, 9, 12],
   KD (T=2, alpha=0.9) for ``--epochs`` on ``--distill-size`` examples (default: the teacher's slice;
   a larger slice adds examples the teacher labels softly, a transfer set as in Hinton et al.;
   ``--transfer long`` fills it with the longest other train examples instead of a random slice),
   the best epoch chosen on 1,000 held-out train examples; torch INT8, ONNX, ONNX INT8 — every stage
   measured on dev in one process (accuracy, batch-1 latency, batch-32 throughput, size);
3. TextBrewer's GeneralDistiller with the same teacher, student initialisation (the same teacher
   layers), data, epochs, batch size, optimizer, schedule, temperature and loss weights
   (hard_label_weight 0.1, kd_loss_weight 0.9); its student's accuracy on dev.

    pip install textbrewer tensorboard && python benchmarks/compress_sst2.py
    python benchmarks/compress_sst2.py --transfer long --distill-size 20000 --alpha 0.69 --max-grad-norm 0 \
        --work benchmarks/work/compress-long --out benchmarks/results/compress_sst2_long20k.json
    python benchmarks/compress_sst2.py --dataset chnsenticorp --train-size 3000 --distill-size 5000 \
        --work benchmarks/work/compress-zh --skip-textbrewer --alpha 0.69 --max-grad-norm 0 \
        --out benchmarks/results/compress_chnsenticorp.json
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
DATASETS = {  # --dataset: where it lives, the reader's options and the max length (tokens)
    "sst2": dict(dir=ROOT.parent / "shared" / "data" / "sst2", options={}, max_length=64),
    "chnsenticorp": dict(dir=ROOT.parent / "shared" / "data" / "chnsenticorp", options={"text_column": "text_a"},
                         max_length=128),
}
DATASET = dict(DATASETS["sst2"])  # the chosen one (main sets it)
E5 = ROOT.parent / "shared" / "models" / "multilingual-e5-small-zhen"
DISTILL = dict(layers=4, epochs=2.0, batch_size=32, learning_rate=1e-4, temperature=2.0, alpha=0.9, hidden_weight=0.0)
SELECT_EXAMPLES = 1000  # held-out train examples that pick the best student epoch
TEXTBREWER_WEIGHTS = dict(hard_label_weight=0.1, kd_loss_weight=0.9)  # its loss has no T^2 factor


def write_slice(size: int, path: Path, skip: int = 0) -> None:
    """Examples skip..skip+size of the train split in one seeded order (slices with the same skip nest)."""
    rows = (DATASET["dir"] / "train.tsv").read_text(encoding="utf-8").splitlines()
    body = rows[1:]
    random.Random(0).shuffle(body)
    path.write_text("\n".join([rows[0], *body[skip : skip + size]]) + "\n", encoding="utf-8")


def write_long_transfer(train_size: int, distill_size: int, distill_path: Path, select_path: Path) -> None:
    """Transfer set of full-sentence-like examples: the teacher's slice plus the longest other train examples.

    SST-2 train is mostly short phrases (9.4 words on average) while its dev split holds full
    sentences (19.5 words). The teacher's slice (the first ``train_size`` of the seeded order) is
    kept; the ``distill_size - train_size + SELECT_EXAMPLES`` longest remaining train examples (by
    words) are shuffled and split into the selection file (the first ``SELECT_EXAMPLES``) and the
    rest of the transfer set. Only train examples are used; dev is never looked at.
    """
    rows = (DATASET["dir"] / "train.tsv").read_text(encoding="utf-8").splitlines()
    body = rows[1:]
    random.Random(0).shuffle(body)
    teacher_slice, rest = body[:train_size], body[train_size:]
    rest.sort(key=lambda row: len(row.split("\t")[0].split()), reverse=True)
    longest = rest[: distill_size - train_size + SELECT_EXAMPLES]
    random.Random(1).shuffle(longest)
    select_path.write_text("\n".join([rows[0], *longest[:SELECT_EXAMPLES]]) + "\n", encoding="utf-8")
    distill_path.write_text("\n".join([rows[0], *teacher_slice, *longest[SELECT_EXAMPLES:]]) + "\n",
                            encoding="utf-8")


def textbrewer_student_accuracy(teacher_dir: Path, train_file: Path, work: Path) -> dict:
    """Distil with TextBrewer from the same teacher and the same student initialisation."""
    import torch
    import transformers
    from textbrewer import DistillationConfig, GeneralDistiller, TrainingConfig

    from nlpforge.checkpoint import load_checkpoint, save_checkpoint
    from nlpforge.compress.distill import student_from_teacher, uniform_layer_map
    from nlpforge.recipes.finetune import parameter_groups
    from nlpforge.tasks import DataOptions, get_task

    teacher = load_checkpoint(teacher_dir)
    layer_map = uniform_layer_map(teacher.config.num_layers, DISTILL["layers"])
    init = student_from_teacher(teacher.model, layer_map)
    save_checkpoint(work / "tb-init", init, init.config, teacher.tokenizer, "classify", teacher.meta)
    model_t = transformers.AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()
    model_s = transformers.AutoModelForSequenceClassification.from_pretrained(work / "tb-init")

    task = get_task("classify")
    options = DataOptions(**DATASET["options"])
    features = task.encode(teacher.tokenizer, task.read(train_file, options), teacher.meta["labels"],
                             DATASET["max_length"], options)
    padder = transformers.DataCollatorWithPadding(teacher.tokenizer)

    def collator(features: list[dict]) -> dict:  # TextBrewer calls model(**batch) only for a plain dict
        return dict(padder(features))

    generator = torch.Generator().manual_seed(42)
    loader = torch.utils.data.DataLoader(features, batch_size=DISTILL["batch_size"], shuffle=True,
                                         collate_fn=collator, generator=generator)
    total_steps = len(loader) * int(DISTILL["epochs"])
    optimizer = torch.optim.AdamW(parameter_groups(model_s, 0.01), lr=DISTILL["learning_rate"])

    def adaptor_t(batch, outputs):
        return {"logits": outputs.logits}

    def adaptor_s(batch, outputs):
        return {"logits": outputs.logits, "losses": outputs.loss}

    train_config = TrainingConfig(device="cpu", log_dir=str(work / "tb-logs"), output_dir=str(work / "tb-out"),
                                  ckpt_frequency=1, ckpt_epoch_frequency=100)
    distill_config = DistillationConfig(temperature=DISTILL["temperature"], **TEXTBREWER_WEIGHTS,
                                        kd_loss_type="ce")
    distiller = GeneralDistiller(train_config, distill_config, model_t, model_s, adaptor_t, adaptor_s)
    start = time.perf_counter()
    with distiller:
        distiller.train(optimizer, loader, num_epochs=int(DISTILL["epochs"]),
                        scheduler_class=transformers.get_linear_schedule_with_warmup,
                        scheduler_args={"num_warmup_steps": int(0.1 * total_steps),
                                        "num_training_steps": total_steps})
    seconds = time.perf_counter() - start
    model_s.eval()
    dev = task.read(DATASET["dir"] / "dev.tsv", options)
    dev_features = task.encode(teacher.tokenizer, dev, teacher.meta["labels"], DATASET["max_length"], options)
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(dev_features), 64):
            batch = collator([{k: v for k, v in f.items() if k != "labels"} for f in dev_features[i : i + 64]])
            predicted = model_s(**batch).logits.argmax(-1)
            correct += int((predicted == torch.tensor([f["labels"] for f in dev_features[i : i + 64]])).sum())
    return {"dev_accuracy": round(100 * correct / len(dev_features), 2), "train_seconds": round(seconds, 1),
            "layer_map": layer_map}


def write_transfer_files(args: argparse.Namespace, distill_path: Path, select_path: Path) -> None:
    """The distillation set (the teacher's slice comes first) and the held-out selection set.

    The best student epoch is chosen on train examples outside every slice, never on dev.
    """
    distill_size = max(args.distill_size, args.train_size)
    if args.transfer == "long":
        write_long_transfer(args.train_size, distill_size, distill_path, select_path)
    else:  # the same seeded order as the teacher's slice, so the slices nest
        write_slice(distill_size, distill_path)
        write_slice(SELECT_EXAMPLES, select_path, skip=distill_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="sst2")
    parser.add_argument("--train-size", type=int, default=8000, help="teacher fine-tuning examples")
    parser.add_argument("--distill-size", type=int, default=0,
                        help="distillation examples (a superset of the teacher's slice; 0: the same slice)")
    parser.add_argument("--transfer", choices=("random", "long"), default="random",
                        help="examples beyond the teacher's slice: a random slice, or the longest train examples")
    parser.add_argument("--epochs", type=float, default=DISTILL["epochs"])
    parser.add_argument("--skip-textbrewer", action="store_true")
    parser.add_argument("--textbrewer-only", action="store_true",
                        help="only TextBrewer's side, with the teacher already in --work (JSON to --out)")
    parser.add_argument("--hidden-weight", type=float, default=0.0, help="hidden-state MSE weight (ours only)")
    parser.add_argument("--max-grad-norm", type=float, default=1.0, help="ours; 0 = no clipping (TextBrewer's default)")
    parser.add_argument("--alpha", type=float, default=DISTILL["alpha"],
                        help="KD weight (ours: (1-a)*ce + a*T^2*kd; TextBrewer keeps 0.1 ce + 0.9 kd without T^2)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--work", type=Path, help="keep the teacher here and reuse it when present")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "compress_sst2.json")
    args = parser.parse_args()
    DISTILL["epochs"], DISTILL["hidden_weight"], DISTILL["alpha"] = args.epochs, args.hidden_weight, args.alpha
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    DATASET.update(DATASETS[args.dataset])
    for path in (DATASET["dir"], E5):
        if not path.exists():
            sys.exit(f"error: {path} not found")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine import machine_record
    from nlpforge.recipes.compress import CompressArgs, compress
    from nlpforge.recipes.finetune import FinetuneArgs, finetune

    if args.textbrewer_only:
        if args.work is None or not (args.work / "teacher" / "nlpforge.json").is_file():
            sys.exit("error: --textbrewer-only needs --work holding a fine-tuned teacher/")
        distill_file = args.work / "distill.tsv"
        write_transfer_files(args, distill_file, args.work / "select.tsv")
        textbrewer = textbrewer_student_accuracy(args.work / "teacher", distill_file, args.work)
        result = {"benchmark": "compress_sst2 (TextBrewer side)", "machine": machine_record(),
                  "distill_examples": max(args.distill_size, args.train_size), "transfer": args.transfer,
                  "distill": DISTILL, "textbrewer": textbrewer}
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(json.dumps(result, indent=2))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        write_slice(args.train_size, work / "train.tsv")
        distill_file, select_file = work / "distill.tsv", work / "select.tsv"
        write_transfer_files(args, distill_file, select_file)
        start = time.perf_counter()
        if not (work / "teacher" / "nlpforge.json").is_file():
            finetune(FinetuneArgs(task="classify", model=str(E5), train=str(work / "train.tsv"),
                                  eval=str(DATASET["dir"] / "dev.tsv"), out=str(work / "teacher"), epochs=1,
                                  batch_size=32, learning_rate=5e-5, max_length=DATASET["max_length"],
                                  data=DATASET["options"], progress=False, save_every=10**9))
        teacher_seconds = time.perf_counter() - start
        print(f"teacher fine-tuned in {teacher_seconds:.0f} s", file=sys.stderr)
        start = time.perf_counter()
        report = compress(CompressArgs(teacher=str(work / "teacher"), task="classify", train=str(distill_file),
                                       eval=str(DATASET["dir"] / "dev.tsv"), select_eval=str(select_file),
                                       out=str(work / "compressed"),
                                       layers=DISTILL["layers"], epochs=DISTILL["epochs"],
                                       batch_size=DISTILL["batch_size"], learning_rate=DISTILL["learning_rate"],
                                       temperature=DISTILL["temperature"], alpha=DISTILL["alpha"],
                                       hidden_weight=DISTILL["hidden_weight"], max_length=DATASET["max_length"],
                                       max_grad_norm=args.max_grad_norm, data=DATASET["options"],
                                       progress=False))
        compress_seconds = time.perf_counter() - start
        report_md = (work / "compressed" / "report.md").read_text(encoding="utf-8")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(report_md, encoding="utf-8")
        args.out.with_suffix(".png").write_bytes((work / "compressed" / "report.png").read_bytes())
        print(report_md, file=sys.stderr)
        textbrewer = None if args.skip_textbrewer else textbrewer_student_accuracy(
            work / "teacher", distill_file, work)

    stages = {s["name"]: s for s in report["stages"]}
    teacher, student, int8 = stages["teacher"], stages["student"], stages["student int8 onnx"]
    result = {
        "benchmark": "compress_sst2", "dataset": args.dataset, "machine": machine_record(), "teacher_model": str(E5),
        "train_examples": args.train_size, "distill_examples": max(args.distill_size, args.train_size),
        "transfer": args.transfer,
        "max_length": DATASET["max_length"], "distill": DISTILL, "max_grad_norm": args.max_grad_norm,
        "best_student_chosen_on": f"{SELECT_EXAMPLES} held-out train examples",
        "teacher_finetune_seconds": round(teacher_seconds, 1), "compress_seconds": round(compress_seconds, 1),
        "stages": report["stages"],
        "ratios": {
            "student_accuracy_vs_teacher": round(student["metric"] / teacher["metric"], 4),
            "student_throughput_vs_teacher": round(student["throughput_batch32"] / teacher["throughput_batch32"], 2),
            "int8_onnx_throughput_vs_teacher": round(int8["throughput_batch32"] / teacher["throughput_batch32"], 2),
            "int8_onnx_smaller_than_teacher": round(teacher["size_bytes"] / int8["size_bytes"], 2),
            "int8_onnx_accuracy_vs_teacher": round(int8["metric"] / teacher["metric"], 4),
        },
        "targets": {"student_accuracy_vs_teacher": ">= 0.98", "student_throughput_vs_teacher": ">= 2.8",
                    "int8_onnx_throughput_vs_teacher": ">= 5", "int8_onnx_smaller_than_teacher": ">= 3.5",
                    "int8_onnx_accuracy_vs_teacher": ">= 0.97", "student_vs_textbrewer": ">= 0 points"},
        "textbrewer": textbrewer,
        "student_minus_textbrewer_points": (round(student["metric"] - textbrewer["dev_accuracy"], 2)
                                            if textbrewer else None),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"ratios": result["ratios"], "textbrewer": textbrewer,
                      "student_minus_textbrewer_points": result["student_minus_textbrewer_points"]}, indent=2))


if __name__ == "__main__":
    main()
