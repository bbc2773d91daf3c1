"""Distil one or more fine-tuned teachers into a smaller student: the whole loop, in view.

    student = teacher layers [3, 6, 9, 12] (or --layer-map, or an existing checkpoint)
    per step:  ce = task loss against the gold labels
               kd = KL(mean_k softmax(teacher_k / T) || softmax(student / T))
               loss = (1 - alpha) * ce + alpha * kd * T**2
                      + hidden_weight * sum_l MSE(W h_student[l], h_teacher[map[l]])
                      + attention_weight * sum_l KL(att_teacher[map[l]] || att_student[l])

With no intermediate matching, frozen teachers are run once over the training set and their
logits cached; otherwise they run on every batch (hidden states / attentions are too big to keep).
Teacher annealing (--anneal) moves the soft targets from the teachers' to the gold labels.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from nlpforge.backbone_inputs import with_text_prefix
from nlpforge.checkpoint import load_checkpoint, save_checkpoint
from nlpforge.compress.distill import (
    annealed_targets,
    attention_kl,
    hidden_mse,
    kd_loss,
    soft_targets,
    student_from_teacher,
    uniform_layer_map,
)
from nlpforge.config import PRESETS, ModelConfig
from nlpforge.errors import ConfigError
from nlpforge.inference import forward_batches
from nlpforge.recipes.finetune import LogWindow, adamw, linear_schedule, log_line, seed_everything
from nlpforge.tasks import TASKS, DataOptions, Task, get_task
from nlpforge.tracking import NoTracker, Tracker

NEG_INF = -1e4  # teacher logit for padding positions of cached per-token logits: probability 0


@dataclass
class DistillArgs:
    task: str
    teachers: list[str]
    train: str
    out: str
    eval: str | None = None
    layers: int = 4  # student depth, initialised from uniformly spaced teacher layers
    layer_map: list[int] | None = None  # explicit 1-based teacher layers for the student
    student: str | None = None  # start from this checkpoint, or a fresh model of this preset (config.PRESETS)
    epochs: float = 3.0
    batch_size: int = 32
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0  # 0 disables clipping
    max_length: int = 128
    temperature: float = 2.0
    alpha: float = 0.9
    hidden_weight: float = 0.0
    attention_weight: float = 0.0
    anneal: bool = False
    eval_every: int = 0
    log_every: int = 20
    eval_batch_size: int = 64
    max_train_examples: int = 0
    seed: int = 42
    threads: int = 0
    progress: bool = True
    data: DataOptions = dataclasses.field(default_factory=DataOptions)

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            self.data = DataOptions(**self.data)
        if self.task not in TASKS:
            raise ConfigError(f"--task {self.task!r} is not one of {', '.join(TASKS)}")
        if not self.teachers:
            raise ConfigError("give at least one --teacher checkpoint")
        if not 0 <= self.alpha <= 1 or self.temperature <= 0:
            raise ConfigError("--alpha must be in [0, 1] and --temperature > 0")


@dataclass
class DistillState:
    step: int = 0
    epoch: int = 0
    best: float | None = None
    best_step: int | None = None


def cache_teacher_logits(teachers: list[nn.Module], task: Task, features: list[dict], batch_size: int,
                         pad_id: int) -> list[list[list[torch.Tensor]]]:
    """cache[k][feature][view]: teacher k's distillation views (``task.distill_views``) of one feature:
    (C,) or (C, 2) per example, (T_i, C) or (T_i,) per token."""
    cache = []
    for teacher in teachers:
        per_feature: list[list[torch.Tensor]] = [[] for _ in features]
        for rows, output in forward_batches(teacher, features, batch_size, pad_id):
            for i, row in enumerate(rows):
                length = len(features[row]["input_ids"])
                per_feature[row] = [view[i, :length] if task.per_token_views else view[i]
                                    for view in task.distill_views(output)]
        cache.append(per_feature)
    return cache


def stack_cached(rows: list[int], cached: list[list[torch.Tensor]], width: int, per_token: bool) -> list[torch.Tensor]:
    """Per view, the cached logits of these features as a batch. Per-token logits ((T_i,) or (T_i, C))
    are padded to the batch width: QA positions with NEG_INF (probability 0), tag rows with 0 (masked)."""
    views = []
    for v in range(len(cached[rows[0]])):
        parts = [cached[r][v] for r in rows]
        if per_token:
            parts = [torch.cat([p, torch.full((width - p.shape[0], *p.shape[1:]), NEG_INF if p.dim() == 1 else 0.0)])
                     for p in parts]
        views.append(torch.stack(parts))
    return views


def preset_student(preset: str, teacher: nn.Module, task: Task) -> nn.Module:
    """A randomly initialised task model of a named shape (narrower or shallower than the teacher) that
    shares the teacher's vocabulary, positions, token types and labels."""
    config = teacher.config
    student_config = ModelConfig.from_name(
        preset, model_type=config.model_type, vocab_size=config.vocab_size, max_positions=config.max_positions,
        type_vocab_size=config.type_vocab_size, pad_token_id=config.pad_token_id, num_labels=config.num_labels,
        has_pooler=False)
    return task.model_class(student_config)


def evaluate_student(student: nn.Module, task: Task, tokenizer: Any, eval_examples: list[Any], heldout: list[Any],
                     labels: list[str] | None, args: DistillArgs, meta: dict[str, Any], state: DistillState,
                     tracker: Tracker) -> None:
    """Tune the task's settings on the held-out examples, evaluate, save the student when it is the best."""
    tuned = task.tune(student, tokenizer, heldout, labels, args.max_length, args.eval_batch_size, args.data)
    metrics = tuned.evaluate(student, tokenizer, eval_examples, labels, args.max_length, args.eval_batch_size,
                             args.data)
    log_line(Path(args.out), {"step": state.step, "epoch": state.epoch, "eval": metrics})
    tracker.log_metrics({Path(args.out).name: {"eval": metrics}}, state.step)
    if state.best is None or metrics[task.metric] > state.best:
        state.best, state.best_step = metrics[task.metric], state.step
        save_checkpoint(args.out, student, student.config, tokenizer, task.head,
                        {**meta, "task_settings": tuned.settings(), "metrics": metrics, "step": state.step})
    student.train()


def distill(args: DistillArgs, tracker: Tracker | None = None) -> dict[str, Any]:
    """Train the student; the best (or last, without --eval) goes to ``args.out``; returns a summary.

    ``tracker`` (tracking.py) also receives the step records, under the output directory's name.
    """
    tracker = tracker or NoTracker()
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    task = get_task(args.task)
    out = Path(args.out)
    teachers = [load_checkpoint(path) for path in args.teachers]
    first = teachers[0]
    for path, teacher in zip(args.teachers, teachers, strict=True):
        if teacher.task is None or teacher.task.name != task.name:
            found = teacher.task.name if teacher.task is not None else teacher.head
            raise ConfigError(f"{path}: teacher is a {found!r} model, not {task.name!r}; fine-tune it first")
        if teacher.tokenizer is None or teacher.tokenizer.get_vocab() != first.tokenizer.get_vocab():
            raise ConfigError(f"{path}: its tokenizer differs from {args.teachers[0]}'s; teachers and student "
                              "must share one tokenizer")
        if teacher.meta.get("labels") != first.meta.get("labels"):
            raise ConfigError(f"{path}: its labels differ from {args.teachers[0]}'s")
    tokenizer, labels = first.tokenizer, first.meta.get("labels")
    args = dataclasses.replace(args, data=with_text_prefix(args.data, first.meta))  # the teachers' inputs

    if args.student in PRESETS:
        student, layer_map = preset_student(args.student, first.model, task), args.layer_map
        layer_map = layer_map or uniform_layer_map(first.config.num_layers, student.config.num_layers)
    elif args.student:
        start = load_checkpoint(args.student)
        if start.tokenizer is None or start.tokenizer.get_vocab() != tokenizer.get_vocab():
            raise ConfigError(f"{args.student}: the student's tokenizer differs from the teachers'")
        if start.task is None or start.task.name != task.name:
            raise ConfigError(f"{args.student}: the student must be a {task.name!r} model")
        student, layer_map = start.model, args.layer_map or uniform_layer_map(
            first.config.num_layers, start.config.num_layers)
    else:
        layer_map = args.layer_map or uniform_layer_map(first.config.num_layers, args.layers)
        student = student_from_teacher(first.model, layer_map)
    if len(layer_map) != student.config.num_layers or max(layer_map) > first.config.num_layers:
        raise ConfigError(f"layer map {layer_map} does not fit a {student.config.num_layers}-layer student and a "
                          f"{first.config.num_layers}-layer teacher")

    examples = task.read(args.train, args.data)
    if args.max_train_examples:
        examples = examples[: args.max_train_examples]
    task.check(examples, labels, args.train)
    examples, heldout = task.heldout_split(examples)
    eval_examples = task.read(args.eval, args.data) if args.eval else None
    if eval_examples is not None:
        task.check(eval_examples, labels, args.eval)
    features = task.encode(tokenizer, examples, labels, args.max_length, args.data)
    pad_id = tokenizer.pad_token_id
    intermediate = args.hidden_weight > 0 or args.attention_weight > 0
    cache = None if intermediate else cache_teacher_logits(
        [t.model for t in teachers], task, features, args.eval_batch_size, pad_id)
    projection = None
    if args.hidden_weight and student.config.hidden_size != first.config.hidden_size:
        projection = nn.Linear(student.config.hidden_size, first.config.hidden_size)

    student.train()
    params = [*student.parameters(), *(projection.parameters() if projection else [])]
    trainable = nn.ModuleList([student, projection] if projection else [student])
    steps_per_epoch = math.ceil(len(features) / args.batch_size)
    total_steps = max(1, math.ceil(steps_per_epoch * args.epochs))
    optimizer = adamw(trainable, args.learning_rate, args.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_schedule(int(args.warmup_ratio * total_steps), total_steps))
    meta = {"task": task.name, "labels": labels, "max_length": args.max_length, "stage": "distill",
            "teachers": args.teachers, "layer_map": layer_map, "data": dataclasses.asdict(args.data),
            "loss": {"temperature": args.temperature, "alpha": args.alpha, "hidden_weight": args.hidden_weight,
                     "attention_weight": args.attention_weight, "anneal": args.anneal}}
    state = DistillState()
    a, T = args.alpha, args.temperature

    bar = tqdm(total=total_steps, desc=f"distill {task.name}", unit="step", disable=not args.progress)
    window = LogWindow()
    generator = torch.Generator().manual_seed(args.seed)
    while state.step < total_steps:
        order = torch.randperm(len(features), generator=generator).tolist()
        for start in range(0, len(order), args.batch_size):
            rows = order[start : start + args.batch_size]
            batch = task.collate([features[i] for i in rows], pad_id)
            inputs = task.model_inputs(batch)
            output = student(**inputs, output_hidden_states=intermediate,
                             output_attentions=args.attention_weight > 0)
            ce = task.loss(output, batch, None)
            width = batch["input_ids"].shape[1]
            if cache is not None:
                teacher_views = [stack_cached(rows, c, width, task.per_token_views) for c in cache]
                teacher_outputs = []
            else:
                with torch.no_grad():
                    teacher_outputs = [t.model(**inputs, output_hidden_states=args.hidden_weight > 0,
                                               output_attentions=args.attention_weight > 0) for t in teachers]
                teacher_views = [task.distill_views(o) for o in teacher_outputs]
            mask, gold = task.distill_mask(batch), task.distill_gold(batch)
            student_views = task.distill_views(output)
            kd = 0.0
            for v, student_view in enumerate(student_views):
                probs = soft_targets([views[v] for views in teacher_views], T)
                if args.anneal and gold is not None:
                    probs = annealed_targets(probs, gold, state.step / total_steps)
                kd = kd + kd_loss(student_view, probs, T, mask) / len(student_views)
            loss = (1 - a) * ce + a * kd * T**2
            real = batch["attention_mask"]
            for s_layer, t_layer in enumerate(layer_map, start=1):
                if args.hidden_weight:  # hidden_states[0] is the embeddings: layer l is index l
                    loss = loss + args.hidden_weight * sum(
                        hidden_mse(output.hidden_states[s_layer], o.hidden_states[t_layer], real, projection)
                        for o in teacher_outputs) / len(teacher_outputs)
                if args.attention_weight:
                    loss = loss + args.attention_weight * sum(
                        attention_kl(output.attentions[s_layer - 1], o.attentions[t_layer - 1], real)
                        for o in teacher_outputs) / len(teacher_outputs)
            loss.backward()
            if args.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            bar.update(1)
            window.add(loss.item(), len(rows), int(real.sum()))
            if state.step % args.log_every == 0 or state.step == total_steps:
                record = window.flush(state.step, state.epoch, scheduler.get_last_lr()[0], 1)
                bar.set_postfix(loss=f"{record['loss']:.4f}")
                log_line(out, record)
                tracker.log_metrics({out.name: record}, state.step)
            if eval_examples is not None and args.eval_every and state.step % args.eval_every == 0:
                evaluate_student(student, task, tokenizer, eval_examples, heldout, labels, args, meta, state,
                                 tracker)
            if state.step >= total_steps:
                break
        state.epoch += 1
        if eval_examples is not None and not (args.eval_every and state.step % args.eval_every == 0):
            evaluate_student(student, task, tokenizer, eval_examples, heldout, labels, args, meta, state,
                                 tracker)
    bar.close()
    if eval_examples is None:
        tuned = task.tune(student, tokenizer, heldout, labels, args.max_length, args.eval_batch_size, args.data)
        save_checkpoint(out, student, student.config, tokenizer, task.head,
                        {**meta, "task_settings": tuned.settings(), "step": state.step})
    return {"out": str(out), "steps": state.step, "best": state.best, "best_step": state.best_step,
            "metric": task.metric, "layer_map": layer_map}
