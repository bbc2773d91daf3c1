"""The CLI: JSON info, convert, embed (length-sorted, original order), one-line errors with exit 2."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli, tiny_hf_model
from nlpforge.checkpoint import load_checkpoint
from nlpforge.embed import embed_texts


def test_info_prints_json(tiny_bert_dir: Path, monkeypatch, capsys) -> None:
    code, out, _ = run_cli(monkeypatch, capsys, "info", tiny_bert_dir)
    summary = json.loads(out)
    assert code == 0
    assert (summary["family"], summary["layers"], summary["hidden_size"], summary["heads"], summary["vocab_size"]) \
        == ("bert", 2, 32, 4, 99)
    assert summary["parameters"] == sum(p.numel() for p in tiny_hf_model("BertModel").parameters())
    assert summary["bytes_on_disk"] > summary["parameters"] * 4


def test_info_answers_json_for_every_artifact_kind(tmp_path: Path, monkeypatch, capsys) -> None:
    from nlpforge.artifacts import write_artifact
    from nlpforge.config import ModelConfig
    from nlpforge.tasks.classify import SequenceClassifier

    model = SequenceClassifier(ModelConfig.from_name("tiny-bert", num_labels=2)).eval()
    meta = {"task": "classify", "labels": ["neg", "pos"], "metrics": {"accuracy": 90.0}}
    expected = {"checkpoint": ("checkpoint", "fp32"), "onnx": ("onnx", "fp32"), "int8-onnx": ("onnx", "int8-dynamic"),
                "int8-torch": ("torch-int8", "int8-torch-dynamic")}
    for kind, (artifact_kind, precision) in expected.items():
        write_artifact(model, None, tmp_path / kind, kind, meta)
        code, out, err = run_cli(monkeypatch, capsys, "info", tmp_path / kind)
        assert code == 0, err
        summary = json.loads(out)
        assert (summary["kind"], summary["precision"], summary["task"]) == (artifact_kind, precision, "classify")
        assert summary["labels"] == ["neg", "pos"] and summary["layers"] == 2 and summary["parameters"] > 10_000
        assert summary["bytes_on_disk"] > 0 and summary["metrics"] == {"accuracy": 90.0}


@pytest.mark.parametrize("target", ["hf", "nlpforge"])
def test_convert(tiny_bert_dir: Path, tmp_path: Path, target: str, monkeypatch, capsys) -> None:
    out = tmp_path / "converted"
    code, _, _ = run_cli(monkeypatch, capsys, "convert", tiny_bert_dir, out, "--to", target)
    assert code == 0
    assert (out / "nlpforge.json").exists() == (target == "nlpforge")
    ids = torch.tensor([[2, 9, 10, 3]])
    with torch.no_grad():
        assert torch.equal(load_checkpoint(out).model(ids).last_hidden_state,
                           load_checkpoint(tiny_bert_dir).model(ids).last_hidden_state)


def test_embed_keeps_input_order(tiny_bert_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    texts = ["a b c d e f g", "a", "ab ae ai ao au ay", "b c", "d e f"]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    code, _, _ = run_cli(monkeypatch, capsys, "embed", tiny_bert_dir, "--input", tmp_path / "in.txt",
                         "--output", tmp_path / "out.npy", "--batch-size", "2")
    assert code == 0
    vectors = np.load(tmp_path / "out.npy")
    loaded = load_checkpoint(tiny_bert_dir)
    one_by_one = np.stack([embed_texts(loaded.model, loaded.tokenizer, [t], progress=False)[0] for t in texts])
    assert vectors.shape == (5, 32)
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-5)


def test_cls_pooling_is_the_first_token(tiny_bert_dir: Path) -> None:
    loaded = load_checkpoint(tiny_bert_dir)
    vector = embed_texts(loaded.model, loaded.tokenizer, ["a b"], pooling="cls", progress=False)
    ids = torch.tensor([loaded.tokenizer("a b")["input_ids"]])
    with torch.no_grad():
        np.testing.assert_allclose(vector[0], loaded.model(ids).last_hidden_state[0, 0].numpy(), atol=1e-6)


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda p: p.write_text(""), "the file is empty"),
        (lambda p: p.write_bytes("好的\n".encode("gb18030")), "in.txt:1: cannot decode as utf-8.*--encoding gb18030"),
        (lambda p: p.write_text("a\n\nb\n"), "in.txt:2: empty line"),
        (lambda p: None, "in.txt: file not found"),
    ],
)
def test_embed_input_errors(tiny_bert_dir: Path, tmp_path: Path, make_input, message: str, monkeypatch, capsys) -> None:
    make_input(tmp_path / "in.txt")
    code, _, err = run_cli(monkeypatch, capsys, "embed", tiny_bert_dir, "--input", tmp_path / "in.txt",
                           "--output", tmp_path / "out.npy")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert re.search(message, err)
    assert not (tmp_path / "out.npy").exists()


def test_gb18030_input_with_encoding_flag(tmp_path: Path, monkeypatch, capsys, tiny_bert_dir: Path) -> None:
    (tmp_path / "in.txt").write_bytes("好的\n".encode("gb18030"))
    code, _, _ = run_cli(monkeypatch, capsys, "embed", tiny_bert_dir, "--input", tmp_path / "in.txt",
                         "--output", tmp_path / "out.npy", "--encoding", "gb18030")
    assert code == 0


@pytest.mark.parametrize(
    ("make_dir", "message"),
    [
        (lambda d: None, "no such checkpoint directory"),
        (lambda d: d.mkdir(), "no config.json"),
        (lambda d: (d.mkdir(), (d / "config.json").write_text('{"model_type": "t5"}')),
         "model_type 't5' is not supported; supported: bert, roberta, xlm-roberta, distilbert, gpt2"),
    ],
)
def test_checkpoint_errors_exit_2(tmp_path: Path, make_dir, message: str, monkeypatch, capsys) -> None:
    make_dir(tmp_path / "ckpt")
    code, _, err = run_cli(monkeypatch, capsys, "info", tmp_path / "ckpt")
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_embed_on_a_decoder_is_a_clear_error(tmp_path: Path, monkeypatch, capsys) -> None:
    tiny_hf_model("GPT2LMHeadModel").save_pretrained(tmp_path / "gpt")
    (tmp_path / "in.txt").write_text("a\n")
    code, _, err = run_cli(monkeypatch, capsys, "embed", tmp_path / "gpt", "--input", tmp_path / "in.txt",
                           "--output", tmp_path / "o.npy")
    assert code == 2 and "no 'base' head for the gpt family" in err


@pytest.mark.parametrize("command", ["train", "eval", "compress", "predict", "serve", "info", "embed", "convert",
                                     "quickstart", "bench-serve"])
def test_help_fits_80_columns_and_every_flag_has_help(command: str) -> None:
    import click
    import typer

    from nlpforge.cli import app

    group = typer.main.get_command(app)
    cli_command = group.commands[command]
    text = cli_command.get_help(click.Context(cli_command, info_name=command, terminal_width=80,
                                              max_content_width=80))
    assert max(len(line) for line in text.splitlines()) <= 80, text
    for parameter in cli_command.params:
        if isinstance(parameter, click.Option) and parameter.name != "help":
            assert parameter.help, f"{command} {parameter.opts[0]} has no help text"


@pytest.mark.parametrize(("command", "configs"), [("train", "FinetuneArgs DataOptions"),
                                                  ("compress", "CompressArgs DataOptions")])
def test_flags_are_generated_from_the_config_dataclasses(command: str, configs: str) -> None:
    import dataclasses

    import typer

    from nlpforge.cli import app
    from nlpforge.data.options import DataOptions
    from nlpforge.recipes.configs import CompressArgs, FinetuneArgs

    classes = {"FinetuneArgs": FinetuneArgs, "CompressArgs": CompressArgs, "DataOptions": DataOptions}
    params = {p.name: p for p in typer.main.get_command(app).commands[command].params}
    for name in configs.split():
        for field in dataclasses.fields(classes[name]):
            if field.name == "data":
                continue
            assert field.name in params, f"{command} has no flag for {name}.{field.name}"
            if field.default is not dataclasses.MISSING:
                assert params[field.name].default == field.default, field.name
            else:
                assert "required" in (params[field.name].help or "") or params[field.name].required, field.name


def test_yaml_values_win_over_unset_flags_and_lose_to_given_ones(tiny_bert_dir: Path, tmp_path: Path, monkeypatch,
                                                                capsys) -> None:
    (tmp_path / "train.tsv").write_text("text\tlabel\n" + "a b\t0\nc d\t1\n" * 4)
    (tmp_path / "run.yaml").write_text(f"task: classify\nmodel: {tiny_bert_dir}\ntrain: {tmp_path / 'train.tsv'}\n"
                                       f"out: {tmp_path / 'o'}\nbatch_size: 2\nepochs: 3\n")
    code, printed, err = run_cli(monkeypatch, capsys, "train", "--config", tmp_path / "run.yaml", "--epochs", "1")
    assert code == 0, err
    assert json.loads(printed)["steps"] == 4  # batch 2 from the YAML (not the flag's default 32), 1 epoch


def test_missing_paths_fail_before_loading_a_model(tmp_path: Path, monkeypatch, capsys) -> None:
    code, _, err = run_cli(monkeypatch, capsys, "eval", tmp_path, "--data", tmp_path / "none.tsv")
    assert code == 2 and "none.tsv: file not found (given with --data)" in err
    code, _, err = run_cli(monkeypatch, capsys, "train", "--task", "classify", "--model", tmp_path / "nope",
                           "--train", "t.tsv", "--out", tmp_path / "o")
    assert code == 2 and "no such checkpoint directory" in err
