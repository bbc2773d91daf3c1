"""train -> eval -> predict through the CLI for tag and span_qa; transformers loads the results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from torch.testing import assert_close

from conftest import run_cli, write_conll, write_squad
from nlpforge.checkpoint import load_checkpoint

WORDS = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n"]



def test_tag_train_eval_predict(tiny_bert_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    write_conll(tmp_path / "train.txt", 120, 0)
    write_conll(tmp_path / "dev.txt", 30, 1)
    out = tmp_path / "ner"
    code, _, err = run_cli(monkeypatch, capsys, "train", "--task", "tag", "--model", tiny_bert_dir, "--train",
                           tmp_path / "train.txt", "--eval", tmp_path / "dev.txt", "--out", out, "--epochs", "8",
                           "--batch-size", "16", "--learning-rate", "3e-3", "--warmup-ratio", "0", "--max-length", "16")
    assert code == 0, err
    code, printed, _ = run_cli(monkeypatch, capsys, "eval", out, "--data", tmp_path / "dev.txt")
    assert code == 0 and json.loads(printed)["f1"] >= 80.0
    (tmp_path / "in.txt").write_text("a b z y c\n")
    code, printed, _ = run_cli(monkeypatch, capsys, "predict", out, "--input", tmp_path / "in.txt")
    entities = json.loads(printed)["entities"]
    assert code == 0 and entities[0]["type"] == "PER" and entities[0]["start"] == 4
    ours = load_checkpoint(out)
    theirs = transformers.AutoModelForTokenClassification.from_pretrained(out).eval()
    batch = ours.tokenizer(["a z y b"], return_tensors="pt")
    with torch.no_grad():
        assert_close(ours.model(**batch).logits, theirs(**batch).logits, atol=1e-5, rtol=1e-5)


def test_span_qa_train_eval_predict(tiny_bert_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    write_squad(tmp_path / "train.json", 160, 0)
    write_squad(tmp_path / "dev.json", 30, 1)
    out = tmp_path / "qa"
    code, _, err = run_cli(monkeypatch, capsys, "train", "--task", "span_qa", "--model", tiny_bert_dir, "--train",
                           tmp_path / "train.json", "--eval", tmp_path / "dev.json", "--out", out, "--epochs", "10",
                           "--batch-size", "16", "--learning-rate", "3e-3", "--warmup-ratio", "0",
                           "--max-length", "24", "--doc-stride", "8")
    assert code == 0, err
    code, printed, _ = run_cli(monkeypatch, capsys, "eval", out, "--data", tmp_path / "dev.json")
    metrics = json.loads(printed)
    assert code == 0 and metrics["exact_match"] >= 60.0 and metrics["convention"].startswith("squad")
    context = "a b c d e f g h i j k l m n a b c d e f z y g h i"
    (tmp_path / "in.jsonl").write_text(json.dumps({"question": "x", "context": context}) + "\n")
    code, printed, _ = run_cli(monkeypatch, capsys, "predict", out, "--input", tmp_path / "in.jsonl")
    answer = json.loads(printed)
    assert code == 0 and set(answer) >= {"answer", "score", "start", "end"}
    assert context[answer["start"]:answer["end"]] == answer["answer"]
    # a threshold every no-answer score passes: the span is kept aside and the answer is ""
    code, printed, _ = run_cli(monkeypatch, capsys, "predict", out, "--input", tmp_path / "in.jsonl",
                               "--null-threshold", "-1e9")
    abstained = json.loads(printed)
    assert code == 0 and abstained["answer"] == "" and abstained["no_answer"] and abstained["span"] == answer["answer"]
    code, _, err = run_cli(monkeypatch, capsys, "predict", tiny_bert_dir, "--input", tmp_path / "in.jsonl",
                           "--null-threshold", "0")
    assert code == 2 and "the no-answer threshold applies to span_qa readers" in err
    ours = load_checkpoint(out)
    theirs = transformers.AutoModelForQuestionAnswering.from_pretrained(out).eval()
    batch = ours.tokenizer(["x"], ["a b z y c"], return_tensors="pt")
    with torch.no_grad():
        assert_close(ours.model(**batch).start_logits, theirs(**batch).start_logits, atol=1e-5, rtol=1e-5)


def test_span_qa_learns_its_no_answer_threshold_on_held_out_contexts(tiny_bert_dir: Path, tmp_path: Path,
                                                                     monkeypatch, capsys) -> None:
    write_squad(tmp_path / "train.json", 200, 0, unanswerable_every=3)
    write_squad(tmp_path / "dev.json", 40, 1, unanswerable_every=3)
    out = tmp_path / "qa2"
    code, _, err = run_cli(monkeypatch, capsys, "train", "--task", "span_qa", "--model", tiny_bert_dir, "--train",
                           tmp_path / "train.json", "--out", out, "--epochs", "10", "--batch-size", "16",
                           "--learning-rate", "3e-3", "--warmup-ratio", "0", "--max-length", "24", "--doc-stride", "8")
    assert code == 0, err
    threshold = json.loads((out / "nlpforge.json").read_text())["task_settings"]["null_threshold"]
    assert isinstance(threshold, float)
    code, printed, _ = run_cli(monkeypatch, capsys, "eval", out, "--data", tmp_path / "dev.json")
    metrics = json.loads(printed)
    # the learnt threshold is the one in force, and it both answers and abstains rightly
    assert code == 0 and metrics["threshold"] == pytest.approx(threshold)
    assert metrics["HasAns_f1"] >= 60.0 and metrics["NoAns_f1"] >= 60.0, metrics
    # --null-threshold still overrides it
    code, printed, _ = run_cli(monkeypatch, capsys, "eval", out, "--data", tmp_path / "dev.json",
                               "--null-threshold", "1e9")
    assert code == 0 and json.loads(printed)["NoAns_f1"] == 0.0


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("text\tlabel\nhello\t1\n", ["--label-column", "sentiment"], "sentiment"),
        ("text\tlabel\n\t1\n", [], "empty"),
    ],
)
def test_train_input_errors_exit_2(tiny_bert_dir: Path, tmp_path: Path, content: str, args: list, message: str,
                                   monkeypatch, capsys) -> None:
    (tmp_path / "train.tsv").write_text(content)
    code, _, err = run_cli(monkeypatch, capsys, "train", "--task", "classify", "--model", tiny_bert_dir,
                           "--train", tmp_path / "train.tsv", "--out", tmp_path / "o", *args)
    assert code == 2 and message in err and err.count("\n") == 1


def test_unknown_eval_label_exit_2(tiny_bert_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "train.tsv").write_text("text\tlabel\na b\t0\nc d\t1\n")
    (tmp_path / "dev.tsv").write_text("text\tlabel\na b\t0\nc d\t7\n")
    code, _, err = run_cli(monkeypatch, capsys, "train", "--task", "classify", "--model", tiny_bert_dir,
                           "--train", tmp_path / "train.tsv", "--eval", tmp_path / "dev.tsv", "--out", tmp_path / "o")
    assert code == 2 and "dev.tsv:3: unknown label '7'" in err


def test_yaml_config_with_flag_override(tiny_bert_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "train.tsv").write_text("text\tlabel\n" + "a b\t0\nc d\t1\n" * 4)
    (tmp_path / "run.yaml").write_text(f"task: classify\nmodel: {tiny_bert_dir}\ntrain: {tmp_path / 'train.tsv'}\n"
                                       f"out: {tmp_path / 'o'}\nepochs: 5\nbatch_size: 4\n")
    code, printed, err = run_cli(monkeypatch, capsys, "train", "--config", tmp_path / "run.yaml", "--epochs", "1")
    assert code == 0, err
    assert json.loads(printed)["steps"] == 2  # 8 examples / batch 4, one epoch: the flag won
