"""The text an encoder expects in front of its inputs (E5's "query: "): told by name for retrieval;
for classification given, recorded in the checkpoint and added again by predict, so training and
serving read the same text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli, write_classification
from nlpforge.backbone_inputs import e5_prefixes, is_e5, with_text_prefix
from nlpforge.checkpoint import load_checkpoint
from nlpforge.data.options import DataOptions
from nlpforge.predictor import Predictor
from nlpforge.recipes.finetune import FinetuneArgs, finetune

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("model", "expected"), [
    ("../shared/models/multilingual-e5-small-zhen", True),
    ("intfloat/e5-base-v2", True),
    ("/cache/models--intfloat--multilingual-e5-small/snapshots/0a1b2c", True),
    ("sentence-transformers/all-MiniLM-L6-v2", False),
    ("runs/be5t-model", False),
    ("/work/e5/bert-base-chinese", False),  # a folder called e5 does not make its models E5
])
def test_e5_encoders_are_told_by_name(model: str, expected: bool) -> None:
    assert is_e5(model) is expected
    assert e5_prefixes(model) == (("query: ", "passage: ") if expected else ("", ""))


def test_text_prefix_given_else_the_base_checkpoints_else_none() -> None:
    assert with_text_prefix(DataOptions(), {}).text_prefix == ""
    assert with_text_prefix(DataOptions(text_prefix="query: "), {}).text_prefix == "query: "
    trained = {"data": {"text_prefix": "query: "}}  # a checkpoint records what it was trained with
    assert with_text_prefix(DataOptions(), trained).text_prefix == "query: "
    assert with_text_prefix(DataOptions(text_prefix=""), trained).text_prefix == ""  # '' turns it off
    assert with_text_prefix(DataOptions(), {"data": {"text_column": "text"}}).text_prefix == ""  # older checkpoints


def test_a_classifier_serves_with_the_prefix_it_trained_with(tiny_bert_dir: Path, tmp_path: Path) -> None:
    write_classification(tmp_path / "train.tsv", 32, seed=0)
    out = tmp_path / "model"
    finetune(FinetuneArgs(task="classify", model=str(tiny_bert_dir), train=str(tmp_path / "train.tsv"), out=str(out),
                          epochs=1, batch_size=16, max_length=16, progress=False, log_every=10**9,
                          data=DataOptions(text_prefix="query: ")))
    assert load_checkpoint(out).meta["data"]["text_prefix"] == "query: "
    served = Predictor.load(out)
    unprefixed = served.with_data(text_prefix="")
    text = "a b z c"
    assert served.predict([text])[0]["scores"] == unprefixed.predict(["query: " + text])[0]["scores"]
    assert served.predict([text])[0]["scores"] != unprefixed.predict([text])[0]["scores"]
    again = tmp_path / "continued"  # training on from it keeps the prefix without being told
    finetune(FinetuneArgs(task="classify", model=str(out), train=str(tmp_path / "train.tsv"), out=str(again),
                          epochs=1, batch_size=16, max_length=16, progress=False, log_every=10**9))
    assert load_checkpoint(again).meta["data"]["text_prefix"] == "query: "


def test_fewshot_contrastive_records_the_text_prefix_it_was_given(
        tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    write_classification(tmp_path / "train.tsv", 40, seed=0)
    write_classification(tmp_path / "dev.tsv", 20, seed=1)
    recorded = {}
    for given, flags in (("default", []), ("query", ["--text-prefix", "query: "])):
        out = tmp_path / given
        code, _, stderr = run_cli(
            monkeypatch, capsys, "fewshot", "--method", "contrastive", "--model", tiny_bert_dir, "--train",
            tmp_path / "train.tsv", "--eval", tmp_path / "dev.tsv", "--k", "4", "--seeds", "1", "--epochs", "1",
            "--pair-iterations", "1", "--head-steps", "5", "--out", out, "--no-progress", *flags)
        assert code == 0, stderr
        assert json.loads((out / "results.json").read_text())["runs"][0]["train_examples"] == 8
        recorded[given] = load_checkpoint(out / "model").meta["data"]["text_prefix"]
    assert recorded == {"default": "", "query": "query: "}
