"""Predictor: one object over checkpoints and ONNX exports, with the same answers on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli, tiny_hf_model, tiny_tokenizer
from nlpforge.compress.export import export_onnx
from nlpforge.compress.quantize import quantize_onnx_dynamic
from nlpforge.errors import ConfigError, InputDataError
from nlpforge.predictor import Predictor


@pytest.fixture
def checkpoint(tmp_path: Path, tiny_vocab: Path) -> Path:
    out = tmp_path / "classifier"
    tiny_hf_model("BertForSequenceClassification").save_pretrained(out)
    tiny_tokenizer(tiny_vocab).save_pretrained(out)
    return out


def test_onnx_and_torch_agree(checkpoint: Path, tmp_path: Path) -> None:
    torch_predictor = Predictor.load(checkpoint)
    export_onnx(torch_predictor.model, tmp_path / "onnx", torch_predictor.tokenizer, torch_predictor.meta)
    onnx_predictor = Predictor.load(tmp_path / "onnx")
    exported_on_load = Predictor.load(checkpoint, backend="onnxruntime")
    assert (torch_predictor.backend, onnx_predictor.backend, exported_on_load.backend) == \
        ("torch", "onnxruntime", "onnxruntime")
    inputs = ["a b c", {"text": "d e f g", "text_pair": "h"}, "z"]
    expected = torch_predictor.predict(inputs)
    for predictor in (onnx_predictor, exported_on_load):
        for got, want in zip(predictor.predict(inputs), expected, strict=True):
            assert got["label"] == want["label"]
            assert got["scores"] == pytest.approx(want["scores"], abs=1e-4)
    with pytest.raises(ConfigError, match="no hidden-state output"):
        onnx_predictor.embed(["a"])
    quantize_onnx_dynamic(tmp_path / "onnx", tmp_path / "int8")
    assert Predictor.load(tmp_path / "int8").describe()["precision"].startswith("int8")


def test_errors(checkpoint: Path, tmp_path: Path) -> None:
    predictor = Predictor.load(checkpoint)
    with pytest.raises(InputDataError, match=r"inputs\[1\]: must be a non-empty string"):
        predictor.predict(["a", ""])
    with pytest.raises(InputDataError, match="not null"):
        predictor.parse(None, "x")
    with pytest.raises(ConfigError, match="backend 'tensorrt'"):
        Predictor.load(checkpoint, backend="tensorrt")
    export_onnx(predictor.model, tmp_path / "onnx", predictor.tokenizer, predictor.meta)
    with pytest.raises(ConfigError, match="--backend onnxruntime"):
        Predictor.load(tmp_path / "onnx", backend="torch")


def test_predict_cli_reads_an_onnx_export(checkpoint: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    predictor = Predictor.load(checkpoint)
    export_onnx(predictor.model, tmp_path / "onnx", predictor.tokenizer, predictor.meta)
    (tmp_path / "in.txt").write_text("a b c\n")
    code, printed, err = run_cli(monkeypatch, capsys, "predict", tmp_path / "onnx", "--input", tmp_path / "in.txt")
    assert code == 0, err
    assert '"label": "' + predictor.predict(["a b c"])[0]["label"] in printed
