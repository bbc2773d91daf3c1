"""Checkpoint directories: save/load, transformers interop, legacy .bin, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from torch.testing import assert_close

from conftest import tiny_hf_model
from nlpforge.checkpoint import META_FILE, load_checkpoint, save_checkpoint
from nlpforge.errors import CheckpointError


def test_save_then_transformers_and_nlpforge_load_the_same_model(tiny_bert_dir: Path, tmp_path: Path) -> None:
    loaded = load_checkpoint(tiny_bert_dir)
    out = save_checkpoint(tmp_path / "out", loaded.model, loaded.config, loaded.tokenizer, loaded.head,
                          meta={"stage": "test", "task": None})
    assert json.loads((out / META_FILE).read_text())["stage"] == "test"
    ids = torch.tensor([[2, 7, 8, 9, 3]])
    with torch.no_grad():
        ours = load_checkpoint(out).model(ids).last_hidden_state
        theirs = transformers.AutoModel.from_pretrained(out).eval()(ids).last_hidden_state
    assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert transformers.AutoTokenizer.from_pretrained(out)("ab c")["input_ids"] == loaded.tokenizer("ab c")["input_ids"]


def test_saved_files_are_readable_by_others(tiny_bert_dir: Path, tmp_path: Path) -> None:
    import os

    loaded = load_checkpoint(tiny_bert_dir)
    out = save_checkpoint(tmp_path / "out", loaded.model, loaded.config, loaded.tokenizer, loaded.head, meta={})
    umask = os.umask(0)
    os.umask(umask)
    for path in out.iterdir():
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path.name


@pytest.mark.parametrize("name", ["BertForMaskedLM", "GPT2LMHeadModel"])
def test_tied_heads_survive_save(name: str, tmp_path: Path) -> None:
    tiny_hf_model(name).save_pretrained(tmp_path / "src")
    loaded = load_checkpoint(tmp_path / "src")
    save_checkpoint(tmp_path / "out", loaded.model, loaded.config, None, loaded.head)
    auto = transformers.AutoModelForMaskedLM if "Masked" in name else transformers.AutoModelForCausalLM
    ids = torch.tensor([[3, 7, 8, 9, 4]])
    with torch.no_grad():
        assert_close(auto.from_pretrained(tmp_path / "out").eval()(ids).logits, loaded.model(ids).logits,
                     atol=1e-5, rtol=1e-5)


def test_legacy_bin_loads_without_unpickling_code(tmp_path: Path) -> None:
    hf = tiny_hf_model("BertModel")
    hf.config.save_pretrained(tmp_path)
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    ids = torch.tensor([[2, 7, 8, 3]])
    with torch.no_grad():
        assert_close(load_checkpoint(tmp_path).model(ids).last_hidden_state, hf(ids).last_hidden_state,
                     atol=1e-5, rtol=1e-5)


def test_head_selection(tmp_path: Path) -> None:
    tiny_hf_model("BertForMaskedLM").save_pretrained(tmp_path / "mlm")
    assert load_checkpoint(tmp_path / "mlm").head == "mlm"
    assert load_checkpoint(tmp_path / "mlm", head="base").head == "base"
    tiny_hf_model("BertModel").save_pretrained(tmp_path / "base")
    with pytest.raises(CheckpointError, match="has no 'mlm' head weights"):
        load_checkpoint(tmp_path / "base", head="mlm")


def test_save_replaces_atomically_and_keeps_old_on_failure(tiny_bert_dir: Path, tmp_path: Path) -> None:
    loaded = load_checkpoint(tiny_bert_dir)
    out = tmp_path / "out"
    save_checkpoint(out, loaded.model, loaded.config, None, "base", meta={"stage": "first"})

    class Broken:
        def save_pretrained(self, _: str) -> None:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(out, loaded.model, loaded.config, Broken(), "base", meta={"stage": "second"})
    assert json.loads((out / META_FILE).read_text())["stage"] == "first"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "no such checkpoint directory"),
        (lambda d: d.mkdir(), "no config.json"),
        (lambda d: (d.mkdir(), (d / "config.json").write_text('{"model_type": "llama"}')),
         "'llama' is not supported; supported: bert, roberta, xlm-roberta, distilbert, gpt2"),
        (lambda d: (d.mkdir(), (d / "config.json").write_text("{oops")), "not valid JSON"),
    ],
)
def test_errors_name_the_problem(tmp_path: Path, setup, message: str) -> None:
    directory = tmp_path / "ckpt"
    setup(directory)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(directory)


def test_no_weights(tmp_path: Path) -> None:
    tiny_hf_model("BertModel").config.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"no model\.safetensors"):
        load_checkpoint(tmp_path)


def test_unreachable_hub_name_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="could not be fetched from the Hugging Face hub"):
        load_checkpoint("nlpforge-test/does-not-exist")
