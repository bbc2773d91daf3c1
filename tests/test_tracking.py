"""--track mlflow: a fine-tuning run logs its parameters, per-step metrics and model to a local store."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli, write_classification
from nlpforge.tracking import flat_numbers, start_tracking


def test_flat_numbers_keeps_numeric_leaves() -> None:
    record = {"step": 3, "eval": {"f1": 90, "convention": "squad"}, "ok": True, "loss": 0.5}
    assert flat_numbers(record) == {"step": 3.0, "eval/f1": 90.0, "loss": 0.5}


def test_unknown_tracker_is_a_clear_error() -> None:
    from nlpforge.errors import ConfigError

    with pytest.raises(ConfigError, match="--track 'wandb': choose one of none, mlflow"):
        start_tracking("wandb", "run", {})


def test_train_with_mlflow_logs_params_metrics_and_model(tiny_bert_dir: Path, tmp_path: Path, monkeypatch,
                                                         capsys) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    write_classification(tmp_path / "train.tsv", 64, 0)
    write_classification(tmp_path / "dev.tsv", 16, 1)
    code, _, err = run_cli(monkeypatch, capsys, "train", "--task", "classify", "--model", tiny_bert_dir,
                           "--train", tmp_path / "train.tsv", "--eval", tmp_path / "dev.tsv", "--out", tmp_path / "m",
                           "--epochs", "2", "--batch-size", "16", "--log-every", "1", "--track", "mlflow")
    assert code == 0, err
    assert (tmp_path / "m" / "metrics.jsonl").is_file()  # metrics.jsonl stays
    client = mlflow.tracking.MlflowClient((tmp_path / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("nlpforge")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["task"] == "classify" and run.data.params["epochs"] == "2.0"
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 8  # 64 examples / 16, 2 epochs
    assert [m.step for m in client.get_metric_history(run.info.run_id, "eval_accuracy")] == [4, 8]
    logged = {artifact.path for artifact in client.list_artifacts(run.info.run_id, "m")}
    assert {"m/model.safetensors", "m/nlpforge.json", "m/config.json"} <= logged


def test_pretrain_with_mlflow_logs_params_and_perplexity(tiny_bert_dir: Path, tmp_path: Path, monkeypatch,
                                                         capsys) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("aa ae ai ao au ay ar as at .\n" * 200)
    code, _, err = run_cli(monkeypatch, capsys, "pretrain", "--objective", "mlm", "--model", tiny_bert_dir,
                           "--corpus", corpus, "--out", tmp_path / "p", "--max-steps", "4", "--eval-every", "2",
                           "--block-size", "16", "--batch-size", "4", "--log-every", "1", "--track", "mlflow",
                           "--no-progress")
    assert code == 0, err
    client = mlflow.tracking.MlflowClient((tmp_path / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("nlpforge").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["objective"] == "mlm"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "eval_perplexity")] == [0, 2, 4]
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 4
