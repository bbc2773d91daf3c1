"""The prompt generator: leave-one-out prototypes, the reward-only refinement, meta-training and
``nlpforge fewshot --method generator`` end to end on a tiny encoder."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from conftest import run_cli, write_classification
from nlpforge.adapt.generator import leave_one_out_logits, loo_reward, prototypes, refine_by_reward
from nlpforge.checkpoint import load_checkpoint
from nlpforge.errors import ConfigError
from nlpforge.recipes.configs import FewshotArgs

pytestmark = pytest.mark.usefixtures("one_thread")


def test_leave_one_out_logits_match_a_loop() -> None:
    generator = torch.Generator().manual_seed(0)
    support = F.normalize(torch.randn(7, 5, generator=generator), dim=-1)
    label_ids = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    ours = leave_one_out_logits(support, label_ids, 3)
    for i in range(7):
        keep = torch.arange(7) != i
        centres = prototypes(support[keep], label_ids[keep], 3)
        assert_close(ours[i], support[i] @ centres.T)
    assert 0.0 <= loo_reward(support, label_ids, 3) <= 1.02


def test_reward_only_refinement_climbs_and_keeps_the_best() -> None:
    target = torch.full((3, 4), 1.0)

    def reward(prompt: torch.Tensor) -> float:
        return -float((prompt - target).pow(2).sum())

    start = torch.zeros(3, 4) + 0.1 * torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    best, history = refine_by_reward(start, reward, iterations=30, population=6, sigma=0.3, learning_rate=2.0)
    assert reward(best) == max(history) and reward(best) > reward(start) + 1.0


def write_vowel_task(path: Path, count: int, seed: int) -> None:
    """label 1 iff the sentence contains the word 'a' (another rule than write_classification's)."""
    rng = random.Random(seed)
    rows = ["text\tlabel"]
    for i in range(count):
        words = [rng.choice("bcdfghjklmnp") for _ in range(rng.randint(3, 7))]
        if i % 2:
            words[rng.randrange(len(words))] = "a"
        rows.append(f"{' '.join(words)}\t{i % 2}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_meta_train_then_adapt_with_the_generator(tiny_bert_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    write_classification(tmp_path / "z_task.tsv", 60, seed=0)
    write_vowel_task(tmp_path / "a_task.tsv", 60, seed=0)
    write_classification(tmp_path / "new_train.tsv", 40, seed=5)
    write_classification(tmp_path / "new_dev.tsv", 30, seed=6)
    code, stdout, stderr = run_cli(
        monkeypatch, capsys, "fewshot", "meta-train", "--model", tiny_bert_dir, "--tasks", tmp_path / "z_task.tsv",
        "--tasks", tmp_path / "a_task.tsv", "--episodes", "6", "--k", "3", "--queries", "3", "--log-every", "3",
        "--out", tmp_path / "generator", "--no-progress")
    assert code == 0, stderr
    record = json.loads((tmp_path / "generator" / "generator.json").read_text())
    assert record["episodes"] == 6 and len(record["curve"]) == 2 and record["settings"]["prompt_length"] == 10
    assert json.loads(stdout)["last"]["episode"] == 6

    code, stdout, stderr = run_cli(
        monkeypatch, capsys, "fewshot", "--method", "generator", "--generator", tmp_path / "generator", "--model",
        tiny_bert_dir, "--train", tmp_path / "new_train.tsv", "--eval", tmp_path / "new_dev.tsv", "--k", "4",
        "--seeds", "2", "--generator-steps", "2", "--reward-iterations", "2", "--text-prefix", "q ", "--out",
        tmp_path / "fs", "--no-progress")
    assert code == 0, stderr
    results = json.loads((tmp_path / "fs" / "results.json").read_text())
    assert results["method"] == "generator" and len(results["runs"]) == 2
    loaded = load_checkpoint(tmp_path / "fs" / "model")  # a prompt directory over the frozen base
    assert loaded.config.classifier_pooling == "mean" and loaded.meta["generator"] == str(tmp_path / "generator")
    assert loaded.meta["data"]["text_prefix"] == "q "  # the prototypes were embedded with it, and predict adds it
    from nlpforge.predictor import Predictor

    assert Predictor.load(tmp_path / "fs" / "model").predict(["a b z"])[0]["label"] in ("0", "1")


def test_generator_method_needs_a_generator() -> None:
    with pytest.raises(ConfigError, match="--generator DIR"):
        FewshotArgs(method="generator", model="m", train="t", eval="e", out="o", k="4")
