"""teacher -> distilled student -> (pruned student) -> INT8 torch / ONNX / INT8 ONNX, measured side by side.

    OUT/student             distilled student (--layers deep, initialised from teacher layers)
    OUT/pruned              student with --prune-heads heads removed (Michel et al. importance),
                            then re-distilled for --prune-epochs
    OUT/student-int8-torch  torch dynamic INT8 of the last torch stage
    OUT/student-onnx        ONNX fp32 export of it
    OUT/student-int8-onnx   onnxruntime INT8 (dynamic, or static with calibration from --train)
    OUT/report.{json,md,png}

Every stage is measured in this process on the same eval examples and threads.
"""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path
from typing import Any

import torch

from nlpforge.artifacts import load_artifact, record_artifact_metrics
from nlpforge.backbone_inputs import with_text_prefix
from nlpforge.checkpoint import load_checkpoint, save_checkpoint
from nlpforge.compress.export import export_onnx
from nlpforge.compress.measure import measure
from nlpforge.compress.prune import head_importance, prune_heads, select_lowest
from nlpforge.compress.quantize import quantize_onnx_dynamic, quantize_onnx_static, save_torch_quantized
from nlpforge.compress.report import write_report
from nlpforge.errors import ConfigError
from nlpforge.recipes.configs import CompressArgs
from nlpforge.recipes.distill import DistillArgs, distill
from nlpforge.tasks import Task, get_task
from nlpforge.tracking import Tracker, start_tracking


def distill_args(args: CompressArgs, out: Path, **overrides: Any) -> DistillArgs:
    values = dict(task=args.task, teachers=[args.teacher], train=args.train, eval=args.select_eval or args.eval,
                  out=str(out),
                  layers=args.layers, epochs=args.epochs, batch_size=args.batch_size,
                  learning_rate=args.learning_rate, max_length=args.max_length, temperature=args.temperature,
                  alpha=args.alpha, hidden_weight=args.hidden_weight, attention_weight=args.attention_weight,
                  max_grad_norm=args.max_grad_norm, max_train_examples=args.max_train_examples, seed=args.seed,
                  progress=args.progress, data=args.data)
    return DistillArgs(**{**values, **overrides})


def prune_student(args: CompressArgs, student_dir: Path, out: Path, tracker: Tracker) -> None:
    """Remove the least important heads of the student (gradient x gate importance on training
    batches), save it, then re-distil it from the teacher for ``prune_epochs``."""
    student = load_checkpoint(student_dir)
    task = student.task
    examples = task.read(args.train, args.data)[: 512]
    features = task.encode(student.tokenizer, examples, student.meta.get("labels"), args.max_length, args.data)
    pad_id = student.tokenizer.pad_token_id
    batches = [task.collate(features[i : i + 32], pad_id) for i in range(0, len(features), 32)]
    total_heads = sum(student.config.heads_of_layer(i) for i in range(student.config.num_layers))
    if args.prune_heads >= total_heads:
        raise ConfigError(f"--prune-heads {args.prune_heads}: the student has only {total_heads} heads")

    def task_loss(model: Any, batch: dict[str, Any], head_mask: Any) -> Any:
        return task.loss(model(**task.model_inputs(batch), head_mask=head_mask), batch, None)

    importance = head_importance(student.model, batches, task_loss)
    prune_heads(student.model, select_lowest(importance, args.prune_heads, keep_min_per_layer=1))
    save_checkpoint(out, student.model, student.model.config, student.tokenizer, task.head,
                    {**student.meta, "stage": "prune", "pruned_heads": args.prune_heads})
    layer_map = student.meta.get("layer_map")
    distill(distill_args(args, out, student=str(out), layer_map=layer_map, epochs=args.prune_epochs), tracker)


def calibration_batches(args: CompressArgs, task: Task, tokenizer: Any,
                        labels: list[str] | None) -> list[dict[str, Any]]:
    """Calibration inputs for static INT8: the first ``calibration_examples`` training examples."""
    examples = task.read(args.train, args.data)[: args.calibration_examples]
    features = task.encode(tokenizer, examples, labels, args.max_length, args.data)
    batches = [task.collate(features[i : i + 16], tokenizer.pad_token_id) for i in range(0, len(features), 16)]
    return [{k: v.numpy() for k, v in task.model_inputs(batch).items()} for batch in batches]


def compress(args: CompressArgs) -> dict[str, Any]:
    """Run every stage, measure each one, write OUT/report.*; returns the report."""
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    task = get_task(args.task)
    teacher = load_checkpoint(args.teacher)
    if teacher.task is None or teacher.task.name != task.name:
        found = teacher.task.name if teacher.task is not None else teacher.head
        raise ConfigError(f"{args.teacher}: the teacher is a {found!r} model; fine-tune it for "
                          f"{task.name!r} first (nlpforge train)")
    if args.layers > teacher.config.num_layers:
        raise ConfigError(f"--layers {args.layers}: the student cannot be deeper than the teacher "
                          f"({teacher.config.num_layers} layers)")
    args = dataclasses.replace(args, data=with_text_prefix(args.data, teacher.meta))  # its inputs
    tracker = start_tracking(args.track, f"compress {task.name}", dataclasses.asdict(args))
    distill(distill_args(args, out / "student"), tracker)
    last_torch = out / "student"
    stages = [("teacher", Path(teacher.path)), ("student", out / "student")]
    if args.prune_heads:
        prune_student(args, out / "student", out / "pruned", tracker)
        last_torch = out / "pruned"
        stages.append(("pruned", out / "pruned"))
    if args.quantize != "none":
        final = load_checkpoint(last_torch)
        # The artifact stores the int8 weights; loading rebuilds the same int8 model without re-quantizing.
        save_torch_quantized(final.model, final.tokenizer, out / "student-int8-torch", final.meta)
        export_onnx(final.model, out / "student-onnx", final.tokenizer, final.meta)
        if args.quantize == "int8-static":
            calibration = calibration_batches(args, task, final.tokenizer, final.meta.get("labels"))
            quantize_onnx_static(out / "student-onnx", out / "student-int8-onnx", calibration)
        else:
            quantize_onnx_dynamic(out / "student-onnx", out / "student-int8-onnx")
        stages += [("student int8 torch", out / "student-int8-torch"), ("student onnx", out / "student-onnx"),
                   ("student int8 onnx", out / "student-int8-onnx")]

    eval_examples = task.read(args.eval, args.data)
    labels = teacher.meta.get("labels")
    measured = []
    for name, path in stages:
        artifact = load_artifact(path)  # its task carries the stage's own tuned settings
        record = measure(artifact.model, artifact.tokenizer, artifact.task, eval_examples, labels, args.max_length,
                         args.data, artifact.size_bytes)
        measured.append({"name": name, "path": str(path), **record})
        if path.is_relative_to(out):  # a stage written here carries its own metrics (not the teacher given)
            record_artifact_metrics(path, record["metrics"], metrics_eval=args.eval)
    report = {
        "task": task.name, "metric": task.metric, "eval": args.eval, "eval_examples": len(eval_examples),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "settings": {k: v for k, v in dataclasses.asdict(args).items() if k != "progress"},
        "stages": measured,
    }
    write_report(out, report)
    for step, stage in enumerate(measured):  # one step per stage, in pipeline order
        tracker.log_metrics({"stage": {key: stage[key] for key in ("metrics", "latency_ms_batch1", "throughput_batch32",
                                                                    "size_mb")}}, step)
    tracker.log_artifact(out)  # report.json, report.md, report.png
    tracker.log_artifact(stages[-1][1])  # the final artifact
    tracker.end()
    return report
