"""`compress` leaves each stage's own measured metrics in that stage's nlpforge.json."""

from __future__ import annotations

import json
from pathlib import Path

import transformers

from conftest import tiny_hf_model, write_classification
from nlpforge.recipes.compress import CompressArgs, compress
from nlpforge.recipes.finetune import FinetuneArgs, finetune


def test_each_stage_carries_its_own_metrics(tmp_path: Path) -> None:
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz"]
    tiny_hf_model("BertModel").save_pretrained(tmp_path / "base")
    transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}).save_pretrained(tmp_path / "base")
    write_classification(tmp_path / "train.tsv", 64, seed=0)
    write_classification(tmp_path / "dev.tsv", 40, seed=1)
    finetune(FinetuneArgs(task="classify", model=str(tmp_path / "base"), train=str(tmp_path / "train.tsv"),
                          eval=str(tmp_path / "dev.tsv"), out=str(tmp_path / "teacher"), epochs=2, batch_size=16,
                          learning_rate=3e-3, warmup_ratio=0.0, max_length=16, progress=False, seed=3))
    teacher_meta = (tmp_path / "teacher" / "nlpforge.json").read_text()
    report = compress(CompressArgs(teacher=str(tmp_path / "teacher"), task="classify",
                                   train=str(tmp_path / "train.tsv"), eval=str(tmp_path / "dev.tsv"),
                                   out=str(tmp_path / "out"), layers=1, epochs=1, batch_size=16,
                                   learning_rate=3e-3, max_length=16, progress=False))
    stages = {stage["name"]: stage for stage in report["stages"]}
    assert set(stages) == {"teacher", "student", "student int8 torch", "student onnx", "student int8 onnx"}
    for name, stage in stages.items():
        meta = json.loads((Path(stage["path"]) / "nlpforge.json").read_text())
        if name == "teacher":  # the teacher directory is the caller's: left as it was
            assert (tmp_path / "teacher" / "nlpforge.json").read_text() == teacher_meta
        else:
            assert meta["metrics"] == stage["metrics"] and meta["metrics_eval"] == str(tmp_path / "dev.tsv"), name
    assert json.loads((tmp_path / "out" / "student-int8-torch" / "nlpforge.json").read_text())["precision"] == (
        "int8-torch-dynamic")
