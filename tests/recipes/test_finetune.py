"""The fine-tuning loop on tiny models: it learns, resumes exactly, matches under DDP, and writes
checkpoints that transformers loads with the same predictions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file
from torch.testing import assert_close

import nlpforge.recipes.finetune as finetune_module
from conftest import ROOT, tiny_hf_model, tiny_tokenizer, write_classification
from nlpforge.checkpoint import load_checkpoint
from nlpforge.recipes.finetune import FinetuneArgs, finetune


@pytest.fixture
def no_dropout_dir(tmp_path: Path, tiny_vocab: Path) -> Path:
    """A tiny BERT without dropout, so that runs with different batch splits are comparable."""
    out = tmp_path / "tiny-nodrop"
    model = tiny_hf_model("BertModel")
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
    model.save_pretrained(out)
    tiny_tokenizer(tiny_vocab).save_pretrained(out)
    return out


def classify_args(model_dir: Path, tmp_path: Path, out: str, **overrides) -> FinetuneArgs:
    train, dev = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    if not train.exists():
        write_classification(train, 96, seed=0)
        write_classification(dev, 40, seed=1)
    values = dict(task="classify", model=str(model_dir), train=str(train), eval=str(dev), out=str(tmp_path / out),
                  epochs=6, batch_size=16, learning_rate=3e-3, warmup_ratio=0.0, max_length=16, log_every=1,
                  progress=False, seed=3)
    return FinetuneArgs(**{**values, **overrides})


def test_classifier_learns_and_transformers_loads_it(tiny_bert_dir: Path, tmp_path: Path) -> None:
    summary = finetune(classify_args(tiny_bert_dir, tmp_path, "run"))
    out = Path(summary["out"])
    assert summary["best"] >= 90.0
    assert summary["loop_seconds"] > 0 and summary["tokens_per_s"] > 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < losses[0]
    ours = load_checkpoint(out)
    assert ours.head == "classify" and ours.meta["labels"] == ["0", "1"]
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    batch = ours.tokenizer(["a b z c", "d e f"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert_close(ours.model(**batch).logits, theirs(**batch).logits, atol=1e-5, rtol=1e-5)
    assert theirs.config.id2label == {0: "0", 1: "1"}


def test_resume_after_a_crash_ends_with_the_same_weights(tiny_bert_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    finetune(classify_args(tiny_bert_dir, tmp_path, "straight", epochs=2, save_every=3))
    original = finetune_module.save_resume

    def crash_after_step_3(directory, model, optimizer, scheduler, state):
        original(directory, model, optimizer, scheduler, state)
        if state.step == 3:
            raise KeyboardInterrupt  # the process dies right after a resume checkpoint

    monkeypatch.setattr(finetune_module, "save_resume", crash_after_step_3)
    with pytest.raises(KeyboardInterrupt):
        finetune(classify_args(tiny_bert_dir, tmp_path, "crashed", epochs=2, save_every=3))
    monkeypatch.setattr(finetune_module, "save_resume", original)
    finetune(classify_args(tiny_bert_dir, tmp_path, "crashed", epochs=2, save_every=3, resume=True))
    straight = load_file(tmp_path / "straight" / "resume" / "model.safetensors")
    resumed = load_file(tmp_path / "crashed" / "resume" / "model.safetensors")
    for key, tensor in straight.items():
        assert torch.equal(tensor, resumed[key]), key


def test_length_grouped_batches_cover_every_example_once_and_pad_less() -> None:
    from nlpforge.recipes.finetune import epoch_batches

    lengths = [int(x) for x in torch.randint(3, 120, (1000,), generator=torch.Generator().manual_seed(0))]
    plain = epoch_batches(1000, 16, seed=7, epoch=1)
    grouped = epoch_batches(1000, 16, seed=7, epoch=1, lengths=lengths)
    assert len(grouped) == len(plain) == 63
    assert sorted(i for batch in grouped for i in batch) == list(range(1000))

    def padded_tokens(batches: list[list[int]]) -> int:
        return sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)

    assert padded_tokens(grouped) < 0.7 * padded_tokens(plain)
    assert grouped == epoch_batches(1000, 16, seed=7, epoch=1, lengths=lengths)  # resume replays it
    assert grouped != epoch_batches(1000, 16, seed=7, epoch=2, lengths=lengths)
    assert max(len(batch) for batch in grouped) == 16


def test_group_by_length_training_learns(tiny_bert_dir: Path, tmp_path: Path) -> None:
    summary = finetune(classify_args(tiny_bert_dir, tmp_path, "grouped", group_by_length=True))
    assert summary["best"] >= 80


@pytest.mark.parametrize(("task", "given", "expected"), [("span_qa", 0, 384), ("classify", 0, 128), ("tag", 0, 128),
                                                      ("span_qa", 256, 256)])
def test_max_length_defaults_per_task(task: str, given: int, expected: int) -> None:
    # QA contexts need a window that holds most paragraphs whole; a given length is kept as it is
    args = FinetuneArgs(task=task, model="m", train="t", out="o", max_length=given)
    assert args.max_length == expected


def test_early_stopping_and_keep_best(tiny_bert_dir: Path, tmp_path: Path) -> None:
    summary = finetune(classify_args(tiny_bert_dir, tmp_path, "early", epochs=30, learning_rate=1e-6,
                                     early_stopping=2, eval_every=1))
    records = [json.loads(line) for line in (tmp_path / "early" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval" in r]
    assert len(evals) < 30 * 6  # stopped long before the end
    best = max(r["eval"]["accuracy"] for r in evals)
    assert summary["best"] == best
    assert json.loads((tmp_path / "early" / "nlpforge.json").read_text())["metrics"]["accuracy"] == best


def test_two_process_ddp_matches_single_process(no_dropout_dir: Path, tmp_path: Path) -> None:
    args = classify_args(no_dropout_dir, tmp_path, "single", epochs=1, batch_size=8, save_every=100)
    finetune(args)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29531",
               "-m", "nlpforge.cli", "train", "--task", "classify", "--model", str(no_dropout_dir),
               "--train", args.train, "--eval", args.eval, "--out", str(tmp_path / "ddp"), "--epochs", "1",
               "--batch-size", "8", "--learning-rate", str(args.learning_rate), "--warmup-ratio", "0",
               "--max-length", "16", "--seed", "3", "--threads", "1", "--log-every", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    def losses(run: str) -> list[float]:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [r["loss"] for r in map(json.loads, lines) if "loss" in r]

    single, ddp = losses("single"), losses("ddp")
    assert len(single) == len(ddp) == 12
    assert single == pytest.approx(ddp, abs=1e-4)
    one = load_file(tmp_path / "single" / "resume" / "model.safetensors")
    two = load_file(tmp_path / "ddp" / "resume" / "model.safetensors")
    # Gradients differ only in summation order; Adam divides by sqrt(v), which turns such rounding
    # in near-zero gradients into up to one full step (lr) per update. Bound: half a step.
    for key, tensor in one.items():
        assert_close(two[key], tensor, atol=args.learning_rate / 2, rtol=0)
