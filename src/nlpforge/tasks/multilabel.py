"""Multi-label classification: any number of labels per text (topics, intents, relation types).

One sigmoid per label over the sequence-classification head (the ``*ForSequenceClassification``
layout with ``problem_type: multi_label_classification``, so transformers loads the checkpoint and
computes the same logits), binary cross-entropy, and a decision threshold tuned for micro-F1 on a
held-out slice of the training data and saved with the checkpoint (``task_settings``).

Data: JSON Lines with a list of label names under ``--label-column`` (``{"text": ..., "label":
["a", "b"]}``), or TSV/CSV with the labels of a row joined by ``--label-separator`` (default ``|``).
An empty list (or an empty cell between separators) means "no label applies".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlpforge.data.examples import TextExample
from nlpforge.data.tabular import read_text_examples
from nlpforge.data.text import read_text
from nlpforge.errors import InputDataError
from nlpforge.models.outputs import TaskOutput
from nlpforge.tasks.base import DataOptions, EncoderTask, sequence_logits, text_record
from nlpforge.tasks.classify import SequenceClassifier, encode

THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.025), 3)  # the grid ``tune`` searches


@dataclass
class MultiLabelExample:
    """A text (or pair) and its labels (``None`` when the file was read without a label column)."""

    text: str
    text_pair: str | None
    labels: list[str] | None
    line: int


def loss(logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy of (B, C) logits against (B, C) 0/1 targets, mean over B x C."""
    return F.binary_cross_entropy_with_logits(logits, targets.float(), pos_weight=pos_weight)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def multi_hot(examples: Sequence[MultiLabelExample], labels: Sequence[str]) -> np.ndarray:
    """(N, C) 0/1 matrix of the examples' labels."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(examples), len(labels)), dtype=np.int64)
    for row, example in enumerate(examples):
        for label in example.labels or []:
            matrix[row, index[label]] = 1
    return matrix


def metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Micro-, macro- and per-example (samples) F1 and exact-set accuracy of (N, C) 0/1 matrices, in %."""
    scores = {f"{average}_f1": 100.0 * f1_score(truth, predicted, average=average, zero_division=0)
              for average in ("micro", "macro", "samples")}
    return {**scores, "subset_accuracy": 100.0 * float((truth == predicted).all(axis=1).mean())}


def best_threshold(truth: np.ndarray, probabilities: np.ndarray) -> float:
    """The grid threshold with the best micro-F1 on (N, C) truth (ties: the one nearest 0.5)."""
    scored = [(f1_score(truth, probabilities >= t, average="micro", zero_division=0), -abs(t - 0.5), float(t))
              for t in THRESHOLDS]
    return max(scored)[2]


@dataclass
class MultiLabelTask(EncoderTask):
    """Several labels per text: sigmoid + binary cross-entropy; micro/macro/samples F1."""

    threshold: float = 0.5  # a label is predicted when its probability reaches this

    name: ClassVar[str] = "multilabel"
    head: ClassVar[str] = "classify"
    model_class: ClassVar[type[nn.Module]] = SequenceClassifier
    metric: ClassVar[str] = "micro_f1"
    output_names: ClassVar[tuple[str, ...]] = ("logits",)
    warmup_input: ClassVar[Any] = "warm up"
    input_schema: ClassVar[dict[str, Any]] = {"anyOf": [
        {"type": "string"},
        {"type": "object", "required": ["text"], "additionalProperties": False,
         "properties": {"text": {"type": "string"}, "text_pair": {"type": "string"}}}]}
    hf_config_fields: ClassVar[dict[str, Any]] = {"problem_type": "multi_label_classification"}
    heldout_share: ClassVar[float] = 0.1

    # ----------------------------------------------------------------------------------- data

    def read(self, path: str | Path, data: DataOptions) -> list[MultiLabelExample]:
        texts = read_text_examples(path, data.text_column, data.text_pair_column, None, encoding=data.encoding)
        if data.label_column is None:
            return [MultiLabelExample(e.text, e.text_pair, None, e.line) for e in texts]
        if Path(path).suffix.lower() in (".jsonl", ".json"):
            lines = read_text(path, data.encoding).split("\n")
            labels = [self._json_labels(lines[e.line - 1], data.label_column, path, e.line) for e in texts]
        else:
            cells = read_text_examples(path, data.text_column, None, data.label_column, encoding=data.encoding)
            labels = [self._split(e.label or "", data.label_separator) for e in cells]
        return [MultiLabelExample(e.text, e.text_pair, found, e.line)
                for e, found in zip(texts, labels, strict=True)]

    @staticmethod
    def _split(cell: str, separator: str) -> list[str]:
        return sorted({part.strip() for part in cell.split(separator) if part.strip()})

    @staticmethod
    def _json_labels(line: str, field: str | int, path: str | Path, number: int) -> list[str]:
        value = json.loads(line).get(field)
        if value is None:
            raise InputDataError(f"{path}:{number}: no field {field!r}; pass --label-column with the field "
                                 "that holds the list of labels")
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) and str(v).strip() for v in value):
            raise InputDataError(f"{path}:{number}: field {field!r} must be a list of label names, "
                                 f'e.g. ["sports", "finance"]')
        return sorted({str(v).strip() for v in value})

    def label_names(self, examples: Sequence[MultiLabelExample], existing: list[str] | None) -> list[str]:
        found = sorted({label for e in examples for label in e.labels or []})
        if not found and not existing:
            raise InputDataError("the training file has no labels; check --label-column and --label-separator")
        return existing or found

    def check(self, examples: Sequence[MultiLabelExample], labels: list[str] | None, path: str | Path) -> None:
        known = set(labels or [])
        for example in examples:
            unknown = sorted(set(example.labels or []) - known)
            if unknown:
                raise InputDataError(f"{path}:{example.line}: unknown label {unknown[0]!r}; the model knows: "
                                     f"{', '.join(labels or [])}")

    def encode(self, tokenizer: PreTrainedTokenizerBase, examples: Sequence[MultiLabelExample],
               labels: list[str] | None, max_length: int, data: DataOptions) -> list[dict[str, Any]]:
        texts = [TextExample(e.text, e.text_pair, None, e.line) for e in examples]
        features = encode(tokenizer, texts, None, max_length)
        if labels is not None and examples and examples[0].labels is not None:
            for feature, targets in zip(features, multi_hot(examples, labels).tolist(), strict=True):
                feature["labels"] = targets  # (C,) 0/1
        return features

    def collate(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        batch = super().collate(features, pad_id)
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.float32)  # (B, C)
        return batch

    # ------------------------------------------------------------------------------- training

    def loss(self, output: TaskOutput, batch: dict[str, torch.Tensor],
             class_weights: torch.Tensor | None) -> torch.Tensor:
        return loss(output.logits, batch["labels"], class_weights)

    def class_weights(self, features: Sequence[dict[str, Any]], num_labels: int) -> torch.Tensor:
        """(C,) positive weights negatives / positives per label (1 for labels seen on most examples)."""
        targets = torch.tensor([f["labels"] for f in features], dtype=torch.float32)  # (N, C)
        positives = targets.sum(dim=0).clamp(min=1)
        return ((len(features) - positives) / positives).clamp(min=1.0)

    def init_head(self, model: nn.Module, features: Sequence[dict[str, Any]]) -> None:
        """Start each label's output bias at its log-odds on the training features (the prior).

        A fresh head predicts every label at probability 0.5, while a label is usually rare (DuIE:
        1.4 of 48 per sentence). Starting at 0.5, the first hundreds of steps go into pushing every
        output down, and the encoder's features are bent to carry that constant instead of the
        input (the loss stalls at the prior's entropy). Starting at the prior, the gradients carry
        only what distinguishes the examples (the focal-loss paper's initialisation).
        """
        if not features:
            return
        targets = torch.tensor([f["labels"] for f in features], dtype=torch.float64)  # (N, C)
        prior = targets.mean(dim=0).clamp(1e-4, 1 - 1e-4)
        with torch.no_grad():
            model.head.out.bias.copy_(torch.log(prior / (1 - prior)).float())

    def tune(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, heldout: Sequence[MultiLabelExample],
             labels: list[str] | None, max_length: int, batch_size: int, data: DataOptions) -> MultiLabelTask:
        """This task with the threshold of best micro-F1 on ``heldout`` (unchanged when it is empty)."""
        if not heldout or not labels:
            return self
        probabilities = self.probabilities(model, tokenizer, heldout, max_length, batch_size)
        return replace(self, threshold=best_threshold(multi_hot(heldout, labels), probabilities))

    # ------------------------------------------------------------------ evaluation, prediction

    def probabilities(self, model: Any, tokenizer: PreTrainedTokenizerBase,
                      examples: Sequence[MultiLabelExample | TextExample], max_length: int,
                      batch_size: int) -> np.ndarray:
        """(N, C) sigmoid probabilities."""
        texts = [TextExample(e.text, e.text_pair, None, e.line) for e in examples]
        features = encode(tokenizer, texts, None, max_length)
        return sigmoid(sequence_logits(model, features, batch_size, tokenizer.pad_token_id))

    def evaluate(self, model: Any, tokenizer: PreTrainedTokenizerBase, examples: Sequence[MultiLabelExample],
                 labels: list[str] | None, max_length: int, batch_size: int, data: DataOptions) -> dict[str, Any]:
        probabilities = self.probabilities(model, tokenizer, examples, max_length, batch_size)
        predicted = (probabilities >= self.threshold).astype(np.int64)
        return {**metrics(multi_hot(examples, labels or []), predicted), "threshold": self.threshold,
                "examples": len(examples)}

    def parse_input(self, record: Any, where: str) -> TextExample:
        values = text_record(record, where, ("text",), ("text_pair",))
        return TextExample(values["text"], values.get("text_pair"), None, 0)

    def predict(self, model: Any, tokenizer: PreTrainedTokenizerBase, inputs: Sequence[TextExample],
                labels: list[str] | None, max_length: int, batch_size: int, data: DataOptions) -> list[dict]:
        """Per input: the labels at or above the threshold (most probable first) and every label's probability."""
        names = labels or []
        probabilities = self.probabilities(model, tokenizer, inputs, max_length, batch_size)
        return [{"labels": [names[i] for i in np.argsort(-row, kind="stable") if row[i] >= self.threshold],
                 "scores": {name: float(p) for name, p in zip(names, row, strict=True)}}
                for row in probabilities]

    # ---------------------------------------------------------------- export, distillation

    def output_from_graph(self, values: dict[str, torch.Tensor]) -> TaskOutput:
        return TaskOutput(values["logits"])

    def distill_views(self, output: TaskOutput) -> list[torch.Tensor]:
        """(B, C, 2) logits [0, z]: a softmax over the last axis is (1 - sigmoid(z), sigmoid(z)), so the
        softmax-based distillation loss distils each label's binary distribution."""
        return [torch.stack([torch.zeros_like(output.logits), output.logits], dim=-1)]

    def distill_gold(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return batch["labels"].long()  # (B, C) 0/1: class ids of each label's binary distribution
