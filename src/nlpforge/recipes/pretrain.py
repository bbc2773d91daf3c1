"""Pre-train (from scratch) or continue pre-training a model on unlabelled text: the whole loop.

    once per run:            corpus -> documents -> the objective's blocks, written to OUT/blocks/
                             (train: the first 95% of each file; held out: the last 5%)
    for each optimizer step: a shuffled batch of blocks -> the objective's batch (dynamic masks
                             drawn here) -> loss / grad_accum; backward; clip; AdamW; linear schedule
    every eval_every steps:  held-out loss, perplexity and masked-token (next-token) accuracy with
                             fixed masks -> metrics.jsonl; the model is saved to OUT (HF layout:
                             transformers loads it as AutoModelForMaskedLM / AutoModelForCausalLM)
    every save_every steps:  OUT/resume (model with training-only heads, optimizer, schedule, RNG,
                             position in the epoch), so a killed run continues where it was

Multi-process data parallel under ``torchrun`` as in fine-tuning (each process takes 1/N of a batch).
A block's mask depends on the block and the epoch only, and each process's loss is weighted by its
share of the batch's scored tokens, so N processes take the steps one process would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from nlpforge.checkpoint import load_checkpoint, save_checkpoint
from nlpforge.config import PRESETS, ModelConfig
from nlpforge.data.corpus import CorpusFile, corpus_files, iter_documents
from nlpforge.errors import ConfigError, InputDataError
from nlpforge.locate import resolve_directory
from nlpforge.pretraining import Objective, get_objective
from nlpforge.pretraining.blocks import Blocks, write_blocks
from nlpforge.pretraining.objective import EVAL_EPOCH, Scores
from nlpforge.recipes.configs import PretrainArgs
from nlpforge.recipes.finetune import (
    RESUME_DIR,
    Progress,
    Run,
    adamw,
    epoch_batches,
    linear_schedule,
    load_resume,
    log_line,
    optimizer_step,
    save_resume,
    seed_everything,
)
from nlpforge.tracking import NoTracker, start_tracking

BLOCKS_DIR = "blocks"


@dataclass
class PretrainState:
    """Where a run is; saved as resume/state.json."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # next batch of the epoch
    evaluated_step: int = -1
    last_eval: dict[str, float] = dataclasses.field(default_factory=dict)


def starting_model(args: PretrainArgs, objective: Objective) -> tuple[nn.Module, PreTrainedTokenizerBase, str]:
    """(model with the objective's heads, tokenizer, where the weights came from)."""
    if args.config is not None:
        tokenizer = AutoTokenizer.from_pretrained(str(resolve_directory(args.tokenizer)))
        config = scratch_config(args.config, tokenizer, objective)
        seed_everything(args.seed)
        return objective.new_model(config), tokenizer, f"scratch:{args.config}"
    base = load_checkpoint(args.model)
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_directory(args.tokenizer))) if args.tokenizer \
        else base.tokenizer
    if tokenizer is None:
        raise ConfigError(f"{args.model}: has no tokenizer files; pass --tokenizer DIR")
    if base.config.family != objective.family:
        kind = "an encoder (BERT family)" if objective.family == "bert" else "a decoder (GPT-2 family)"
        raise ConfigError(f"--objective {args.objective} trains {kind}; {args.model} is a {base.config.family} model")
    if len(tokenizer) > base.config.vocab_size:
        raise ConfigError(f"the tokenizer has {len(tokenizer)} tokens but {args.model} embeds only "
                          f"{base.config.vocab_size}: the tokenizer does not match the checkpoint; pass the "
                          "checkpoint's own tokenizer (or none)")
    seed_everything(args.seed)
    return objective.extend(base.model), tokenizer, str(args.model)


def scratch_config(name: str, tokenizer: PreTrainedTokenizerBase, objective: Objective) -> ModelConfig:
    """A preset (or a config file) sized to the tokenizer's vocabulary and special tokens."""
    special = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    if objective.family == "gpt":
        end = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        special.update(bos_token_id=end, eos_token_id=end)
    if name in PRESETS:
        config = ModelConfig.from_name(name, **special)
    elif Path(name).is_file():
        config = ModelConfig.from_dict({**ModelConfig.from_file(name).to_dict(), **special}, source=name)
    else:
        raise ConfigError(f"--config {name!r}: not a preset ({', '.join(sorted(PRESETS))}) nor a config file")
    if config.family != objective.family:
        raise ConfigError(f"--config {name}: a {config.family} model; --objective needs the {objective.family} family")
    return config


def check_block_size(args: PretrainArgs, model: nn.Module) -> None:
    config = model_config(model)
    positions = config.max_positions - config.position_offset
    if args.block_size > positions:
        raise ConfigError(f"--block-size {args.block_size} is above the model's {positions} positions; "
                          f"use --block-size {positions} or less")


def model_config(model: nn.Module) -> ModelConfig:
    inner = getattr(model, "lm", model)
    return inner.config


def corpus_fingerprint(files: list[CorpusFile], args: PretrainArgs, tokenizer: PreTrainedTokenizerBase) -> str:
    """What the stored blocks were made from: files (size, mtime), objective, block size, vocabulary."""
    parts = [(str(f.path.resolve()), f.path.stat().st_size, f.path.stat().st_mtime_ns, f.encoding) for f in files]
    described = [parts, args.objective, args.block_size, args.heldout_share, args.seed, args.text_field,
                 len(tokenizer), tokenizer.name_or_path]
    return hashlib.sha256(json.dumps(described, default=str).encode()).hexdigest()[:16]


def prepare_blocks(args: PretrainArgs, objective: Objective, tokenizer: PreTrainedTokenizerBase,
                   files: list[CorpusFile], out: Path, run: Run) -> tuple[Blocks, Blocks]:
    """The (train, held-out) block stores: rank 0 writes them unless OUT/blocks already holds them for
    this corpus; every process then maps them."""
    fingerprint = corpus_fingerprint(files, args, tokenizer)
    for part in ("train", "heldout"):
        directory = out / BLOCKS_DIR / part
        index = directory / "blocks.json"
        current = index.is_file() and json.loads(index.read_text(encoding="utf-8"))["source"] == fingerprint
        if run.main and not current:
            documents = iter_documents(files, part=part, heldout_share=args.heldout_share, text_field=args.text_field)
            rows = objective.blocks(tokenizer, tqdm(documents, desc=f"blocks ({part})", unit=" docs",
                                                    disable=not args.progress), args.block_size, args.seed)
            write_blocks(directory, rows, objective.fields(args.block_size), args.block_size, fingerprint)
    run.barrier()
    stores = {part: Blocks(out / BLOCKS_DIR / part) for part in ("train", "heldout")}
    if not len(stores["train"]):
        raise InputDataError(f"{', '.join(str(f.path) for f in files)}: too little text for one training block of "
                             f"{args.block_size} tokens; add text or lower --block-size")
    return stores["train"], stores["heldout"]


@torch.no_grad()
def evaluate(objective: Objective, model: nn.Module, blocks: Blocks, tokenizer: PreTrainedTokenizerBase,
             batch_size: int, limit: int) -> dict[str, float]:
    """Held-out loss, perplexity and accuracy of the predicted tokens (fixed masks: EVAL_EPOCH)."""
    was_training = model.training
    model.eval()
    count = len(blocks) if limit <= 0 else min(limit, len(blocks))
    scores = Scores()
    for start in range(0, count, batch_size):
        indices = list(range(start, min(start + batch_size, count)))
        batch = objective.batch(blocks.rows(indices), indices, tokenizer, EVAL_EPOCH)
        scores.add(objective.loss(model, batch)[1])
    model.train(was_training)
    return {**scores.report("eval"), "eval_blocks": count, "eval_tokens": scores.tokens}


def pretrain(args: PretrainArgs) -> dict[str, Any]:
    """Run the objective for ``args.max_steps`` steps; returns the run's summary."""
    if args.threads:
        torch.set_num_threads(args.threads)
    run = Run()
    out = Path(args.out)
    objective = get_objective(args.objective, **({} if args.objective == "clm" else
                                                 {"rate": args.mask_rate, "static": args.static_masking,
                                                  "seed": args.seed}))
    files = corpus_files(args.corpus, args.encoding)
    model, tokenizer, source = starting_model(args, objective)
    check_block_size(args, model)
    train_blocks, heldout_blocks = prepare_blocks(args, objective, tokenizer, files, out, run)
    model.train()
    trained = nn.parallel.DistributedDataParallel(model) if run.world > 1 else model
    optimizer = adamw(model, args.learning_rate, args.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_schedule(int(args.warmup_ratio * args.max_steps), args.max_steps))
    state = PretrainState()
    if args.resume and (out / RESUME_DIR / "state.json").is_file():
        state = load_resume(out / RESUME_DIR, model, optimizer, scheduler, PretrainState)
    meta = {"stage": "pretrain", "objective": args.objective, "source": source, "block_size": args.block_size,
            "corpus": [str(f.path) for f in files], "max_length": args.block_size}
    tracker = start_tracking(args.track, f"pretrain {args.objective}", dataclasses.asdict(args)) if run.main \
        else NoTracker()

    def evaluate_and_save() -> None:
        state.evaluated_step = state.step
        if not run.main:
            return
        metrics = evaluate(objective, model, heldout_blocks, tokenizer, args.batch_size, args.eval_blocks) \
            if len(heldout_blocks) else {}
        state.last_eval = metrics
        log_line(out, {"step": state.step, "epoch": state.epoch, **metrics})
        tracker.log_metrics(metrics, state.step)
        language_model = objective.language_model(model)
        save_checkpoint(out, language_model, language_model.config, tokenizer,
                        "lm" if objective.family == "gpt" else "mlm", {**meta, "step": state.step, "metrics": metrics})

    bar = tqdm(total=args.max_steps, initial=state.step, desc=f"pretrain {args.objective}", unit="step",
               disable=not (args.progress and run.main), dynamic_ncols=True)
    progress = Progress(run, bar, out, tracker)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16)
    loop_start, tokens_trained, steps_before = time.perf_counter(), 0, state.step
    if state.step == 0 and run.main:
        evaluate_and_save()  # the starting point of the perplexity curve
    while state.step < args.max_steps:
        batches = epoch_batches(len(train_blocks), args.batch_size, args.seed, state.epoch)
        for index in range(state.batch, len(batches)):
            indices = run.shard(batches[index])
            batch = objective.batch(train_blocks.rows(indices), indices, tokenizer, state.epoch)
            with autocast:
                loss, scores = objective.loss(trained, batch)
                if run.world > 1:  # this process's mean -> its share of the mean over every process's tokens
                    loss = loss * (scores.tokens / max(run.mean(scores.tokens), 1e-9))
                loss = loss / args.grad_accum
            loss.backward()
            tokens = int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
            progress.window.add(loss.item(), len(indices), tokens * run.world)
            tokens_trained += tokens * run.world
            state.batch = index + 1
            if state.batch % args.grad_accum and state.batch < len(batches):
                continue
            optimizer_step(model, optimizer, scheduler, args.max_grad_norm)
            state.step += 1
            bar.update(1)
            if state.step % args.log_every == 0 or state.step == args.max_steps:
                progress.log(state.step, state.epoch, scheduler.get_last_lr()[0], args.grad_accum)
            if state.step % args.eval_every == 0:
                evaluate_and_save()
            if state.step % args.save_every == 0 and run.main:
                save_resume(out / RESUME_DIR, model, optimizer, scheduler, state)
            if state.step >= args.max_steps:
                break
        if state.batch >= len(batches):
            state.epoch, state.batch = state.epoch + 1, 0
    loop_seconds = time.perf_counter() - loop_start
    bar.close()
    if state.evaluated_step != state.step:
        evaluate_and_save()
    if run.main:
        save_resume(out / RESUME_DIR, model, optimizer, scheduler, state)
        tracker.log_artifact(out)
        tracker.end()
    run.barrier()
    return {"out": str(out), "objective": args.objective, "steps": state.step, "epochs_seen": state.epoch,
            "train_blocks": len(train_blocks), "heldout_blocks": len(heldout_blocks), **state.last_eval,
            "loop_seconds": round(loop_seconds, 1), "steps_this_run": state.step - steps_before,
            "tokens_per_s": round(tokens_trained / max(loop_seconds, 1e-9), 1)}
