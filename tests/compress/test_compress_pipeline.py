"""`nlpforge compress` end to end on a tiny teacher: every stage written, loadable and measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import run_cli, save_letter_model, write_classification
from nlpforge.artifacts import load_artifact
from nlpforge.recipes.finetune import FinetuneArgs, finetune


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compress")
    save_letter_model(root / "base")
    write_classification(root / "train.tsv", 96, seed=0)
    write_classification(root / "dev.tsv", 40, seed=1)
    finetune(FinetuneArgs(task="classify", model=str(root / "base"), train=str(root / "train.tsv"),
                          eval=str(root / "dev.tsv"), out=str(root / "teacher"), epochs=6, batch_size=16,
                          learning_rate=3e-3, warmup_ratio=0.0, max_length=16, progress=False, seed=3))
    return root



def test_compress_writes_every_stage_and_a_report(teacher: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "compressed"
    code, printed, err = run_cli(monkeypatch, capsys, "compress", teacher / "teacher", "--task", "classify",
                                 "--train", teacher / "train.tsv", "--eval", teacher / "dev.tsv", "--out", out,
                                 "--layers", "1", "--prune-heads", "1", "--epochs", "4", "--learning-rate", "3e-3",
                                 "--max-length", "16", "--batch-size", "16")
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    names = [stage["name"] for stage in report["stages"]]
    assert names == ["teacher", "student", "pruned", "student int8 torch", "student onnx", "student int8 onnx"]
    assert (out / "report.png").stat().st_size > 1000 and "| teacher |" in printed
    teacher_metric = report["stages"][0]["metric"]
    for stage in report["stages"]:
        artifact = load_artifact(stage["path"])
        model, tokenizer = artifact.model, artifact.tokenizer
        assert tokenizer is not None and stage["size_bytes"] > 0
        assert stage["latency_ms_batch1"]["p95"] >= stage["latency_ms_batch1"]["p50"] > 0
        assert stage["throughput_batch32"] > 0
    student = next(s for s in report["stages"] if s["name"] == "student")
    assert student["metric"] >= 0.8 * teacher_metric
    pruned_config = json.loads((out / "pruned" / "config.json").read_text())
    assert sum(pruned_config["nlpforge_layer_heads"]) == 3  # 4 heads in the 1-layer student, 1 removed
    onnx, int8 = (next(s for s in report["stages"] if s["name"] == n) for n in ("student onnx", "student int8 onnx"))
    assert int8["size_bytes"] < onnx["size_bytes"]
    with torch.no_grad():
        artifact = load_artifact(out / "student-int8-onnx")
        model, tokenizer = artifact.model, artifact.tokenizer
        batch = tokenizer(["a b z", "c d"], padding=True, return_tensors="pt")
        assert model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).logits.shape == (2, 2)


def test_student_deeper_than_teacher_is_a_clear_error(teacher: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    code, _, err = run_cli(monkeypatch, capsys, "compress", teacher / "teacher", "--task", "classify",
                           "--train", teacher / "train.tsv", "--eval", teacher / "dev.tsv", "--out", tmp_path / "o",
                           "--layers", "5")
    assert code == 2 and "cannot be deeper than the teacher (2 layers)" in err


def test_wrong_task_for_the_teacher(teacher: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    code, _, err = run_cli(monkeypatch, capsys, "compress", teacher / "teacher", "--task", "tag",
                           "--train", teacher / "train.tsv", "--eval", teacher / "dev.tsv", "--out", tmp_path / "o")
    assert code == 2 and "fine-tune it for 'tag' first" in err


def test_select_eval_picks_the_student_on_its_own_file(teacher: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    write_classification(tmp_path / "heldout.tsv", 24, seed=5)
    out = tmp_path / "compressed"
    code, _, err = run_cli(monkeypatch, capsys, "compress", teacher / "teacher", "--task", "classify",
                           "--train", teacher / "train.tsv", "--eval", teacher / "dev.tsv", "--out", out,
                           "--select-eval", tmp_path / "heldout.tsv", "--layers", "1", "--epochs", "2",
                           "--quantize", "none", "--max-length", "16", "--max-grad-norm", "0")
    assert code == 0, err
    evals = [json.loads(line)["eval"] for line in (out / "student" / "metrics.jsonl").read_text().splitlines()
             if "eval" in json.loads(line)]
    assert [e["examples"] for e in evals] == [24, 24]  # epochs judged on the held-out file
    report = json.loads((out / "report.json").read_text())
    assert report["eval_examples"] == 40 and report["settings"]["select_eval"].endswith("heldout.tsv")
