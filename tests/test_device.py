"""--device: resolving it, moving batches and outputs, and training on a GPU when there is one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from conftest import run_cli, write_classification
from nlpforge.checkpoint import load_checkpoint
from nlpforge.device import resolve_device, to_cpu, to_device
from nlpforge.errors import ConfigError
from nlpforge.models.outputs import SpanOutput, TaskOutput
from nlpforge.recipes.finetune import FinetuneArgs, finetune


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"--device cuda:1: torch sees no CUDA GPU"):
        resolve_device("cuda:1")
    with pytest.raises(ConfigError, match=r"--device 'gpu': not a device"):
        resolve_device("gpu")
    with pytest.raises(ConfigError, match=r"runs on cpu or cuda"):
        resolve_device("meta")


def test_outputs_come_back_to_the_cpu_with_every_field() -> None:
    hidden = (torch.ones(1, 2, 3), torch.zeros(1, 2, 3))
    output = to_cpu(TaskOutput(logits=torch.ones(2, 3), hidden_states=hidden))
    assert isinstance(output, TaskOutput) and output.loss is None
    assert all(t.device.type == "cpu" for t in (output.logits, *output.hidden_states))
    assert_close(output.hidden_states[1], hidden[1])
    span = to_cpu(SpanOutput(start_logits=torch.arange(4.0).view(1, 4), end_logits=torch.ones(1, 4)))
    assert span.start_logits.tolist() == [[0.0, 1.0, 2.0, 3.0]]
    batch = to_device({"input_ids": torch.ones(1, 2, dtype=torch.long), "packed": True}, torch.device("cpu"))
    assert batch["packed"] is True and batch["input_ids"].dtype == torch.long


def test_train_on_a_missing_gpu_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                                     tiny_bert_dir: Path, tmp_path: Path) -> None:
    write_classification(tmp_path / "train.tsv", 8, seed=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run_cli(monkeypatch, capsys, "train", "--task", "classify", "--model", tiny_bert_dir,
                           "--train", tmp_path / "train.tsv", "--out", tmp_path / "run", "--device", "cuda")
    assert code != 0
    assert "--device cuda: torch sees no CUDA GPU" in err.strip().splitlines()[-1]  # (earlier lines: the fixture's)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_the_gpu_matches_the_cpu(tiny_bert_dir: Path, tmp_path: Path) -> None:
    write_classification(tmp_path / "train.tsv", 64, seed=0)
    write_classification(tmp_path / "dev.tsv", 32, seed=1)
    summaries = {}
    for device in ("cpu", "cuda"):
        summaries[device] = finetune(FinetuneArgs(
            task="classify", model=str(tiny_bert_dir), train=str(tmp_path / "train.tsv"),
            eval=str(tmp_path / "dev.tsv"), out=str(tmp_path / device), epochs=2, batch_size=16,
            learning_rate=3e-3, max_length=16, progress=False, seed=3, device=device))
    assert summaries["cuda"]["best"] == pytest.approx(summaries["cpu"]["best"], abs=5.0)
    cpu, gpu = load_checkpoint(tmp_path / "cpu").model, load_checkpoint(tmp_path / "cuda").model
    for (name, ours), (_, theirs) in zip(cpu.state_dict().items(), gpu.state_dict().items(), strict=True):
        assert theirs.device.type == "cpu", name
        assert_close(ours, theirs, atol=1e-3, rtol=1e-3)
