"""Fine-tune an encoder on a labelled file: the whole loop, in view.

    for each optimizer step:  loss = task loss of the micro-batch / grad_accum; backward
                              clip gradients; AdamW step; linear warmup + decay
    every eval_every steps and at each epoch end: evaluate, keep the best checkpoint in OUT,
                              stop early after `early_stopping` evaluations without improvement
    every save_every steps:  write OUT/resume (model, optimizer, scheduler, RNG, data position)

Multi-process data parallel: run under ``torchrun --nproc-per-node N``; each process takes
1/N of every global batch and DDP averages the gradients (gloo on CPU), so the update equals
the single-process one for the same global batch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import peft
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from nlpforge.adapt.lora import LoraSettings, add_lora, parameter_counts, save_adapter
from nlpforge.adapt.prompt import attach_prompt, prompt_kind, save_prompt
from nlpforge.backbone_inputs import with_text_prefix
from nlpforge.checkpoint import TRAINING_STATE, load_checkpoint, save_checkpoint, write_directory_atomically
from nlpforge.device import resolve_device, to_device
from nlpforge.errors import ConfigError
from nlpforge.recipes.configs import FinetuneArgs
from nlpforge.tasks import Task, get_task, task_model_from_encoder, with_lm_loss
from nlpforge.tracking import NoTracker, Tracker, start_tracking

RESUME_DIR, METRICS_FILE = TRAINING_STATE


def parameter_groups(model: nn.Module, weight_decay: float, learning_rate: float | None = None,
                     head_learning_rate: float | None = None) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases and LayerNorm weights (1-d parameters); with
    ``head_learning_rate``, the task head (``model.head``) learns at that rate, the rest at
    ``learning_rate``."""
    head = getattr(model, "head", None) if head_learning_rate is not None else None
    in_head = {id(p) for p in head.parameters()} if isinstance(head, nn.Module) else set()
    groups = []
    for is_head in (False, True):
        rate = head_learning_rate if is_head else learning_rate
        params = [p for p in model.parameters() if p.requires_grad and (id(p) in in_head) == is_head]
        for decays in (True, False):
            chosen = [p for p in params if (p.ndim > 1) == decays]
            if chosen or not is_head:
                group = {"params": chosen, "weight_decay": weight_decay if decays else 0.0}
                groups.append(group if rate is None else {**group, "lr": rate})
    return groups


def adamw(model: nn.Module, learning_rate: float, weight_decay: float,
          head_learning_rate: float | None = None) -> torch.optim.AdamW:
    """AdamW with the fused kernel (one pass over all parameters per step: ~4x cheaper steps on CPU
    than the per-tensor loop for MiniLM-size models)."""
    groups = parameter_groups(model, weight_decay, learning_rate, head_learning_rate)
    return torch.optim.AdamW(groups, lr=learning_rate, fused=True)


def linear_schedule(warmup_steps: int, total_steps: int) -> Any:
    """LR factor: 0 -> 1 over the warmup, then 1 -> 0 linearly at the last step."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


LENGTH_WINDOW_BATCHES = 50  # --group-by-length sorts windows of this many batches (as transformers does)


def epoch_batches(num_examples: int, batch_size: int, seed: int, epoch: int,
                  lengths: Sequence[int] | None = None) -> list[list[int]]:
    """The shuffled batches of one epoch; a pure function of (seed, epoch), so resume replays it.

    With ``lengths`` (tokens per example) examples of similar length share a batch, so dynamic
    padding pads less: the shuffled order is cut into windows of ``LENGTH_WINDOW_BATCHES`` batches,
    each window is sorted by length and cut into batches, and the batches are shuffled. The number
    of batches stays ``ceil(num_examples / batch_size)``.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(num_examples, generator=generator).tolist()
    if lengths is None:
        return [order[i : i + batch_size] for i in range(0, num_examples, batch_size)]
    window = LENGTH_WINDOW_BATCHES * batch_size
    batches = []
    for start in range(0, num_examples, window):
        by_length = sorted(order[start : start + window], key=lambda i: lengths[i], reverse=True)
        batches += [by_length[i : i + batch_size] for i in range(0, len(by_length), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Run:
    """Process-group facts: rank 0 evaluates, saves and logs; every rank trains."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, rows: list[int]) -> list[int]:
        return rows[self.rank :: self.world]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def mean(self, value: float) -> float:
        """The mean of a per-process number over all processes."""
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world

    def broadcast_flag(self, flag: bool) -> bool:
        if self.world == 1:
            return flag
        value = torch.tensor([int(flag)])
        dist.broadcast(value, src=0)
        return bool(value.item())


@dataclass
class TrainState:
    """Where a run is; saved as resume/state.json, so a killed run continues exactly here."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0
    batch: int = 0  # next batch of the epoch
    best: float | None = None  # best value of the task's metric so far
    best_step: int | None = None
    stale: int = 0  # evaluations since the best one
    evaluated_step: int = -1
    task_settings: dict[str, Any] = dataclasses.field(default_factory=dict)  # of the best checkpoint


@dataclass
class LogWindow:
    """Loss and throughput since the last log record."""

    loss: float = 0.0
    micro_batches: int = 0
    examples: int = 0
    tokens: int = 0
    start: float = dataclasses.field(default_factory=time.perf_counter)

    def add(self, loss: float, examples: int, tokens: int) -> None:
        self.loss += loss
        self.micro_batches += 1
        self.examples += examples
        self.tokens += tokens

    def flush(self, step: int, epoch: int, lr: float, grad_accum: int) -> dict[str, Any]:
        """The log record of the steps since the last one; starts a new window."""
        seconds = max(time.perf_counter() - self.start, 1e-9)
        record = {"step": step, "epoch": epoch, "loss": self.loss * grad_accum / max(self.micro_batches, 1),
                  "lr": lr, "examples_per_s": self.examples / seconds, "tokens_per_s": self.tokens / seconds}
        self.loss, self.micro_batches, self.examples, self.tokens = 0.0, 0, 0, 0
        self.start = time.perf_counter()
        return record


@dataclass
class Progress:
    """Where the training log goes: the progress bar, metrics.jsonl (rank 0) and the tracker."""

    run: Run
    bar: Any  # tqdm
    out: Path
    tracker: Tracker
    window: LogWindow = dataclasses.field(default_factory=LogWindow)

    def log(self, step: int, epoch: int, lr: float, grad_accum: int) -> None:
        """Write the record of the steps since the last one."""
        record = self.window.flush(step, epoch, lr, grad_accum)
        record["loss"] = self.run.mean(record["loss"])  # each process saw 1/N of every batch
        self.bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
        if self.run.main:
            log_line(self.out, record)
            self.tracker.log_metrics(record, step)


def optimizer_step(model: nn.Module, optimizer: Any, scheduler: Any, max_grad_norm: float) -> None:
    """One update: clip the gradients' norm, step, advance the schedule, clear the gradients."""
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


@dataclass
class Evaluation:
    """What evaluating and keeping the best checkpoint reads (rank 0 only)."""

    task: Task
    examples: list[Any]
    heldout: list[Any]  # training examples kept back to tune the task's settings (may be empty)
    labels: list[str] | None
    tokenizer: Any
    out: Path
    meta: dict[str, Any]
    args: FinetuneArgs
    tracker: Tracker


def evaluate_and_keep_best(evaluation: Evaluation, model: nn.Module, state: TrainState) -> bool:
    """Tune the task's settings on the held-out examples, evaluate, save the checkpoint when it is the
    best so far; returns whether to stop early."""
    args = evaluation.args
    task = evaluation.task.tune(model, evaluation.tokenizer, evaluation.heldout, evaluation.labels,
                                args.max_length, args.eval_batch_size, args.data)
    metrics = task.evaluate(model, evaluation.tokenizer, evaluation.examples, evaluation.labels, args.max_length,
                            args.eval_batch_size, args.data)
    log_line(evaluation.out, {"step": state.step, "epoch": state.epoch, "eval": metrics})
    evaluation.tracker.log_metrics({"eval": metrics}, state.step)
    value = metrics[task.metric]
    if state.best is None or value > state.best:
        state.best, state.best_step, state.stale, state.task_settings = value, state.step, 0, task.settings()
        save_model(evaluation.out, model, evaluation.tokenizer, task.head,
                   {**evaluation.meta, "task_settings": task.settings(), "metrics": metrics, "step": state.step})
    else:
        state.stale += 1
    model.train()
    return bool(args.early_stopping) and state.stale >= args.early_stopping


def save_model(out: Path, model: nn.Module, tokenizer: Any, head: str, meta: dict[str, Any]) -> None:
    """The trained model: an adapter directory for a LoRA model (adapters + head), a prompt directory
    for a prompt-tuned one (prompt + head), else a checkpoint."""
    if isinstance(model, peft.PeftModel):
        save_adapter(out, model, tokenizer, meta)
    elif prompt_kind(model) is not None:
        save_prompt(out, model, tokenizer, meta)
    else:
        save_checkpoint(out, model, model.config, tokenizer, head, meta)


def finetune(args: FinetuneArgs) -> dict[str, Any]:
    """Train, evaluate, keep the best checkpoint in ``args.out``; returns the run's summary."""
    if args.threads:
        torch.set_num_threads(args.threads)
    run = Run()
    device = resolve_device(args.device)
    if run.world > 1 and device.type != "cpu":
        raise ConfigError(f"--device {args.device}: several processes train on the CPU (gloo); on a GPU run one "
                          "process")
    task = get_task(args.task)
    if not task.finetunes:
        raise ConfigError(f"--task {task.name}: trained by nlpforge fewshot --method {task.name}, not by train")
    out = Path(args.out)
    seed_everything(args.seed)

    base = load_checkpoint(args.model)
    if base.tokenizer is None:
        raise ConfigError(f"{args.model}: has no tokenizer files; fine-tuning needs the checkpoint's tokenizer")
    if base.tokenizer.pad_token is None and base.tokenizer.eos_token is not None:  # GPT-2's: pad with eos
        base.tokenizer.pad_token = base.tokenizer.eos_token
    args = dataclasses.replace(args, data=with_text_prefix(args.data, base.meta))
    continuing = base.task is not None and base.task.name == task.name  # continue training a model of this task
    train_examples = task.read(args.train, args.data)
    if args.max_train_examples:
        train_examples = train_examples[: args.max_train_examples]
    labels = task.label_names(train_examples, base.meta.get("labels") if continuing else None)
    task.check(train_examples, labels, args.train)  # continuing a model: its label set must cover them
    train_examples, heldout = task.heldout_split(train_examples)
    eval_examples = task.read(args.eval, args.data) if args.eval else None
    if eval_examples is not None:
        task.check(eval_examples, labels, args.eval)
    features = task.encode(base.tokenizer, train_examples, labels, args.max_length, args.data)

    if continuing:
        model = base.model
    else:
        # A decoder language model ("lm") is its own body: its LM head is the tied token embedding.
        encoder = base.model if base.head in ("base", "lm") else load_checkpoint(args.model, head="base").model
        if args.classifier_pooling != "cls":  # the head reads what the config says (tasks/classify.py)
            encoder.config = dataclasses.replace(encoder.config, classifier_pooling=args.classifier_pooling)
        model = task_model_from_encoder(encoder, task, len(labels) if labels else 2, base.tokenizer.pad_token_id)
        task.init_head(model, features)
    objective = with_lm_loss(task, model, args.lm_loss_weight)  # the task's inputs and loss (+ lambda * LM loss)
    if args.lora_r:  # frozen body + low-rank adapters; the head trains in full
        model = add_lora(model, LoraSettings(args.lora_r, args.lora_alpha, args.lora_dropout, args.lora_targets))
    if args.prompt_tuning != "none":  # frozen body + a trainable prompt; the head trains in full
        attach_prompt(model, args.prompt_tuning, args.prompt_length)
    model.to(device).train()
    class_weights = task.class_weights(features, len(labels)) if args.class_weights and labels else None
    if class_weights is not None:
        class_weights = class_weights.to(device)
    trained = nn.parallel.DistributedDataParallel(model) if run.world > 1 else model
    lengths = [task.padded_length(feature) for feature in features] if args.group_by_length else None

    steps_per_epoch = math.ceil(math.ceil(len(features) / args.batch_size) / args.grad_accum)
    total_steps = max(1, math.ceil(steps_per_epoch * args.epochs))
    optimizer = adamw(model, args.learning_rate, args.weight_decay, args.head_learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_schedule(int(args.warmup_ratio * total_steps), total_steps)
    )
    state = TrainState()
    if args.resume and (out / RESUME_DIR / "state.json").is_file():
        state = load_resume(out / RESUME_DIR, model, optimizer, scheduler)
    meta = {"task": task.name, "labels": labels, "max_length": args.max_length, "stage": "finetune",
            # an adapter is loaded on top of its base: record where that is
            "base_model": str(base.path) if args.lora_r or args.prompt_tuning != "none" else args.model,
            "data": dataclasses.asdict(args.data),
            # an adapter's head is rebuilt on its base at load time: it must pool as it was trained to
            **({"classifier_pooling": args.classifier_pooling} if args.classifier_pooling != "cls" else {})}
    tracker = start_tracking(args.track, f"finetune {task.name}", dataclasses.asdict(args)) if run.main \
        else NoTracker()
    evaluation = Evaluation(task, eval_examples or [], heldout, labels, base.tokenizer, out, meta, args, tracker)

    def evaluate_on_main() -> bool:
        """Rank 0 evaluates; every rank records the evaluation and learns whether to stop."""
        state.evaluated_step = state.step
        return run.broadcast_flag(evaluate_and_keep_best(evaluation, model, state) if run.main else False)

    bar = tqdm(total=total_steps, initial=state.step, desc=f"train {task.name}", unit="step",
               disable=not (args.progress and run.main), dynamic_ncols=True)
    progress = Progress(run, bar, out, tracker)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    stopped = False
    loop_start, tokens_trained = time.perf_counter(), 0  # this process's run (since the resume point)
    while state.step < total_steps and not stopped:
        batches = epoch_batches(len(features), args.batch_size, args.seed, state.epoch, lengths)
        for index in range(state.batch, len(batches)):
            batch = to_device(task.collate([features[i] for i in run.shard(batches[index])],
                                           base.tokenizer.pad_token_id), device)
            with autocast:
                output = trained(**objective.model_inputs(batch))
                loss = objective.loss(output, batch, class_weights) / args.grad_accum
            loss.backward()
            tokens = int(batch["attention_mask"].sum()) * run.world
            progress.window.add(loss.item(), len(batches[index]), tokens)
            tokens_trained += tokens
            state.batch = index + 1
            if state.batch % args.grad_accum and state.batch < len(batches):
                continue
            optimizer_step(model, optimizer, scheduler, args.max_grad_norm)
            state.step += 1
            bar.update(1)
            if state.step % args.log_every == 0 or state.step == total_steps:
                progress.log(state.step, state.epoch, scheduler.get_last_lr()[0], args.grad_accum)
            if eval_examples is not None and args.eval_every and state.step % args.eval_every == 0:
                stopped = evaluate_on_main()
            if state.step % args.save_every == 0 and run.main:
                save_resume(out / RESUME_DIR, model, optimizer, scheduler, state)
            if stopped or state.step >= total_steps:
                break
        if state.batch >= len(batches):  # the epoch ran to its end
            state.epoch, state.batch = state.epoch + 1, 0
            if eval_examples is not None and not stopped and state.evaluated_step != state.step:
                stopped = evaluate_on_main()
    if eval_examples is not None and not stopped and state.evaluated_step != state.step:
        evaluate_on_main()  # a fractional last epoch ends between evaluations
    loop_seconds = time.perf_counter() - loop_start
    bar.close()
    if eval_examples is None and run.main:  # nothing to choose a best by: keep the last model
        tuned = task.tune(model, base.tokenizer, heldout, labels, args.max_length, args.eval_batch_size, args.data)
        save_model(out, model, base.tokenizer, task.head, {**meta, "task_settings": tuned.settings(),
                                                            "step": state.step})
    if run.main:
        save_resume(out / RESUME_DIR, model, optimizer, scheduler, state)
        tracker.log_artifact(out)
        tracker.end()
    run.barrier()
    return {"out": str(out), "steps": state.step, "best": state.best, "best_step": state.best_step,
            "metric": task.metric, "loop_seconds": round(loop_seconds, 1),
            "tokens_per_s": round(tokens_trained / max(loop_seconds, 1e-9), 1), **parameter_counts(model)}


def log_line(out: Path, record: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / METRICS_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def save_resume(directory: Path, model: nn.Module, optimizer: Any, scheduler: Any, state: Any) -> None:
    """Everything needed to continue exactly where the run is; state.json is written last."""

    def write(tmp: Path) -> None:
        save_file({k: v.cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state()}, tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps(dataclasses.asdict(state)) + "\n", encoding="utf-8")

    write_directory_atomically(directory, write, last="state.json")


def load_resume(directory: Path, model: nn.Module, optimizer: Any, scheduler: Any,
                state_type: type[Any] = TrainState) -> Any:
    """Restore what ``save_resume`` wrote; returns the saved state as a ``state_type``."""
    model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=True)
    saved = torch.load(directory / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["torch_rng"])
    return state_type(**json.loads((directory / "state.json").read_text(encoding="utf-8")))
