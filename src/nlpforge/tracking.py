"""Experiment tracking: ``--track mlflow`` logs a run's parameters, per-step metrics and final
artifact to MLflow; ``--track none`` (the default) logs nothing beyond ``metrics.jsonl``.

The MLflow store is ``MLFLOW_TRACKING_URI`` when set (a tracking server, or any store URI), else
a local ``mlruns/`` folder in the working directory (MLflow's file store, which MLflow 3 keeps in
maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE``; open it with ``mlflow ui --backend-store-uri
./mlruns``). The experiment is ``MLFLOW_EXPERIMENT_NAME`` or ``nlpforge``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nlpforge.errors import ConfigError

TRACKERS = ("none", "mlflow")
DEFAULT_STORE = "mlruns"


def flat_numbers(record: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a (nested) record, named ``parent/child``: ``{"eval": {"f1": 90}}`` ->
    ``{"eval/f1": 90.0}``. Booleans and strings are left out."""
    numbers: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            numbers.update(flat_numbers(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers[name] = float(value)
    return numbers


class NoTracker:
    """``--track none``: every call does nothing."""

    def log_metrics(self, record: Mapping[str, Any], step: int) -> None:
        return None

    def log_artifact(self, directory: str | os.PathLike[str]) -> None:
        return None

    def end(self, failed: bool = False) -> None:
        return None


class MlflowTracker:
    """One MLflow run: parameters at the start, metrics per step, the artifact directory at the end."""

    def __init__(self, run_name: str, params: Mapping[str, Any]) -> None:
        try:
            import mlflow
        except ImportError:
            raise ConfigError("--track mlflow needs MLflow: pip install mlflow-skinny (or mlflow)") from None
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri(Path(DEFAULT_STORE).resolve().as_uri())
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "nlpforge"))
        self.mlflow = mlflow
        self.run = mlflow.start_run(run_name=run_name)
        # MLflow caps a parameter value at 6,000 characters; nested values are logged as their text.
        mlflow.log_params({key: str(value)[:6000] for key, value in params.items()})

    def log_metrics(self, record: Mapping[str, Any], step: int) -> None:
        numbers = {key: value for key, value in flat_numbers(record).items() if key not in ("step", "epoch")}
        if numbers:
            self.mlflow.log_metrics({key.replace("/", "_"): value for key, value in numbers.items()}, step=step)

    def log_artifact(self, directory: str | os.PathLike[str]) -> None:
        """The model directory (training state such as resume/ left out)."""
        directory = Path(directory)
        for path in sorted(directory.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                self.mlflow.log_artifact(str(path), artifact_path=directory.name)

    def end(self, failed: bool = False) -> None:
        self.mlflow.end_run(status="FAILED" if failed else "FINISHED")


Tracker = NoTracker | MlflowTracker


def start_tracking(kind: str, run_name: str, params: Mapping[str, Any]) -> Tracker:
    """A tracker for ``--track KIND``: ``none`` or ``mlflow``."""
    if kind not in TRACKERS:
        raise ConfigError(f"--track {kind!r}: choose one of {', '.join(TRACKERS)}")
    return MlflowTracker(run_name, params) if kind == "mlflow" else NoTracker()
