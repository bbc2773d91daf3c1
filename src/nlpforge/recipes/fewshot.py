"""The K-shot protocol: for each seed, sample K examples per class (or N in total, stratified) from
the training file, learn from them with one method, evaluate on the evaluation file; report the
runs, their mean and standard deviation, and keep the best run's model.

    for K in --k (or the one --examples):
        for seed in --seed .. --seed + --seeds - 1:
            sample = sample_per_class(train, K, seed)          # the same sample for every method
            model_dir = METHOD(sample)                          # a checkpoint (or LoRA adapter) directory
            accuracy, macro_f1 = evaluate(load_checkpoint(model_dir), eval file)
    OUT/results.json; OUT/model = the best run's model (OUT/k<K>/... with several K)

Methods (the loops are here, the pieces in nlpforge.adapt):
    finetune     the fine-tuning recipe on the sample (every weight trains)
    lora         the same with LoRA adapters (adapt/lora.py): adapters + head train
    prompt       the same with a soft prompt of input vectors (adapt/prompt.py): prompt + head train
    deep-prompt  P-tuning v2: key/value prefixes at every layer (adapt/prompt.py): prefixes + head train
    contrastive  SetFit: contrastive tuning of the body on pairs drawn from the sample, then a
                 classification head over the mean-pooled embeddings (adapt/contrastive.py)
    cloze        PET: templates with a mask slot and a verbalizer, scored by the masked-LM head and
                 trained on the cloze objective, whole model or LoRA (adapt/cloze.py, tasks/cloze.py)
    generator    a meta-trained prompt generator (adapt/generator.py) writes a soft prompt from the
                 K examples for the frozen encoder; class prototypes classify (``meta_train`` below)
With --self-train N, any method's model is a teacher: it labels N unlabelled texts (of the training
file outside the sample, or of --unlabelled) and a fine-tuned student learns from the sample and its
confident labels (``train_student``).
Every method's model is evaluated through ``load_checkpoint`` of what it wrote, so the reported
figure is that of the artifact that serves.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from nlpforge.adapt.cloze import check_template, label_logits, parse_verbalizer, verbalizer_token_ids
from nlpforge.adapt.contrastive import centroid_head_init, contrastive_pairs, cosine_similarity_loss
from nlpforge.adapt.generator import (
    GeneratorSettings,
    PromptGenerator,
    generate_prompt,
    leave_one_out_logits,
    load_generator,
    loo_reward,
    prompted_embeddings,
    prototypes,
    refine_by_reward,
    save_generator,
    task_ids,
)
from nlpforge.adapt.lora import LoraSettings, add_lora
from nlpforge.adapt.prompt import PROMPT_KINDS, attach_prompt, save_prompt
from nlpforge.adapt.sampling import by_label, sample_per_class, sample_stratified
from nlpforge.adapt.self_training import confident_balanced, unlabelled_pool
from nlpforge.backbone_inputs import with_text_prefix
from nlpforge.checkpoint import Checkpoint, load_checkpoint, save_checkpoint, write_directory_atomically
from nlpforge.data.collate import collate_inputs
from nlpforge.data.examples import TextExample
from nlpforge.data.options import DataOptions
from nlpforge.data.text import input_records, read_lines
from nlpforge.embed import pool
from nlpforge.errors import CheckpointError, ConfigError, InputDataError
from nlpforge.predictor import Predictor
from nlpforge.recipes.configs import FewshotArgs, FinetuneArgs, MetaTrainArgs
from nlpforge.recipes.finetune import (
    adamw,
    epoch_batches,
    finetune,
    linear_schedule,
    optimizer_step,
    seed_everything,
)
from nlpforge.tasks import get_task, task_model_from_encoder
from nlpforge.tasks.classify import encode as classify_encode
from nlpforge.tasks.cloze import ClozeTask

TASK = "classify"  # the few-shot methods classify texts (or text pairs)
DEFAULT_EPOCHS = {"finetune": 20.0, "lora": 20.0, "prompt": 20.0, "deep-prompt": 20.0, "contrastive": 1.0,
                  "cloze": 20.0}
# Chosen on a 600-example slice of SST-2's training file held out of the samples (MiniLM, K = 8, 16):
# contrastive at 6e-5 beat SetFit's 2e-5 by 2 points; a centroid-started head with 50 gentle steps
# matched logistic regression, 200 steps at 1e-2 lost 2.4 points.
DEFAULT_LEARNING_RATE = {"finetune": 5e-5, "lora": 5e-4, "prompt": 1e-2, "deep-prompt": 1e-2, "contrastive": 6e-5,
                         "cloze": 2e-5}
LORA_CLOZE_LEARNING_RATE = 5e-4
DEFAULT_BATCH_SIZE = {"finetune": 8, "lora": 8, "prompt": 8, "deep-prompt": 8, "contrastive": 16, "cloze": 8}
GENERATOR_STEP_LEARNING_RATE = 1e-3  # --generator-steps on the generated prompt
HEAD_LEARNING_RATE = 1e-3  # contrastive: the head is fitted on fixed embeddings, full batch
SELF_TRAIN_BATCH_SIZE = 16  # --self-train: the student sees hundreds to thousands of examples


def write_sample(path: Path, sample: list[Any]) -> None:
    """The sample as JSON Lines (text, text_pair, label): what the fine-tuning recipe reads."""
    with open(path, "w", encoding="utf-8") as handle:
        for example in sample:
            record = {"text": example.text, "label": example.label}
            if example.text_pair is not None:
                record["text_pair"] = example.text_pair
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def train_by_finetuning(args: FewshotArgs, sample: list[Any], labels: list[str], seed: int, out: Path,
                        group_by_length: bool = False, pooling: str = "cls") -> Path:
    """finetune / lora / prompt / deep-prompt: the fine-tuning recipe on the sample, keeping the last model
    (no dev set). ``group_by_length`` and ``pooling``: as ``nlpforge train --group-by-length
    --classifier-pooling`` (the self-training student's thousands of examples of varied length)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    sample_file = out.parent / f"{out.name}.sample.jsonl"
    write_sample(sample_file, sample)
    pairs = sample[0].text_pair is not None
    data = dataclasses.replace(args.data, text_column="text", label_column="label",
                               text_pair_column="text_pair" if pairs else None, encoding="utf-8")
    finetune(FinetuneArgs(
        task=TASK, model=args.model, train=str(sample_file), out=str(out), eval=None,
        epochs=args.epochs or DEFAULT_EPOCHS[args.method],
        batch_size=args.batch_size or DEFAULT_BATCH_SIZE[args.method],
        learning_rate=args.learning_rate or DEFAULT_LEARNING_RATE[args.method], warmup_ratio=0.1,
        max_length=args.max_length, seed=seed, save_every=10**9, log_every=10**9, progress=False,
        group_by_length=group_by_length, classifier_pooling=pooling,
        lora_r=args.lora_r if args.method == "lora" else 0, lora_targets=args.lora_targets,
        prompt_tuning=args.method if args.method in PROMPT_KINDS else "none", prompt_length=args.prompt_length,
        data=data))
    sample_file.unlink()
    shutil.rmtree(out / "resume", ignore_errors=True)  # a finished few-shot run is not resumed
    (out / "metrics.jsonl").unlink(missing_ok=True)
    return out


def train_contrastively(args: FewshotArgs, sample: list[Any], labels: list[str], seed: int, out: Path) -> Path:
    """contrastive (SetFit): tune the body on same/different-label pairs, then fit the head on the
    mean-pooled embeddings of the sample with the body frozen; writes a checkpoint whose classifier
    reads the mean of the real tokens (``classifier_pooling = "mean"``)."""
    seed_everything(seed)
    base = load_checkpoint(args.model, head="base")
    tokenizer, encoder = base.tokenizer, base.model
    args = dataclasses.replace(args, data=with_text_prefix(args.data, base.meta))
    label_ids = [labels.index(example.label) for example in sample]
    features = classify_encode(tokenizer, sample, None, args.max_length, args.data.text_prefix)

    def embed(indices: list[int]) -> torch.Tensor:
        batch = collate_inputs([features[i] for i in indices], tokenizer.pad_token_id)
        hidden = encoder(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")).last_hidden_state
        return pool(hidden, batch["attention_mask"], "mean")  # (B, H)

    pairs = contrastive_pairs(label_ids, args.pair_iterations, seed)
    epochs = args.epochs or DEFAULT_EPOCHS["contrastive"]
    batch_size = args.batch_size or DEFAULT_BATCH_SIZE["contrastive"]
    steps = max(1, math.ceil(len(pairs) / batch_size * epochs))
    optimizer = adamw(encoder, args.learning_rate or DEFAULT_LEARNING_RATE["contrastive"], 0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(int(0.1 * steps), steps))
    encoder.train()
    for step in tqdm(range(steps), desc="contrastive pairs", unit="step", disable=not args.progress, leave=False):
        start = step * batch_size % len(pairs)
        chosen = pairs[start : start + batch_size]
        # each example of the batch's pairs is encoded once (K per class gives many repeats)
        unique = sorted({index for pair in chosen for index in pair[:2]})
        vectors = embed(unique)  # (U, H)
        row = {index: position for position, index in enumerate(unique)}
        left, right = vectors[[row[p[0]] for p in chosen]], vectors[[row[p[1]] for p in chosen]]  # (B, H) each
        loss = cosine_similarity_loss(left, right, torch.tensor([p[2] for p in chosen]))
        loss.backward()
        optimizer_step(encoder, optimizer, scheduler, 1.0)
    encoder.eval()

    encoder.config = dataclasses.replace(encoder.config, classifier_pooling="mean")
    model = task_model_from_encoder(encoder, get_task(TASK), len(labels), tokenizer.pad_token_id)
    with torch.no_grad():
        embeddings = torch.cat([embed(list(range(i, min(i + 64, len(sample))))) for i in range(0, len(sample), 64)])
    centroid_head_init(model.head.dense, model.head.out, embeddings, torch.tensor(label_ids))
    fit_head(model.head, embeddings, torch.tensor(label_ids), args.head_steps)
    meta = {"task": TASK, "labels": labels, "max_length": args.max_length, "stage": "fewshot-contrastive",
            "base_model": args.model, "data": dataclasses.asdict(args.data)}
    save_checkpoint(out, model.eval(), model.config, tokenizer, get_task(TASK).head, meta)
    return out


def fit_head(head: nn.Module, embeddings: torch.Tensor, label_ids: torch.Tensor, steps: int) -> None:
    """Cross-entropy on fixed (N, H) embeddings, full batch (the head of SetFit's second stage)."""
    optimizer = torch.optim.AdamW(head.parameters(), lr=HEAD_LEARNING_RATE, weight_decay=0.01)
    head.train()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(head(embeddings), label_ids)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    head.eval()


def masked_lm(model: str) -> Checkpoint:
    try:
        return load_checkpoint(model, head="mlm")
    except CheckpointError as error:
        raise ConfigError(f"--method cloze needs a checkpoint with a masked-LM head ({error}); continue the "
                          f"pre-training of this encoder to give it one: nlpforge pretrain --objective wwm "
                          f"--model {model} ...") from None


def train_cloze(args: FewshotArgs, sample: list[Any], labels: list[str], seed: int, out: Path) -> Path:
    """cloze (PET): cross-entropy of the verbalizer's scores at the mask, every example under every
    template; the whole model or LoRA adapters train. Writes a masked-LM checkpoint of task ``cloze``."""
    seed_everything(seed)
    base = masked_lm(args.model)
    tokenizer, model = base.tokenizer, base.model
    task = ClozeTask(templates=list(args.template), verbalizer=parse_verbalizer(args.verbalizer))
    for template in task.templates:
        check_template(template, pairs=sample[0].text_pair is not None)
    label_ids = verbalizer_token_ids(tokenizer, task.verbalizer, labels)
    features = task.encode(tokenizer, sample, labels, args.max_length, args.data)
    lora = args.cloze_tuning == "lora"
    if lora:
        model = add_lora(model, LoraSettings(r=args.lora_r, targets=args.lora_targets))
    batch_size = args.batch_size or DEFAULT_BATCH_SIZE["cloze"]
    epochs = args.epochs or DEFAULT_EPOCHS["cloze"]
    steps = max(1, math.ceil(math.ceil(len(features) / batch_size) * epochs))
    optimizer = adamw(model, args.learning_rate or (LORA_CLOZE_LEARNING_RATE if lora else
                                                    DEFAULT_LEARNING_RATE["cloze"]), 0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(int(0.1 * steps), steps))
    model.train()
    step, epoch = 0, 0
    with tqdm(total=steps, desc="cloze", unit="step", disable=not args.progress, leave=False) as bar:
        while step < steps:
            for rows in epoch_batches(len(features), batch_size, seed, epoch):
                batch = task.collate([features[i] for i in rows], tokenizer.pad_token_id)
                loss = torch.nn.functional.cross_entropy(label_logits(model, batch, label_ids), batch["labels"])
                loss.backward()
                optimizer_step(model, optimizer, scheduler, 1.0)
                step += 1
                bar.update(1)
                if step >= steps:
                    break
            epoch += 1
    trained = model.merge_and_unload() if lora else model
    meta = {"task": task.name, "labels": labels, "task_settings": task.settings(), "max_length": args.max_length,
            "stage": "fewshot-cloze", "base_model": args.model, "data": dataclasses.asdict(args.data)}
    save_checkpoint(out, trained.eval(), base.config, tokenizer, task.head, meta)
    return out


def frozen_encoder(model: str) -> Checkpoint:
    """The encoder of ``model`` in eval mode with no trainable parameter (gradients still flow through it)."""
    base = load_checkpoint(model, head="base")
    base.model.requires_grad_(False)
    base.model.eval()
    return base


def tokenized(tokenizer: Any, examples: Sequence[Any], max_length: int) -> list[dict[str, Any]]:
    return [tokenizer(e.text, e.text_pair, truncation=True, max_length=max_length) for e in examples]


def describe_task(path: str | Path, labels: Sequence[str]) -> str:
    """A task's default description: its file's name and its labels."""
    return f"{Path(path).stem}: {', '.join(labels)}"


def train_with_generator(args: FewshotArgs, sample: list[Any], labels: list[str], seed: int, out: Path) -> Path:
    """generator: a meta-trained generator writes the prompt from the K examples (no encoder gradient);
    optionally gradient steps on the prompt or a reward-only refinement; the classifier's head is the
    class prototypes. Writes a prompt directory (mean pooling) that serves like any checkpoint."""
    seed_everything(seed)
    generator, record = load_generator(args.generator)
    base = frozen_encoder(args.model)
    encoder, tokenizer = base.model, base.tokenizer
    if generator.settings.hidden_size != encoder.config.hidden_size:
        raise ConfigError(f"--generator {args.generator} writes prompts for a hidden size of "
                          f"{generator.settings.hidden_size} (backbone {record.get('backbone')}), but --model "
                          f"{args.model} has {encoder.config.hidden_size}; use the generator's backbone")
    args = dataclasses.replace(args, data=with_text_prefix(args.data, base.meta))
    label_ids = torch.tensor([labels.index(e.label) for e in sample])
    features = classify_encode(tokenizer, sample, None, args.max_length, args.data.text_prefix or "")  # as served
    description = args.description or describe_task(args.train, labels)
    with torch.no_grad():
        prompt = generate_prompt(generator, encoder, task_ids(tokenizer, description, [e.text for e in sample],
                                                              [e.label for e in sample]))
    if args.generator_steps:  # leave-one-out prototype loss on the K examples, the prompt alone trains
        prompt = nn.Parameter(prompt.clone())
        optimizer = torch.optim.AdamW([prompt], lr=args.learning_rate or GENERATOR_STEP_LEARNING_RATE)
        for _ in range(args.generator_steps):
            support = prompted_embeddings(encoder, prompt, features, tokenizer.pad_token_id)
            logits = generator.log_scale.exp().detach() * leave_one_out_logits(support, label_ids, len(labels))
            torch.nn.functional.cross_entropy(logits, label_ids).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        prompt = prompt.detach()
    if args.reward_iterations:  # forward calls only: the reward is leave-one-out accuracy on the K examples
        def reward(candidate: torch.Tensor) -> float:
            with torch.no_grad():
                support = prompted_embeddings(encoder, candidate, features, tokenizer.pad_token_id)
            return loo_reward(support, label_ids, len(labels))

        prompt, _ = refine_by_reward(prompt, reward, args.reward_iterations, seed=seed)
    with torch.no_grad():
        support = prompted_embeddings(encoder, prompt, features, tokenizer.pad_token_id, unit=False)
    encoder.config = dataclasses.replace(encoder.config, classifier_pooling="mean")
    model = task_model_from_encoder(encoder, get_task(TASK), len(labels), tokenizer.pad_token_id)
    attach_prompt(model, "prompt", prompt.shape[0])
    with torch.no_grad():
        model.encoder.prompt.vectors.copy_(prompt)
    centroid_head_init(model.head.dense, model.head.out, support, label_ids)
    meta = {"task": TASK, "labels": labels, "max_length": args.max_length, "stage": "fewshot-generator",
            "base_model": str(base.path), "classifier_pooling": "mean", "generator": args.generator,
            "description": description, "data": dataclasses.asdict(args.data)}
    save_prompt(out, model.eval(), tokenizer, meta)
    return out


METHODS = {"finetune": train_by_finetuning, "lora": train_by_finetuning, "prompt": train_by_finetuning,
           "deep-prompt": train_by_finetuning, "contrastive": train_contrastively, "cloze": train_cloze,
           "generator": train_with_generator}


def summary_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    accuracies = [run["accuracy"] for run in runs]
    summary: dict[str, Any] = {
        "mean_accuracy": round(statistics.fmean(accuracies), 2),
        "std_accuracy": round(statistics.stdev(accuracies), 2) if len(accuracies) > 1 else 0.0,
        "mean_macro_f1": round(statistics.fmean(run["macro_f1"] for run in runs), 2),
        "mean_seconds": round(statistics.fmean(run["seconds"] for run in runs), 2)}
    if all("before_self_training" in run for run in runs):
        summary["before_self_training"] = summary_of([run["before_self_training"] for run in runs])
    if all("earlier_rounds" in run for run in runs):
        summary["earlier_rounds"] = [
            {"mean_accuracy": round(statistics.fmean(r["accuracy"] for r in rounds), 2),
             "mean_macro_f1": round(statistics.fmean(r["macro_f1"] for r in rounds), 2)}
            for rounds in zip(*(run["earlier_rounds"] for run in runs), strict=True)]
    return summary


def evaluate_model(model_dir: Path, evaluation: list[Any], labels: list[str], args: FewshotArgs) -> dict[str, float]:
    """Accuracy and macro-F1 (percent, 2 decimals) of what ``model_dir`` serves: adapters merged, the
    head as saved."""
    trained = load_checkpoint(model_dir)
    data = DataOptions(**(trained.meta.get("data") or {}))  # as it was trained (and will serve): its text prefix
    metrics = (trained.task or get_task(TASK)).evaluate(trained.model, trained.tokenizer, evaluation, labels,
                                                        args.max_length, args.eval_batch_size, data)
    return {"accuracy": round(metrics["accuracy"], 2), "macro_f1": round(metrics["macro_f1"], 2)}


def train_student(args: FewshotArgs, texts: list[Any], sample: list[Any], described: list[Any], labels: list[str],
                  seed: int, teacher_dir: Path, out: Path) -> tuple[Path, int]:
    """--self-train: the teacher labels up to N of ``texts`` (the training file, or --unlabelled) outside
    the sample (their labels are never read); ``args.model`` is fine-tuned on the sample, the
    --label-text examples (``described``) and the confident, balanced part of them
    (adapt/self_training.py), the sample and its label texts repeated --self-train-sample-repeats times.
    Returns the student's directory and how many pseudo-labels it saw."""
    pool = unlabelled_pool(texts, sample, args.self_train, seed)
    if len(pool) < 2 * len(labels):
        raise InputDataError(f"{args.unlabelled or args.train}: --self-train needs unlabelled texts beyond the "
                             f"sample, but only {len(pool)} are there; give more texts (--unlabelled FILE) or "
                             "--self-train 0")
    teacher = Predictor.load(teacher_dir, batch_size=args.eval_batch_size)
    pseudo = confident_balanced(pool, teacher.predict_parsed(pool), labels)
    shutil.rmtree(teacher_dir, ignore_errors=True)
    student = dataclasses.replace(args, method="finetune", epochs=args.self_train_epochs,
                                  batch_size=SELF_TRAIN_BATCH_SIZE, learning_rate=DEFAULT_LEARNING_RATE["finetune"])
    gold = (sample + described) * args.self_train_sample_repeats
    return train_by_finetuning(student, gold + pseudo, labels, seed, out, group_by_length=True), len(pseudo)


def label_text_examples(label_text: str, copies: int, labels: Sequence[str], train: Sequence[Any],
                        train_name: str) -> list[Any]:
    """--label-text: each label's text(s) as examples of it, ``copies`` times each (none for an empty
    ``label_text``). ``train``, read from ``train_name``, must hold single texts. Their ``line`` is 0: they
    come from the command line, not from a file."""
    if not label_text:
        return []
    texts = parse_verbalizer(label_text, "--label-text")
    unknown = sorted(set(texts) - set(labels))
    missing = [label for label in labels if not texts.get(label)]
    if unknown or missing:
        raise ConfigError(f"--label-text {label_text!r}: " + "; ".join(
            ([f"no label {', '.join(map(repr, unknown))} in {train_name}"] if unknown else [])
            + ([f"no text for {', '.join(map(repr, missing))}"] if missing else []))
            + f" (its labels: {', '.join(labels)})")
    if any(example.text_pair is not None for example in train):
        raise ConfigError(f"--label-text: {train_name} holds text pairs; a label's text describes single texts")
    return [TextExample(text, None, label, 0) for label in labels for text in texts[label] for _ in range(copies)]


def run_setting(args: FewshotArgs, train: list[Any], evaluation: list[Any], labels: list[str], out: Path,
                k: int | None, unlabelled: list[Any] | None = None,
                on_run: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every seed of one K (or of --examples): runs, summary, and the best run's model in OUT/model.
    ``unlabelled``: the texts --self-train labels (default: ``train`` outside each sample); ``on_run``
    is called with each seed's run record as soon as it is measured (long settings report as they go)."""
    runs, best = [], None
    work = out / ".runs"
    described = label_text_examples(args.label_text, args.label_text_copies, labels, train, args.train)
    for seed in range(args.seed, args.seed + args.seeds):
        drawn = (sample_per_class(train, k, seed, args.train) if k is not None
                 else sample_stratified(train, args.examples, seed, args.train))
        sample = drawn + described
        start = time.perf_counter()
        model_dir = METHODS[args.method](args, sample, labels, seed, work / f"seed{seed}")
        run: dict[str, Any] = {"seed": seed}
        if args.self_train:
            seconds = time.perf_counter() - start
            teacher = evaluate_model(model_dir, evaluation, labels, args)
            run["before_self_training"] = {"accuracy": teacher["accuracy"], "macro_f1": teacher["macro_f1"],
                                           "seconds": round(seconds, 2)}
            start = time.perf_counter() - seconds  # the evaluation of the teacher is not training time
            earlier_rounds = []
            for round_number in range(1, args.self_train_rounds + 1):
                if round_number > 1:  # the last student's own figures, before it becomes the teacher
                    paused = time.perf_counter()
                    earlier_rounds.append(evaluate_model(model_dir, evaluation, labels, args))
                    start += time.perf_counter() - paused
                model_dir, run["pseudo_labelled"] = train_student(
                    args, unlabelled or train, drawn, described, labels, seed, model_dir,
                    work / f"seed{seed}-round{round_number}")
            if earlier_rounds:
                run["earlier_rounds"] = earlier_rounds
        seconds = time.perf_counter() - start
        metrics = evaluate_model(model_dir, evaluation, labels, args)
        run.update({"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "seconds": round(seconds, 2),
                    "train_examples": len(drawn), **({"label_text_examples": len(described)} if described else {})})
        runs.append(run)
        if on_run is not None:
            on_run(run)
        if best is None or run["accuracy"] > best[0]["accuracy"]:
            if best is not None:
                shutil.rmtree(best[1], ignore_errors=True)
            best = (run, model_dir)
        else:
            shutil.rmtree(model_dir, ignore_errors=True)
    assert best is not None
    shutil.rmtree(out / "model", ignore_errors=True)
    Path(best[1]).rename(out / "model")
    shutil.rmtree(work, ignore_errors=True)
    shot = {"k": k} if k is not None else {"examples": args.examples}
    return {"method": args.method, "model": args.model, **shot, "runs": runs, **summary_of(runs),
            "best_seed": best[0]["seed"], "best_model": str(out / "model"), "eval": args.eval}


def write_json(path: Path, record: dict[str, Any]) -> None:
    def write(tmp: Path) -> None:
        (tmp / path.name).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    write_directory_atomically(path.parent, write, last=path.name)


def read_unlabelled(path: str, encoding: str) -> list[Any]:
    """--unlabelled: one text per line, or JSON lines ``{"text", "text_pair"}``; no labels."""
    task = get_task(TASK)
    return [task.parse_input(record, where) for record, where in input_records(read_lines(path, encoding), path)]


def announce_run(run: dict[str, Any]) -> None:
    """One line on stderr per finished seed: a 5-seed setting with self-training runs for an hour or more."""
    teacher = run.get("before_self_training")
    before = f" (teacher before self-training: {teacher['accuracy']:.2f})" if teacher else ""
    print(f"seed {run['seed']}: accuracy {run['accuracy']:.2f}, macro-F1 {run['macro_f1']:.2f}, "
          f"{run['seconds']:.0f} s{before}", file=sys.stderr, flush=True)


def fewshot(args: FewshotArgs) -> dict[str, Any]:
    """Run the protocol; writes OUT/results.json (one K or --examples: the runs at the top level;
    several K: one such record per K under ``results``, each also in OUT/k<K>/results.json)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    task = get_task(TASK)
    train = task.read(args.train, args.data)
    labels = task.label_names(train, None)
    evaluation = task.read(args.eval, args.data)
    for example in evaluation:
        if example.label is None:
            raise InputDataError(f"{args.eval}:{example.line}: no label; the evaluation file must be labelled")
        if example.label not in labels:
            raise InputDataError(f"{args.eval}:{example.line}: label {example.label!r} never occurs in the training "
                              f"file {args.train} (its labels: {', '.join(labels)}); few-shot methods can only "
                              "predict labels they were shown")
    unlabelled = read_unlabelled(args.unlabelled, args.data.encoding) if args.unlabelled else None
    out = Path(args.out)
    settings: list[int | None] = list(args.shots) or [None]
    results = []
    for k in settings:
        target = out / f"k{k}" if len(settings) > 1 else out
        target.mkdir(parents=True, exist_ok=True)
        record = run_setting(args, train, evaluation, labels, target, k, unlabelled,
                             on_run=announce_run if args.progress else None)
        write_json(target / "results.json", record)
        results.append(record)
    if len(results) > 1:
        write_json(out / "results.json", {"method": args.method, "model": args.model, "k": args.shots,
                                          "results": results})
    return results[0] if len(results) == 1 else {"method": args.method, "model": args.model, "results": results}


def table(record: dict[str, Any]) -> str:
    """The runs and their summary as a plain-text table (stdout of ``nlpforge fewshot``)."""
    lines = []
    for result in record.get("results", [record]):
        shot = f"k={result['k']} per class" if "k" in result else f"{result['examples']} examples"
        lines.append(f"{result['method']}, {shot}")
        lines.append(f"{'seed':>6} {'accuracy':>9} {'macro_f1':>9} {'seconds':>8}")
        lines += [f"{r['seed']:>6} {r['accuracy']:>9.2f} {r['macro_f1']:>9.2f} {r['seconds']:>8.1f}"
                  for r in result["runs"]]
        lines.append(f"{'mean':>6} {result['mean_accuracy']:>9.2f} {result['mean_macro_f1']:>9.2f} "
                     f"{result['mean_seconds']:>8.1f}   (accuracy std {result['std_accuracy']:.2f})")
        if "before_self_training" in result:
            teacher = result["before_self_training"]
            lines.append(f"before self-training: accuracy {teacher['mean_accuracy']:.2f} (std "
                         f"{teacher['std_accuracy']:.2f}), macro_f1 {teacher['mean_macro_f1']:.2f}")
    return "\n".join(lines)


def meta_train(args: MetaTrainArgs) -> dict[str, Any]:
    """Meta-train a prompt generator on N-way K-shot episodes drawn from ``args.tasks``.

        for each episode: task ~ tasks; C classes; K support + Q queries per class
            prompt = generator(task tokens of the support)                 # (P, H)
            loss = CE(scale * cos(query, prototypes(support)), query labels)  # both encoded with the prompt
    """
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    base = frozen_encoder(args.model)
    encoder, tokenizer = base.model, base.tokenizer
    reader = get_task(TASK)
    tasks = []
    for path in args.tasks:
        groups = by_label(reader.read(path, args.data))
        usable = sorted(label for label, group in groups.items() if len(group) >= args.k + args.queries)
        if len(usable) < 2:
            raise InputDataError(f"{path}: fewer than 2 labels have --k + --queries = {args.k + args.queries} "
                                 "examples; an episode needs at least two classes")
        tasks.append((path, describe_task(path, usable), {label: groups[label] for label in usable}))
    generator = PromptGenerator(GeneratorSettings(encoder.config.embedding_width, encoder.config.hidden_size,
                                                  args.prompt_length))
    optimizer = torch.optim.AdamW(generator.parameters(), lr=args.learning_rate)
    rng = random.Random(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    curve, window_loss, window_accuracy = [], 0.0, 0.0
    generator.train()
    for episode in tqdm(range(1, args.episodes + 1), desc="meta-train", unit="episode", disable=not args.progress):
        path, description, groups = rng.choice(tasks)
        classes = rng.sample(sorted(groups), min(args.n_way, len(groups)))
        support, query = [], []
        for label in classes:
            drawn = rng.sample(groups[label], args.k + args.queries)
            support += drawn[: args.k]
            query += drawn[args.k :]
        rng.shuffle(support)
        prompt = generate_prompt(generator, encoder, task_ids(tokenizer, description, [e.text for e in support],
                                                              [e.label for e in support]))
        support_ids = torch.tensor([classes.index(e.label) for e in support])
        query_ids = torch.tensor([classes.index(e.label) for e in query])
        centres = prototypes(prompted_embeddings(encoder, prompt, tokenized(tokenizer, support, args.max_length),
                                                 tokenizer.pad_token_id), support_ids, len(classes))  # (C, H)
        queried = prompted_embeddings(encoder, prompt, tokenized(tokenizer, query, args.max_length),
                                      tokenizer.pad_token_id)  # (CQ, H)
        logits = generator.log_scale.exp() * queried @ centres.T  # (CQ, C)
        loss = torch.nn.functional.cross_entropy(logits, query_ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(generator.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        window_loss += loss.item()
        window_accuracy += (logits.argmax(dim=-1) == query_ids).float().mean().item()
        if episode % args.log_every == 0 or episode == args.episodes:
            count = args.log_every if episode % args.log_every == 0 else episode % args.log_every
            record = {"episode": episode, "loss": window_loss / count, "query_accuracy": 100 * window_accuracy / count}
            curve.append(record)
            with open(out / "metrics.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            window_loss, window_accuracy = 0.0, 0.0
    generator.eval()
    summary = {"backbone": str(base.path), "tasks": [str(path) for path, _, _ in tasks], "episodes": args.episodes,
               "n_way": args.n_way, "k": args.k, "queries": args.queries, "curve": curve}
    save_generator(out, generator, summary)
    return {"out": str(out), **{k: v for k, v in summary.items() if k != "curve"}, "last": curve[-1]}
