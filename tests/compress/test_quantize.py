"""INT8 (onnxruntime dynamic and static, torch dynamic) and half-precision artifacts, and load_artifact.

Bounds on int8 error: a weight rounded to int8 moves by at most half a step, 1/254 of its channel's
largest weight, and activations by as much of their range; through two layers that leaves errors of
a few percent of the logits' spread. The random tiny models here measured max |int8 - fp32| of
0.04 (onnxruntime dynamic), 0.08 (torch dynamic) and 0.2 (static; its activation ranges are fixed by
calibration) times the standard deviation of the fp32 logits; the bounds leave 2-4x margin.
Tagging logits of a random 3-class model are often near ties, so argmax agreement is checked loosely.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_tokenizer
from nlpforge.checkpoint import WEIGHTS_FILE, directory_size, save_checkpoint
from nlpforge.compress.export import ONNX_FILE, OnnxModel, export_onnx
from nlpforge.compress.quantize import (
    artifact_size,
    half_precision_copy,
    load_artifact,
    quantize_onnx_dynamic,
    quantize_onnx_static,
    quantize_torch_dynamic,
    save_torch_quantized,
)
from nlpforge.config import ModelConfig
from nlpforge.errors import CheckpointError, ConfigError
from nlpforge.tasks.heads import SequenceClassifier, SpanExtractor, TokenTagger

LABELS = ["O", "B-X", "I-X"]


def make_batch(batch_size: int, length: int, seed: int) -> dict[str, torch.Tensor]:
    """Random ids; row b > 0 is padded after length - 2b tokens."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 99, (batch_size, length), generator=g)
    attention_mask = torch.ones(batch_size, length, dtype=torch.long)
    for b in range(1, batch_size):
        attention_mask[b, max(1, length - 2 * b):] = 0
    input_ids[attention_mask == 0] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": torch.zeros_like(input_ids)}


TEST_BATCHES = [make_batch(B, T, seed) for seed, (B, T) in enumerate([(4, 12), (6, 25), (2, 7)])]
CALIBRATION = [{k: v.numpy() for k, v in make_batch(8, T, 100 + T).items() if k != "token_type_ids"}
               for T in (9, 16, 30, 21)]


def compare(model, reference: torch.nn.Module) -> tuple[float, float]:
    """(max |diff| over real tokens / std of the reference, argmax agreement) over TEST_BATCHES."""
    worst, agree, total = 0.0, 0, 0
    for batch in TEST_BATCHES:
        with torch.no_grad():
            expected, got = reference(**batch).logits, model(**batch).logits
        keep = batch["attention_mask"].bool()
        worst = max(worst, ((got - expected).abs()[keep].max() / expected[keep].std()).item())
        agree += int((got.argmax(-1) == expected.argmax(-1))[keep].sum())
        total += int(keep.sum())
    return worst, agree / total


@pytest.fixture(scope="module")
def tagger() -> TokenTagger:
    """Hidden 128, FFN 512, 2 layers: big enough that int8 weights dominate the file."""
    torch.manual_seed(0)
    return TokenTagger(ModelConfig.from_name("tiny-bert", num_labels=3, hidden_size=128, intermediate_size=512)).eval()


@pytest.fixture(scope="module")
def fp32_dir(tmp_path_factory: pytest.TempPathFactory, tagger: TokenTagger) -> Path:
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(ord("a") + i) for i in range(26)]
    vocab.write_text("\n".join(words) + "\n", encoding="utf-8")
    tokenizer = tiny_tokenizer(vocab)
    return export_onnx(tagger, tmp_path_factory.mktemp("onnx") / "fp32", tokenizer,
                       meta={"task": "tag", "labels": LABELS})


def onnx_bytes(directory: Path) -> int:
    return (directory / ONNX_FILE).stat().st_size


def test_onnx_dynamic_int8_close_and_smaller(tmp_path: Path, tagger: TokenTagger, fp32_dir: Path) -> None:
    out = quantize_onnx_dynamic(fp32_dir, tmp_path / "int8")
    model, tokenizer, meta = load_artifact(out)
    assert isinstance(model, OnnxModel)
    assert meta["precision"] == "int8-dynamic" and meta["labels"] == LABELS and meta["task"] == "tag"
    assert tokenizer is not None and tokenizer("a b")["input_ids"] == [2, 5, 6, 3]
    assert json.loads((out / "config.json").read_text()) == json.loads((fp32_dir / "config.json").read_text())
    worst, agree = compare(model, tagger)
    assert worst < 0.15 and agree > 0.9, (worst, agree)
    assert onnx_bytes(out) < 0.4 * onnx_bytes(fp32_dir)  # measured 0.29: int8 weights, fp32 norms and biases


def test_onnx_static_int8_close_and_smaller(tmp_path: Path, tagger: TokenTagger, fp32_dir: Path) -> None:
    out = quantize_onnx_static(fp32_dir, tmp_path / "int8", CALIBRATION)
    model, _, meta = load_artifact(out)
    assert meta["precision"] == "int8-static" and meta["calibration_batches"] == len(CALIBRATION)
    worst, agree = compare(model, tagger)
    assert worst < 0.5 and agree > 0.85, (worst, agree)
    assert onnx_bytes(out) < 0.4 * onnx_bytes(fp32_dir)


def test_onnx_quantization_refuses_bad_input(tmp_path: Path, fp32_dir: Path) -> None:
    with pytest.raises(ConfigError, match="calibration data missing"):
        quantize_onnx_static(fp32_dir, tmp_path / "static", [])
    assert not (tmp_path / "static").exists()
    int8 = quantize_onnx_dynamic(fp32_dir, tmp_path / "int8")
    with pytest.raises(ConfigError, match="already quantized"):
        quantize_onnx_dynamic(int8, tmp_path / "twice")
    with pytest.raises(ConfigError, match="already quantized"):
        quantize_onnx_static(int8, tmp_path / "twice", CALIBRATION)
    with pytest.raises(CheckpointError, match=ONNX_FILE):
        quantize_onnx_dynamic(tmp_path, tmp_path / "nothing")


def test_torch_dynamic_int8_close_and_refuses_twice(tagger: TokenTagger) -> None:
    quantized = quantize_torch_dynamic(tagger)
    assert isinstance(quantized.encoder.layers[0].ffn.up, torch.ao.nn.quantized.dynamic.Linear)
    assert isinstance(tagger.encoder.layers[0].ffn.up, torch.nn.Linear)  # the fp32 model is left alone
    worst, agree = compare(quantized, tagger)
    assert worst < 0.25 and agree > 0.9, (worst, agree)
    with pytest.raises(ConfigError, match="already-quantized"):
        quantize_torch_dynamic(quantized)


def test_torch_int8_artifact_round_trip(tmp_path: Path, tiny_vocab: Path, tagger: TokenTagger) -> None:
    out = save_torch_quantized(tagger, tiny_tokenizer(tiny_vocab), tmp_path / "int8", {"labels": LABELS})
    model, tokenizer, meta = load_artifact(out)
    assert meta["precision"] == "int8-torch-dynamic" and meta["labels"] == LABELS and tokenizer is not None
    assert isinstance(model.encoder.layers[1].attn.qkv, torch.ao.nn.quantized.dynamic.Linear)
    expected = quantize_torch_dynamic(tagger)
    for batch in TEST_BATCHES:  # loading re-quantizes the stored fp32 weights into the same int8 model
        with torch.no_grad():
            torch.testing.assert_close(model(**batch).logits, expected(**batch).logits, atol=0, rtol=0)
    # Saving the int8 model itself stores its de-quantized weights: re-quantizing them keeps almost
    # all int8 values, but a channel's scale may move by 0.4%; through the per-call activation
    # rounding that moves outputs about as much as int8 itself does (measured 0.07 std).
    from_int8, _, _ = load_artifact(save_torch_quantized(expected, None, tmp_path / "from-int8", {}))
    for batch in TEST_BATCHES:
        with torch.no_grad():
            reference = expected(**batch).logits
            drift = (from_int8(**batch).logits - reference).abs().max() / reference.std()
        assert drift < 0.15, drift


@pytest.mark.parametrize(("dtype", "name", "atol"),
                         [(torch.float16, "float16", 1e-2), (torch.bfloat16, "bfloat16", 5e-2)])
def test_half_precision_copy(tmp_path: Path, tagger: TokenTagger, dtype: torch.dtype, name: str, atol: float) -> None:
    fp32 = save_checkpoint(tmp_path / "fp32", tagger, tagger.encoder.config, None, "tag", {"labels": LABELS})
    half = half_precision_copy(tagger, None, tmp_path / name, dtype, {"labels": LABELS})
    ratio = (half / WEIGHTS_FILE).stat().st_size / (fp32 / WEIGHTS_FILE).stat().st_size
    assert 0.45 < ratio < 0.55, ratio
    hf = json.loads((half / "config.json").read_text())
    assert hf["torch_dtype"] == name and hf["id2label"]["1"] == "B-X"
    model, _, meta = load_artifact(half)
    assert meta["precision"] == ("fp16" if dtype == torch.float16 else "bf16")
    assert next(model.parameters()).dtype == torch.float32  # computes in fp32 on the CPU by default
    batch = TEST_BATCHES[0]
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, tagger(**batch).logits, atol=atol, rtol=0)
    as_stored, _, _ = load_artifact(half, dtype=dtype)
    assert next(as_stored.parameters()).dtype == dtype
    with pytest.raises(ConfigError, match="is not torch"):
        half_precision_copy(tagger, None, tmp_path / "int8", torch.int8)


@pytest.mark.parametrize("cls", [SequenceClassifier, SpanExtractor])
def test_load_artifact_every_kind(tmp_path: Path, cls: type) -> None:
    """A checkpoint, an ONNX export and its int8 copy all load and answer alike."""
    torch.manual_seed(0)
    model = cls(ModelConfig.from_name("tiny-bert", num_labels=3)).eval()
    head = "classify" if cls is SequenceClassifier else "span_qa"
    field = "logits" if cls is SequenceClassifier else "start_logits"
    checkpoint = save_checkpoint(tmp_path / "ckpt", model, model.encoder.config, None, head,
                                 {"task": head, "labels": ["a", "b", "c"]})
    onnx_dir = export_onnx(model, tmp_path / "onnx", meta={"task": head})
    int8_dir = quantize_onnx_dynamic(onnx_dir, tmp_path / "int8")
    torch_int8_dir = save_torch_quantized(model, None, tmp_path / "torch-int8", {"task": head})  # no labels
    batch = TEST_BATCHES[1]
    with torch.no_grad():
        expected = getattr(model(**batch), field)
    scale = float(expected.std())
    bounds = {checkpoint: 1e-5, onnx_dir: 1e-4, int8_dir: 0.15 * scale, torch_int8_dir: 0.25 * scale}
    for directory, atol in bounds.items():
        loaded, _, meta = load_artifact(directory)
        assert meta["task"] == head
        with torch.no_grad():
            got = getattr(loaded.eval()(**batch), field)
        keep = batch["attention_mask"].bool() if got.dim() == 2 and field != "logits" else slice(None)
        assert float((got - expected)[keep].abs().max()) <= atol, directory.name
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        load_artifact(tmp_path / "missing")


def test_artifact_size_counts_every_file(tmp_path: Path, fp32_dir: Path) -> None:
    assert artifact_size(fp32_dir) == directory_size(fp32_dir)
    assert onnx_bytes(fp32_dir) < artifact_size(fp32_dir)
    assert artifact_size(fp32_dir) == sum(p.stat().st_size for p in fp32_dir.iterdir())
    assert np.isfinite(artifact_size(fp32_dir))
