"""The multilabel task end to end on a tiny model: train -> eval -> predict -> compress -> serve, the
Python API, transformers loading the checkpoint, and the registry's error for an unknown task."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from fastapi.testclient import TestClient
from torch.testing import assert_close

from conftest import run_cli, save_letter_model
from nlpforge import Predictor
from nlpforge.checkpoint import load_checkpoint
from nlpforge.errors import ConfigError, InputDataError
from nlpforge.recipes.finetune import FinetuneArgs, finetune
from nlpforge.serve.app import create_app
from nlpforge.tasks import TASKS, get_task
from nlpforge.tasks.base import DataOptions
from nlpforge.tasks.multilabel import best_threshold, metrics

WORDS = "abcdefghijklmnop"
# Each trigger word turns its label on; a text may hold any of them (or none).
TRIGGERS = {"z": "sport", "y": "money", "x": "food"}


def write_multilabel(path: Path, count: int, seed: int) -> None:
    """JSON Lines ``{"text", "labels"}``: each trigger word in the text turns its label on."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 7))]
        chosen = [trigger for trigger in TRIGGERS if rng.random() < 0.4]
        for trigger in chosen:
            words.insert(rng.randrange(len(words) + 1), trigger)
        rows.append((" ".join(words), sorted(TRIGGERS[t] for t in chosen)))
    path.write_text("".join(json.dumps({"text": t, "labels": ls}) + "\n" for t, ls in rows))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("multilabel")
    save_letter_model(root / "base")
    write_multilabel(root / "train.jsonl", 300, seed=0)
    write_multilabel(root / "dev.jsonl", 60, seed=1)
    finetune(FinetuneArgs(task="multilabel", model=str(root / "base"), train=str(root / "train.jsonl"),
                          eval=str(root / "dev.jsonl"), out=str(root / "model"), epochs=15, batch_size=16,
                          learning_rate=3e-3, warmup_ratio=0.0, max_length=16, progress=False, seed=3,
                          data={"label_column": "labels"}))
    return root


def test_registry_names_every_task_and_rejects_unknown_ones() -> None:
    assert {"classify", "tag", "span_qa", "multilabel"} <= set(TASKS)
    with pytest.raises(ConfigError, match=r"unknown task 'sentiment'; the tasks are: classify, tag"):
        get_task("sentiment")
    assert get_task("multilabel", {"threshold": 0.3}).threshold == 0.3


def test_threshold_search_and_metrics() -> None:
    truth = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    probabilities = np.array([[0.3, 0.1], [0.1, 0.35], [0.4, 0.32], [0.2, 0.05]])
    assert 0.2 < best_threshold(truth, probabilities) <= 0.3  # 0.5 would predict nothing
    scores = metrics(truth, (probabilities >= 0.25).astype(int))
    assert scores["micro_f1"] == pytest.approx(100.0) and scores["subset_accuracy"] == pytest.approx(100.0)


def test_reads_jsonl_lists_and_separated_cells(tmp_path: Path) -> None:
    task = get_task("multilabel")
    (tmp_path / "a.tsv").write_text("text\tlabels\nhello\tb|a\nbye\tc\n")
    examples = task.read(tmp_path / "a.tsv", DataOptions(label_column="labels"))
    assert [e.labels for e in examples] == [["a", "b"], ["c"]]
    (tmp_path / "a.csv").write_text("text,labels\nhello,a;b\n")
    semicolons = DataOptions(label_column="labels", label_separator=";")
    assert task.read(tmp_path / "a.csv", semicolons)[0].labels == ["a", "b"]
    (tmp_path / "a.jsonl").write_text('{"text": "x", "labels": ["q", "p"]}\n{"text": "y", "labels": []}\n')
    assert [e.labels for e in task.read(tmp_path / "a.jsonl", DataOptions(label_column="labels"))] == [["p", "q"], []]
    (tmp_path / "bad.jsonl").write_text('{"text": "x", "labels": ["q"]}\n{"text": "y", "labels": 3}\n')
    with pytest.raises(InputDataError, match=r"bad.jsonl:2: field 'labels' must be a list of label names"):
        task.read(tmp_path / "bad.jsonl", DataOptions(label_column="labels"))
    examples = task.read(tmp_path / "a.jsonl", DataOptions(label_column="labels"))
    with pytest.raises(InputDataError, match=r"a.jsonl:1: unknown label 'q'"):
        task.check(examples, ["p"], tmp_path / "a.jsonl")


def test_train_saves_a_tuned_threshold_and_transformers_loads_it(trained: Path) -> None:
    meta = json.loads((trained / "model" / "nlpforge.json").read_text())
    assert meta["task"] == "multilabel" and meta["labels"] == ["food", "money", "sport"]
    assert 0.05 <= meta["task_settings"]["threshold"] <= 0.95
    assert meta["metrics"]["micro_f1"] >= 85.0
    config = json.loads((trained / "model" / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    ours = load_checkpoint(trained / "model")
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(trained / "model").eval()
    assert theirs.config.problem_type == "multi_label_classification"
    batch = ours.tokenizer(["a z b", "y x c d"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert_close(ours.model(**batch).logits, theirs(**batch).logits, atol=1e-5, rtol=1e-5)


def test_cli_eval_predict_and_python_api(trained: Path, monkeypatch, capsys) -> None:
    code, printed, err = run_cli(monkeypatch, capsys, "eval", trained / "model", "--data", trained / "dev.jsonl")
    assert code == 0, err
    scores = json.loads(printed)
    assert {"micro_f1", "macro_f1", "samples_f1"} <= set(scores) and scores["micro_f1"] >= 85.0
    (trained / "in.txt").write_text("a z b y\nc d e\n")
    code, printed, err = run_cli(monkeypatch, capsys, "predict", trained / "model", "--input", trained / "in.txt")
    assert code == 0, err
    first, second = (json.loads(line) for line in printed.splitlines())
    assert set(first["labels"]) == {"sport", "money"} and second["labels"] == []
    assert set(first["scores"]) == {"food", "money", "sport"}
    assert Predictor.load(trained / "model").predict(["x q"])[0]["labels"] == ["food"]


def test_compress_and_serve(trained: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "compressed"
    code, _printed, err = run_cli(monkeypatch, capsys, "compress", trained / "model", "--task", "multilabel",
                                 "--train", trained / "train.jsonl", "--eval", trained / "dev.jsonl", "--out", out,
                                 "--layers", "1", "--epochs", "10", "--learning-rate", "3e-3", "--max-length", "16",
                                 "--batch-size", "16", "--alpha", "0.5", "--label-column", "labels")
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["metric"] == "micro_f1"
    by_name = {stage["name"]: stage for stage in report["stages"]}
    assert by_name["student int8 onnx"]["metric"] >= 0.9 * by_name["teacher"]["metric"]
    predictor = Predictor.load(out / "student-int8-onnx")
    assert predictor.task == "multilabel" and predictor.predict(["z a"])[0]["labels"] == ["sport"]
    with TestClient(create_app(predictor)) as client:
        for _ in range(100):
            if client.get("/ready").status_code == 200:
                break
        answer = client.post("/v1/predict", json={"inputs": ["y b", {"text": "x z"}]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"] == predictor.predict(["y b", "x z"])
        assert client.post("/v1/predict", json={"inputs": [{"text": "a", "label": "b"}]}).status_code == 422


def test_a_new_head_starts_at_the_label_priors_and_may_learn_faster(tmp_path: Path) -> None:
    from nlpforge.recipes.finetune import parameter_groups
    from nlpforge.tasks import task_model_from_encoder

    save_letter_model(tmp_path / "base")
    task = get_task("multilabel")
    encoder = load_checkpoint(tmp_path / "base", head="base")
    model = task_model_from_encoder(encoder.model, task, 3)
    features = [{"labels": [1, 0, 0]}, {"labels": [1, 1, 0]}, {"labels": [0, 0, 0]}, {"labels": [1, 0, 0]}]
    task.init_head(model, features)
    probabilities = torch.sigmoid(model.head.out.bias)
    assert_close(probabilities, torch.tensor([0.75, 0.25, 1e-4]), atol=1e-6, rtol=1e-4)

    groups = parameter_groups(model, 0.01, 1e-4, 3e-3)
    head = {id(p) for p in model.head.parameters()}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    for group in groups:
        assert group["lr"] == (3e-3 if id(group["params"][0]) in head else 1e-4)
        assert all((id(p) in head) == (id(group["params"][0]) in head) for p in group["params"])
