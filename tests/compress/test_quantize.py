"""INT8 (onnxruntime dynamic and static, torch dynamic) and half-precision artifacts, and load_artifact.

Bounds on int8 error: a weight rounded to int8 moves by at most half a step, 1/254 of its channel's
largest weight (1/128 in 7 bits), and activations by as much of their range; through two layers
that leaves errors of a few percent of the logits' spread. The random tiny models here measured max
|int8 - fp32| of 0.05 (onnxruntime dynamic), 0.08 (torch dynamic) and 0.1 (static; its activation
ranges are fixed by calibration) times the standard deviation of the fp32 logits, the same on a
VNNI CPU and on an AVX2-only one (qemu -cpu Haswell: benchmarks/int8_avx2_check.sh); the bounds
leave 2-3x margin. With full 8-bit int8 weights an AVX2-only CPU measured 0.51 (dynamic) and 0.43
(static): its uint8 x int8 kernel saturates 16-bit sums, so these bounds catch that setting there,
and ``test_onnx_int8_weights_fit_every_x86_kernel`` catches it on any CPU.
Tagging logits of a random 3-class model are often near ties, so argmax agreement is checked loosely.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from safetensors import safe_open

from conftest import tiny_tokenizer
from nlpforge.artifacts import (
    ONNX_FILE,
    WRITE_KINDS,
    Artifact,
    OnnxModel,
    load_artifact,
    record_artifact_metrics,
    write_artifact,
)
from nlpforge.artifacts.torch_int8 import TORCH_INT8_FILE
from nlpforge.checkpoint import WEIGHTS_FILE, directory_size, save_checkpoint
from nlpforge.compress.export import export_onnx
from nlpforge.compress.quantize import (
    half_precision_copy,
    quantize_onnx_dynamic,
    quantize_onnx_static,
    quantize_torch_dynamic,
    save_torch_quantized,
)
from nlpforge.config import ModelConfig
from nlpforge.errors import CheckpointError, ConfigError
from nlpforge.models.bert import BertModel
from nlpforge.tasks.classify import SequenceClassifier
from nlpforge.tasks.span_qa import SpanExtractor
from nlpforge.tasks.tag import TokenTagger

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


def matmul_int8_weights(directory: Path) -> dict[str, np.ndarray]:
    """The int8 weight matrices that integer MatMuls multiply by: B of MatMulInteger (dynamic) and the
    quantized weights that DequantizeLinear feeds into a MatMul (static QDQ)."""
    graph = onnx.load(str(directory / ONNX_FILE)).graph
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    matmul_inputs = {name for node in graph.node if node.op_type == "MatMul" for name in node.input}
    weights = {}
    for node in graph.node:
        if node.op_type == "MatMulInteger":
            weights[node.input[1]] = initializers[node.input[1]]
        elif node.op_type == "DequantizeLinear" and node.output[0] in matmul_inputs and node.input[0] in initializers:
            weights[node.input[0]] = initializers[node.input[0]]
    return {name: value for name, value in weights.items() if value.dtype == np.int8}


def test_onnx_dynamic_int8_close_and_smaller(tmp_path: Path, tagger: TokenTagger, fp32_dir: Path) -> None:
    out = quantize_onnx_dynamic(fp32_dir, tmp_path / "int8")
    artifact = load_artifact(out)
    model, tokenizer, meta = artifact.model, artifact.tokenizer, artifact.meta
    assert isinstance(model, OnnxModel)
    assert meta["precision"] == "int8-dynamic" and meta["labels"] == LABELS and meta["task"] == "tag"
    assert tokenizer is not None and tokenizer("a b")["input_ids"] == [2, 5, 6, 3]
    assert json.loads((out / "config.json").read_text()) == json.loads((fp32_dir / "config.json").read_text())
    assert meta["quantization"]["reduce_range"] and meta["quantization"]["weight_type"] == "int8"
    worst, agree = compare(model, tagger)
    assert worst < 0.15 and agree > 0.9, (worst, agree)  # measured 0.045 on VNNI and AVX2-only CPUs
    assert onnx_bytes(out) < 0.4 * onnx_bytes(fp32_dir)  # measured 0.29: int8 weights, fp32 norms and biases


@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_onnx_int8_weights_fit_every_x86_kernel(tmp_path: Path, fp32_dir: Path, kind: str) -> None:
    """Every int8 weight a MatMul multiplies by lies in [-64, 64]: then no pair of uint8 x int8 products
    overflows the saturating 16-bit sums (VPMADDUBSW) of x86 CPUs without VNNI: 2 * 255 * 64 <= 32767."""
    out = (quantize_onnx_dynamic(fp32_dir, tmp_path / "int8") if kind == "dynamic"
           else quantize_onnx_static(fp32_dir, tmp_path / "int8", CALIBRATION))
    weights = matmul_int8_weights(out)
    graph = onnx.load(str(fp32_dir / ONNX_FILE)).graph
    constant = {i.name for i in graph.initializer}
    assert len(weights) == sum(n.op_type == "MatMul" and n.input[1] in constant for n in graph.node)  # 9: all
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in weights.values()) == 64


def test_onnx_static_int8_close_and_smaller(tmp_path: Path, tagger: TokenTagger, fp32_dir: Path) -> None:
    out = quantize_onnx_static(fp32_dir, tmp_path / "int8", CALIBRATION)
    artifact = load_artifact(out)
    model, meta = artifact.model, artifact.meta
    assert meta["precision"] == "int8-static" and meta["calibration_batches"] == len(CALIBRATION)
    assert meta["quantization"]["reduce_range"] and meta["quantization"]["format"] == "QDQ"
    worst, agree = compare(model, tagger)
    assert worst < 0.25 and agree > 0.85, (worst, agree)  # measured 0.097 on VNNI and AVX2-only CPUs
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


def test_torch_int8_artifact_stores_int8_and_loads_it_unchanged(tmp_path: Path, tiny_vocab: Path,
                                                               tagger: TokenTagger) -> None:
    fp32 = save_checkpoint(tmp_path / "fp32", tagger, tagger.encoder.config, None, "tag", {"labels": LABELS})
    out = save_torch_quantized(tagger, tiny_tokenizer(tiny_vocab), tmp_path / "int8", {"labels": LABELS})
    assert not (out / WEIGHTS_FILE).exists()  # transformers refuses the directory instead of misreading int8
    with safe_open(str(out / TORCH_INT8_FILE), "pt") as stored:
        up = "encoder.layers.0.ffn.up"
        assert stored.get_tensor(f"{up}.weight").dtype == torch.int8
        assert stored.get_tensor(f"{up}.weight_scale").shape == (512,)  # one scale per output channel
        assert stored.get_tensor(f"{up}.weight_zero_point").abs().sum() == 0  # symmetric
    # hidden 128, FFN 512, vocabulary 99: the Linear weights are most of the bytes (measured 0.30)
    assert (out / TORCH_INT8_FILE).stat().st_size < 0.4 * (fp32 / WEIGHTS_FILE).stat().st_size
    artifact = load_artifact(out)
    model, tokenizer, meta = artifact.model, artifact.tokenizer, artifact.meta
    assert meta["precision"] == "int8-torch-dynamic" and meta["labels"] == LABELS and tokenizer is not None
    assert meta["quantization"]["file"] == TORCH_INT8_FILE
    assert isinstance(model.encoder.layers[1].attn.qkv, torch.ao.nn.quantized.dynamic.Linear)
    expected = quantize_torch_dynamic(tagger)
    # Saving the int8 model itself stores the same int8 values and scales.
    from_int8 = load_artifact(save_torch_quantized(expected, None, tmp_path / "from-int8", {})).model
    for batch in TEST_BATCHES:
        with torch.no_grad():
            reference = expected(**batch).logits
            torch.testing.assert_close(model(**batch).logits, reference, atol=0, rtol=0)
            torch.testing.assert_close(from_int8(**batch).logits, reference, atol=0, rtol=0)


def test_torch_int8_artifact_of_an_encoder_and_an_older_artifact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    encoder = BertModel(ModelConfig.from_name("tiny-bert")).eval()  # a bare encoder keeps its pooler
    loaded = load_artifact(save_torch_quantized(encoder, None, tmp_path / "encoder", {})).model
    batch = {k: v for k, v in TEST_BATCHES[0].items() if k != "token_type_ids"}
    with torch.no_grad():
        expected = quantize_torch_dynamic(encoder)(**batch)
        got = loaded(**batch)
    torch.testing.assert_close(got.last_hidden_state, expected.last_hidden_state, atol=0, rtol=0)
    torch.testing.assert_close(got.pooler_output, expected.pooler_output, atol=0, rtol=0)
    # An artifact written before int8 weights were stored holds the fp32 checkpoint: quantized on loading.
    old = save_checkpoint(tmp_path / "old", encoder, encoder.config, None, "base", {"precision": "int8-torch-dynamic"})
    model = load_artifact(old).model
    assert isinstance(model.layers[0].ffn.up, torch.ao.nn.quantized.dynamic.Linear)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).last_hidden_state, expected.last_hidden_state, atol=0, rtol=0)


def test_torch_int8_artifact_that_does_not_fit_its_config(tmp_path: Path, tagger: TokenTagger) -> None:
    out = save_torch_quantized(tagger, None, tmp_path / "int8", {"labels": LABELS})
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "intermediate_size": 256}))
    with pytest.raises(CheckpointError, match=r"does not fit config\.json"):
        load_artifact(out)


@pytest.mark.parametrize(("dtype", "name", "atol"),
                         [(torch.float16, "float16", 1e-2), (torch.bfloat16, "bfloat16", 5e-2)])
def test_half_precision_copy(tmp_path: Path, tagger: TokenTagger, dtype: torch.dtype, name: str, atol: float) -> None:
    fp32 = save_checkpoint(tmp_path / "fp32", tagger, tagger.encoder.config, None, "tag", {"labels": LABELS})
    half = half_precision_copy(tagger, None, tmp_path / name, dtype, {"labels": LABELS})
    ratio = (half / WEIGHTS_FILE).stat().st_size / (fp32 / WEIGHTS_FILE).stat().st_size
    assert 0.45 < ratio < 0.55, ratio
    hf = json.loads((half / "config.json").read_text())
    assert hf["torch_dtype"] == name and hf["id2label"]["1"] == "B-X"
    artifact = load_artifact(half)
    model, meta = artifact.model, artifact.meta
    assert meta["precision"] == ("fp16" if dtype == torch.float16 else "bf16")
    assert next(model.parameters()).dtype == torch.float32  # computes in fp32 on the CPU by default
    batch = TEST_BATCHES[0]
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, tagger(**batch).logits, atol=atol, rtol=0)
    as_stored = load_artifact(half, dtype=dtype).model
    assert next(as_stored.parameters()).dtype == dtype
    with pytest.raises(ConfigError, match="is not torch"):
        half_precision_copy(tagger, None, tmp_path / "int8", torch.int8)


@pytest.mark.parametrize("cls", [SequenceClassifier, SpanExtractor])
def test_write_and_load_artifact_every_kind(tmp_path: Path, cls: type) -> None:
    """write_artifact writes every kind; load_artifact returns the same dataclass for each, whose
    model answers alike (within each kind's precision) and whose description is JSON."""
    torch.manual_seed(0)
    model = cls(ModelConfig.from_name("tiny-bert", num_labels=3)).eval()
    task = "classify" if cls is SequenceClassifier else "span_qa"
    field = "logits" if cls is SequenceClassifier else "start_logits"
    meta = {"task": task, **({"labels": ["a", "b", "c"]} if task == "classify" else {})}
    calibration = CALIBRATION
    batch = TEST_BATCHES[1]
    with torch.no_grad():
        expected = getattr(model(**batch), field)
    scale = float(expected.std())
    bounds = {"checkpoint": 1e-5, "bf16": 0.05 * scale, "onnx": 1e-4, "int8-onnx": 0.15 * scale,
              "int8-static-onnx": 0.5 * scale, "int8-torch": 0.25 * scale}
    assert set(bounds) == set(WRITE_KINDS) - {"fp16"}  # fp16 computes like bf16 here (float32 on CPU)
    kinds = {"checkpoint": ("checkpoint", "fp32", "torch"), "bf16": ("checkpoint", "bf16", "torch"),
             "onnx": ("onnx", "fp32", "onnxruntime"), "int8-onnx": ("onnx", "int8-dynamic", "onnxruntime"),
             "int8-static-onnx": ("onnx", "int8-static", "onnxruntime"),
             "int8-torch": ("torch-int8", "int8-torch-dynamic", "torch")}
    for kind, atol in bounds.items():
        directory = write_artifact(model, None, tmp_path / kind, kind, meta, calibration=calibration)
        artifact = load_artifact(directory)
        assert isinstance(artifact, Artifact)
        assert (artifact.kind, artifact.precision, artifact.backend) == kinds[kind], kind
        assert artifact.task.name == task and artifact.config.num_layers == 2
        assert artifact.labels == meta.get("labels")
        described = json.loads(json.dumps(artifact.describe()))
        assert described["kind"] == artifact.kind and described["parameters"] > 0 and described["bytes_on_disk"] > 0
        with torch.no_grad():
            got = getattr(artifact.model(**batch), field)
        keep = batch["attention_mask"].bool() if got.dim() == 2 and field != "logits" else slice(None)
        assert float((got - expected)[keep].abs().max()) <= atol, kind
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        load_artifact(tmp_path / "missing")
    with pytest.raises(ConfigError, match="artifact kind 'int4'"):
        write_artifact(model, None, tmp_path / "x", "int4")


def test_artifact_size_counts_every_file(fp32_dir: Path) -> None:
    size = load_artifact(fp32_dir).size_bytes
    assert size == directory_size(fp32_dir) == sum(p.stat().st_size for p in fp32_dir.iterdir())
    assert onnx_bytes(fp32_dir) < size


def test_record_artifact_metrics_replaces_only_the_metrics(tmp_path: Path, fp32_dir: Path) -> None:
    out = quantize_onnx_dynamic(fp32_dir, tmp_path / "int8")
    before = json.loads((out / "nlpforge.json").read_text())
    record_artifact_metrics(out, {"f1": 0.5}, metrics_eval="dev.tsv")
    after = json.loads((out / "nlpforge.json").read_text())
    assert after == {**before, "metrics": {"f1": 0.5}, "metrics_eval": "dev.tsv"}
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in fp32_dir.iterdir())  # no temp left


def test_legacy_8bit_int8_artifacts_get_exact_kernels(tmp_path: Path, fp32_dir: Path) -> None:
    """An INT8 file written before weights were capped at 7 bits (no reduce_range recorded) is opened with
    onnxruntime's exact kernels, so it stays right on CPUs without VNNI; a current one needs none."""
    current = quantize_onnx_dynamic(fp32_dir, tmp_path / "int8")
    def exact_kernels(directory: Path) -> bool:
        options = load_artifact(directory).model.session.get_session_options()
        try:
            return options.get_session_config_entry("session.x64quantprecision") == "1"
        except RuntimeError:  # onnxruntime: no such entry was set
            return False

    assert not exact_kernels(current)
    meta = json.loads((current / "nlpforge.json").read_text())
    meta.pop("quantization")
    (current / "nlpforge.json").write_text(json.dumps(meta))
    assert exact_kernels(current)
