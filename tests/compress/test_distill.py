"""Distillation losses (formulas checked against torch's own KL) and the distillation recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers
from torch.testing import assert_close

from conftest import tiny_hf_model, write_classification, write_conll, write_squad
from nlpforge.checkpoint import load_checkpoint
from nlpforge.compress.distill import (
    annealed_targets,
    attention_kl,
    hidden_mse,
    kd_loss,
    soft_targets,
    student_from_teacher,
    uniform_layer_map,
)
from nlpforge.errors import ConfigError
from nlpforge.recipes.distill import DistillArgs, distill
from nlpforge.recipes.finetune import FinetuneArgs, finetune


def test_kd_loss_is_the_kl_at_temperature_t() -> None:
    student, teacher = torch.randn(5, 3), torch.randn(5, 3)
    temperature = 3.0
    probs = soft_targets([teacher], temperature)
    expected = F.kl_div(F.log_softmax(student / temperature, -1), probs, reduction="batchmean")
    assert_close(kd_loss(student, probs, temperature), expected)
    assert float(kd_loss(teacher, probs, temperature)) == pytest.approx(0.0, abs=1e-6)


def test_masked_kd_counts_only_selected_positions() -> None:
    student, teacher = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]])
    probs = soft_targets([teacher], 1.0)
    selected = kd_loss(student[mask.bool()], probs[mask.bool()], 1.0)
    assert_close(kd_loss(student, probs, 1.0, mask), selected)


def test_several_teachers_average_probabilities() -> None:
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    assert_close(soft_targets([a, b], 2.0), ((a / 2).softmax(-1) + (b / 2).softmax(-1)) / 2)


def test_annealing_moves_from_teacher_to_gold() -> None:
    probs = torch.tensor([[0.2, 0.8], [0.6, 0.4]])
    gold = torch.tensor([0, -100])
    assert_close(annealed_targets(probs, gold, 0.0), probs)
    assert_close(annealed_targets(probs, gold, 1.0), torch.tensor([[1.0, 0.0], [0.6, 0.4]]))


def test_hidden_and_attention_losses() -> None:
    mask = torch.tensor([[1, 1, 0]])
    hidden = torch.randn(1, 3, 8)
    assert float(hidden_mse(hidden, hidden, mask)) == 0.0
    projection = torch.nn.Linear(4, 8)
    assert hidden_mse(torch.randn(1, 3, 4), hidden, mask, projection).requires_grad
    probs = torch.randn(1, 2, 3, 3).softmax(-1)
    assert float(attention_kl(probs, probs, mask)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ConfigError, match="equal head counts"):
        attention_kl(torch.randn(1, 1, 3, 3).softmax(-1), probs, mask)


def test_layer_maps_and_student_initialisation(tiny_bert_dir: Path) -> None:
    assert uniform_layer_map(12, 4) == [3, 6, 9, 12]
    assert uniform_layer_map(12, 6) == [2, 4, 6, 8, 10, 12]
    with pytest.raises(ConfigError, match="cannot be distilled"):
        uniform_layer_map(2, 4)
    teacher = load_checkpoint(tiny_bert_dir).model
    student = student_from_teacher(teacher, [2])
    assert student.config.num_layers == 1 and len(student.layers) == 1
    assert torch.equal(student.layers[0].ffn.up.weight, teacher.layers[1].ffn.up.weight)
    with pytest.raises(ConfigError, match="out of range"):
        student_from_teacher(teacher, [3])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny fine-tuned teacher and its data, trained once for this module."""
    root = tmp_path_factory.mktemp("distill")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz"]
    model_dir = root / "base"
    tiny_hf_model("BertModel").save_pretrained(model_dir)
    transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}).save_pretrained(model_dir)
    write_classification(root / "train.tsv", 96, seed=0)
    write_classification(root / "dev.tsv", 40, seed=1)
    finetune(FinetuneArgs(task="classify", model=str(model_dir), train=str(root / "train.tsv"),
                          eval=str(root / "dev.tsv"), out=str(root / "teacher"), epochs=6, batch_size=16,
                          learning_rate=3e-3, warmup_ratio=0.0, max_length=16, progress=False, seed=3))
    return root


@pytest.fixture
def teacher_dir(trained: Path, tmp_path: Path) -> Path:
    for name in ("train.tsv", "dev.tsv"):
        (tmp_path / name).write_text((trained / name).read_text())
    return trained / "teacher"


@pytest.mark.parametrize("intermediate", [False, True])
def test_distilled_student_keeps_the_teachers_accuracy(teacher_dir: Path, tmp_path: Path,
                                                       intermediate: bool) -> None:
    teacher_accuracy = json.loads((teacher_dir / "nlpforge.json").read_text())["metrics"]["accuracy"]
    summary = distill(DistillArgs(
        task="classify", teachers=[str(teacher_dir), str(teacher_dir)], train=str(tmp_path / "train.tsv"),
        eval=str(tmp_path / "dev.tsv"), out=str(tmp_path / "student"), layers=1, epochs=6, batch_size=16,
        learning_rate=3e-3, warmup_ratio=0.0, max_length=16, progress=False,
        hidden_weight=1.0 if intermediate else 0.0, attention_weight=1.0 if intermediate else 0.0))
    student = load_checkpoint(tmp_path / "student")
    assert student.config.num_layers == 1 and summary["layer_map"] == [2]
    assert summary["best"] >= 0.9 * teacher_accuracy
    assert student.meta["stage"] == "distill"


def test_distill_errors(teacher_dir: Path, tmp_path: Path, tiny_vocab: Path) -> None:
    train = str(tmp_path / "train.tsv")
    with pytest.raises(ConfigError, match="cannot be distilled"):
        distill(DistillArgs(task="classify", teachers=[str(teacher_dir)], train=train, out=str(tmp_path / "s"),
                            layers=3, progress=False))
    with pytest.raises(ConfigError, match=r"layer map \[5\] out of range"):
        distill(DistillArgs(task="classify", teachers=[str(teacher_dir)], train=train, out=str(tmp_path / "s"),
                            layer_map=[5], progress=False))
    other = tmp_path / "other"
    tiny_hf_model("BertForSequenceClassification").save_pretrained(other)
    words = tiny_vocab.read_text().split()
    shuffled = words[:5] + list(reversed(words[5:]))
    transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(shuffled)}).save_pretrained(other)
    with pytest.raises(ConfigError, match="tokenizer differs"):
        distill(DistillArgs(task="classify", teachers=[str(teacher_dir), str(other)], train=train,
                            out=str(tmp_path / "s"), progress=False))


def test_narrower_preset_student_learns_through_a_projection(teacher_dir: Path, tmp_path: Path) -> None:
    """A fresh 'tiny-bert'-shaped student of hidden 16 (teacher: 32) with hidden-state matching."""
    from nlpforge.config import PRESETS

    PRESETS["tiny-narrow-test"] = dict(PRESETS["tiny-bert"], hidden_size=16, num_heads=4, intermediate_size=24,
                                       num_layers=1)
    try:
        summary = distill(DistillArgs(task="classify", teachers=[str(teacher_dir)], train=str(tmp_path / "train.tsv"),
                                      out=str(tmp_path / "narrow"), student="tiny-narrow-test", epochs=2,
                                      batch_size=16, learning_rate=3e-3, max_length=16, progress=False,
                                      hidden_weight=1.0))
    finally:
        del PRESETS["tiny-narrow-test"]
    student = load_checkpoint(tmp_path / "narrow")
    assert student.config.hidden_size == 16 and summary["layer_map"] == [2]


@pytest.mark.parametrize("task", ["tag", "span_qa"])
def test_token_level_tasks_distil(task: str, tiny_bert_dir: Path, tmp_path: Path) -> None:
    """KD over tag distributions (labelled tokens) and over QA start/end positions (cached, padded)."""
    suffix = "txt" if task == "tag" else "json"
    writer = write_conll if task == "tag" else write_squad
    writer(tmp_path / f"train.{suffix}", 40, 0)
    data_options = {}  # QA windows of 24 tokens: the default stride (a third) overlaps them by 8
    finetune(FinetuneArgs(task=task, model=str(tiny_bert_dir), train=str(tmp_path / f"train.{suffix}"),
                          out=str(tmp_path / "teacher"), epochs=1, batch_size=16, max_length=24, progress=False,
                          data=data_options))
    data = str(tmp_path / f"train.{suffix}")
    summary = distill(DistillArgs(task=task, teachers=[str(tmp_path / "teacher")], train=data, eval=data,
                                  out=str(tmp_path / "student"), layers=1, epochs=1, batch_size=16, max_length=24,
                                  progress=False, data=data_options))
    records = [json.loads(line) for line in (tmp_path / "student" / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records if "loss" in r)
    assert summary["best"] is not None and load_checkpoint(tmp_path / "student").config.num_layers == 1
