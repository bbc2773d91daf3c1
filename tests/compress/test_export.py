"""ONNX export: onnxruntime matches torch (1e-4) at every batch size and length, padding included."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch

from conftest import tiny_tokenizer
from nlpforge.artifacts import ONNX_FILE, OnnxModel
from nlpforge.compress.export import export_onnx
from nlpforge.compress.quantize import quantize_torch_dynamic
from nlpforge.config import ModelConfig
from nlpforge.errors import CheckpointError, ConfigError
from nlpforge.inference import forward_batches
from nlpforge.models.bert import BertModel
from nlpforge.models.outputs import EncoderOutput, SpanOutput, TaskOutput
from nlpforge.tasks.classify import SequenceClassifier
from nlpforge.tasks.span_qa import SpanExtractor
from nlpforge.tasks.tag import TokenTagger

FIELDS = {SequenceClassifier: ("logits",), TokenTagger: ("logits",), SpanExtractor: ("start_logits", "end_logits"),
          BertModel: ("last_hidden_state",)}
OUTPUTS = {SequenceClassifier: TaskOutput, TokenTagger: TaskOutput, SpanExtractor: SpanOutput,
           BertModel: EncoderOutput}
# (batch, length, padded): one token, unpadded rows, ragged padding, the longest position.
SHAPES = [(1, 1, False), (1, 5, False), (3, 11, True), (4, 20, True), (2, 64, True), (5, 7, False)]


def make_batch(batch_size: int, length: int, padded: bool, type_vocab_size: int, seed: int = 0
               ) -> dict[str, torch.Tensor]:
    """Random ids (never the pad id 0); when padded, row b > 0 keeps length - 3b tokens (at least 1)."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 99, (batch_size, length), generator=g)
    attention_mask = torch.ones(batch_size, length, dtype=torch.long)
    if padded:
        for b in range(1, batch_size):
            attention_mask[b, max(1, length - 3 * b):] = 0
        input_ids[attention_mask == 0] = 0
    token_type_ids = torch.randint(0, max(type_vocab_size, 1), (batch_size, length), generator=g)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


def assert_parity(model: torch.nn.Module, onnx_model: OnnxModel, config: ModelConfig) -> None:
    for i, (B, T, padded) in enumerate(SHAPES):
        batch = make_batch(B, T - config.position_offset if T == 64 else T, padded, config.type_vocab_size, i)
        with torch.no_grad():
            expected = model(**batch)
        got = onnx_model(**batch)
        assert type(got) is OUTPUTS[type(model)]
        # Per-token outputs are compared at real tokens: torch inference packs padded batches and
        # leaves padding positions at zero, where the exported (padded) graph computes from pad ids.
        real = batch["attention_mask"].bool() if type(model) is not SequenceClassifier else slice(None)
        for field in FIELDS[type(model)]:
            torch.testing.assert_close(getattr(got, field)[real], getattr(expected, field)[real], atol=1e-4,
                                       rtol=1e-4, msg=lambda m, s=(B, T, padded), f=field: f"{f} at {s}: {m}")


@pytest.mark.parametrize("cls", [SequenceClassifier, TokenTagger, SpanExtractor, BertModel])
def test_onnx_matches_torch_with_padding_and_dynamic_shapes(tmp_path: Path, tiny_vocab: Path, cls: type) -> None:
    config = ModelConfig.from_name("tiny-bert", num_labels=3)
    torch.manual_seed(0)
    model = cls(config).eval()
    out = export_onnx(model, tmp_path / "onnx", tiny_tokenizer(tiny_vocab), meta={"stage": "test"})
    onnx_model = OnnxModel.load(out, threads=1)
    assert onnx_model.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    assert onnx_model.output_names == list(FIELDS[cls])
    assert not model.training  # the export leaves the model's mode alone
    assert_parity(model, onnx_model, config)


def test_graph_axes_are_batch_and_sequence(tmp_path: Path) -> None:
    torch.manual_seed(0)
    export_onnx(SpanExtractor(ModelConfig.from_name("tiny-bert")).eval(), tmp_path / "onnx")
    graph = onnx.load(str(tmp_path / "onnx" / ONNX_FILE)).graph
    for value in [*graph.input, *graph.output]:
        dims = [d.dim_param for d in value.type.tensor_type.shape.dim]
        assert dims == ["batch", "sequence"], value.name


@pytest.mark.parametrize(("model_type", "overrides"), [
    ("roberta", dict(type_vocab_size=1, pad_token_id=1)),  # positions count non-pad tokens
    ("distilbert", dict(type_vocab_size=0)),  # no token types: the graph has no such input
])
def test_other_encoder_types(tmp_path: Path, model_type: str, overrides: dict) -> None:
    config = ModelConfig.from_name("tiny-bert", model_type=model_type, num_labels=3, **overrides)
    torch.manual_seed(0)
    model = TokenTagger(config).eval()
    onnx_model = OnnxModel.load(export_onnx(model, tmp_path / "onnx"))
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if config.type_vocab_size else [])
    assert onnx_model.input_names == names
    assert_parity(model, onnx_model, config)


def test_pruned_model_exports(tmp_path: Path) -> None:
    """Structured pruning leaves layers of different widths, one with no heads at all."""
    config = ModelConfig.from_name("tiny-bert", num_labels=3, layer_heads=[2, 0], layer_intermediate=[16, 37])
    torch.manual_seed(0)
    model = SequenceClassifier(config).eval()
    onnx_model = OnnxModel.load(export_onnx(model, tmp_path / "onnx"))
    assert onnx_model.config.layer_heads == [2, 0]
    assert_parity(model, onnx_model, config)


def test_side_files_and_loaded_config(tmp_path: Path, tiny_vocab: Path) -> None:
    config = ModelConfig.from_name("tiny-bert", num_labels=3)
    model = SequenceClassifier(config).eval()
    out = export_onnx(model, tmp_path / "onnx", tiny_tokenizer(tiny_vocab),
                      meta={"task": "classify", "labels": ["neg", "neu", "pos"]})
    assert {ONNX_FILE, "config.json", "nlpforge.json", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert not list(tmp_path.glob(".*tmp*"))  # the staging directory is gone
    meta = json.loads((out / "nlpforge.json").read_text())
    assert meta["format"] == "onnx" and meta["precision"] == "fp32" and meta["task"] == "classify"
    hf = json.loads((out / "config.json").read_text())
    assert hf["architectures"] == ["BertForSequenceClassification"]
    assert hf["id2label"] == {"0": "neg", "1": "neu", "2": "pos"}
    loaded = OnnxModel.load(out)
    assert loaded.task.name == "classify" and loaded.eval() is loaded
    assert loaded.config.num_labels == 3 and loaded.config.has_pooler is False
    assert loaded.config.hidden_size == config.hidden_size
    assert loaded.meta["labels"] == ["neg", "neu", "pos"]


def test_labels_default_to_label_i(tmp_path: Path) -> None:
    model = TokenTagger(ModelConfig.from_name("tiny-bert", num_labels=5)).eval()
    loaded = OnnxModel.load(export_onnx(model, tmp_path / "onnx"))
    assert loaded.config.num_labels == 5 and loaded.meta["labels"][4] == "LABEL_4"


def test_forward_batches_runs_on_onnx_model(tmp_path: Path) -> None:
    """Code written for torch models (eval(), model(**inputs)) runs unchanged on OnnxModel."""
    torch.manual_seed(0)
    model = SequenceClassifier(ModelConfig.from_name("tiny-bert", num_labels=3)).eval()
    onnx_model = OnnxModel.load(export_onnx(model, tmp_path / "onnx"))
    features = [{"input_ids": list(range(5, 5 + n)), "attention_mask": [1] * n, "token_type_ids": [0] * n}
                for n in (3, 9, 14, 6, 20)]
    expected = {tuple(rows): out.logits for rows, out in forward_batches(model, features, 2, 0)}
    got = {tuple(rows): out.logits for rows, out in forward_batches(onnx_model, features, 2, 0)}
    assert expected.keys() == got.keys()
    for rows in expected:
        torch.testing.assert_close(got[rows], expected[rows], atol=1e-4, rtol=1e-4)


def test_missing_inputs_default_like_torch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TokenTagger(ModelConfig.from_name("tiny-bert", num_labels=3)).eval()
    onnx_model = OnnxModel.load(export_onnx(model, tmp_path / "onnx"))
    input_ids = torch.randint(5, 99, (2, 6)).int()  # int32 ids are fed as int64
    with torch.no_grad():
        expected = model(input_ids.long()).logits
    torch.testing.assert_close(onnx_model(input_ids).logits, expected, atol=1e-4, rtol=1e-4)


def test_half_precision_model_is_exported_in_fp32(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SequenceClassifier(ModelConfig.from_name("tiny-bert", num_labels=3)).eval()
    half = SequenceClassifier(model.config).eval()
    half.load_state_dict(model.state_dict())
    half.to(torch.bfloat16)
    onnx_model = OnnxModel.load(export_onnx(half, tmp_path / "onnx"))
    batch = make_batch(2, 9, True, 2)
    with torch.no_grad():
        expected = half.float()(**batch).logits
    torch.testing.assert_close(onnx_model(**batch).logits, expected, atol=1e-4, rtol=1e-4)


def test_errors(tmp_path: Path) -> None:
    model = SequenceClassifier(ModelConfig.from_name("tiny-bert", num_labels=3)).eval()
    with pytest.raises(ConfigError, match="torch-quantized"):
        export_onnx(quantize_torch_dynamic(model), tmp_path / "q")
    with pytest.raises(ConfigError, match="cannot export"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "linear")
    with pytest.raises(CheckpointError, match=ONNX_FILE):
        OnnxModel.load(tmp_path)
    assert not (tmp_path / "q").exists()
