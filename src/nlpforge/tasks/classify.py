"""Sequence classification (single sentences and sentence pairs): one label per text.

The head follows the Hugging Face ``*ForSequenceClassification`` layout of each model_type, so a
fine-tuned checkpoint loads in ``transformers.AutoModelForSequenceClassification``. Encoders read
the first token; a decoder (GPT-2) reads the last real one, as ``GPT2ForSequenceClassification``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlpforge.config import ModelConfig
from nlpforge.data.examples import TextExample
from nlpforge.data.tabular import check_labels, label_names_of, read_text_examples
from nlpforge.embed import pool
from nlpforge.errors import InputDataError
from nlpforge.models.gpt import GPT, next_token_loss
from nlpforge.models.outputs import TaskOutput
from nlpforge.tasks.base import (
    DataOptions,
    EncoderTask,
    SoftmaxLogitsTask,
    balanced_class_weights,
    sequence_logits,
    text_record,
)
from nlpforge.tasks.heads import ClassificationHead, encoder_without_pooler


def loss(logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of (B, C) logits against (B,) label ids, optionally class-weighted."""
    return F.cross_entropy(logits, labels, weight=class_weights)


class SequenceClassifier(nn.Module):
    """Single sentences or sentence pairs -> (B, C) class logits (from the first token, or the mean of
    the real tokens with ``config.classifier_pooling == "mean"``)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder_without_pooler(config)
        self.head = ClassificationHead(config)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        head_mask: Sequence[torch.Tensor] | torch.Tensor | None = None,  # per layer (A_layer,) gates
        packed: bool = False,  # inference on real tokens only (models/bert.py)
    ) -> TaskOutput:
        encoded = self.encoder(input_ids, attention_mask, token_type_ids, output_hidden_states, output_attentions,
                               head_mask=head_mask, packed=packed)
        hidden = encoded.last_hidden_state  # (B, T, H)
        mask = attention_mask if attention_mask is not None else torch.ones(hidden.shape[:2], device=hidden.device)
        logits = self.head(pool(hidden, mask, self.config.classifier_pooling))  # (B, C)
        return TaskOutput(logits, loss(logits, labels) if labels is not None else None,
                          encoded.hidden_states, encoded.attentions)


class DecoderSequenceClassifier(nn.Module):
    """A GPT-2 body -> (B, C) class logits from the last real token (right padding), with a bias-free
    ``head`` as ``GPT2ForSequenceClassification``'s ``score``. Given ``lm_labels`` it also returns the
    body's next-token loss over the input (``lm_loss``), the auxiliary objective of GPT fine-tuning."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.decoder = GPT(config)
        self.head = nn.Linear(config.hidden_size, config.num_labels, bias=False)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,  # unused: GPT-2 has no segment embeddings
        labels: torch.Tensor | None = None,
        lm_labels: torch.Tensor | None = None,  # (B, T) next-token targets, -100 where none
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        packed: bool = False,  # unused: right padding never reaches a causal model's real tokens
    ) -> TaskOutput:
        body = self.decoder.body(input_ids, attention_mask, output_hidden_states=output_hidden_states,
                                 output_attentions=output_attentions)
        hidden = body.last_hidden_state  # (B, T, H)
        B, T = input_ids.shape
        # The rightmost real token (transformers takes the rightmost non-pad id: the same on right padding).
        real = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        last = (torch.arange(T, device=real.device) * real).argmax(dim=-1)  # (B,)
        logits = self.head(hidden[torch.arange(B, device=hidden.device), last])  # (B, C)
        lm_loss = next_token_loss(self.decoder.lm_logits(hidden), lm_labels) if lm_labels is not None else None
        return TaskOutput(logits, loss(logits, labels) if labels is not None else None, body.hidden_states,
                          body.attentions, lm_loss)


def encode(
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[TextExample],
    label_to_id: dict[str, int] | None,
    max_length: int,
    prefix: str = "",
) -> list[dict[str, Any]]:
    """Token ids (pairs as ``[CLS] a [SEP] b [SEP]``, longest side truncated first) + label ids.
    ``prefix`` goes in front of every (first) text: what the backbone was trained with (backbone_inputs.py)."""
    texts = [prefix + e.text for e in examples]
    pairs = [e.text_pair or "" for e in examples] if any(e.text_pair for e in examples) else None
    encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    features = []
    for i, example in enumerate(examples):
        feature = {key: encoded[key][i] for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded}
        if label_to_id is not None and example.label is not None:
            feature["labels"] = label_to_id[example.label]
        features.append(feature)
    return features


def metrics(true_ids: Sequence[int], predicted_ids: Sequence[int]) -> dict[str, float]:
    """Accuracy and macro-F1, as percentages."""
    return {
        "accuracy": 100.0 * accuracy_score(true_ids, predicted_ids),
        "macro_f1": 100.0 * f1_score(true_ids, predicted_ids, average="macro", zero_division=0),
    }


def decode(logits: np.ndarray, labels: Sequence[str]) -> list[dict[str, Any]]:
    """(N, C) logits -> per example the best label, its probability and every label's probability."""
    probabilities = torch.from_numpy(logits).float().softmax(dim=-1).numpy()
    return [
        {"label": labels[int(row.argmax())], "score": float(row.max()),
         "scores": {label: float(p) for label, p in zip(labels, row, strict=True)}}
        for row in probabilities
    ]


@dataclass
class ClassifyTask(SoftmaxLogitsTask, EncoderTask):
    """One label per text or text pair: softmax + cross-entropy; accuracy and macro-F1."""

    name: ClassVar[str] = "classify"
    head: ClassVar[str] = "classify"
    model_class: ClassVar[type[nn.Module]] = SequenceClassifier
    decoder_model_class: ClassVar[type[nn.Module] | None] = DecoderSequenceClassifier
    metric: ClassVar[str] = "accuracy"
    output_names: ClassVar[tuple[str, ...]] = ("logits",)
    warmup_input: ClassVar[Any] = "warm up"
    input_schema: ClassVar[dict[str, Any]] = {"anyOf": [
        {"type": "string"},
        {"type": "object", "required": ["text"], "additionalProperties": False,
         "properties": {"text": {"type": "string"}, "text_pair": {"type": "string"}}}]}

    def read(self, path: str | Path, data: DataOptions) -> list[TextExample]:
        return read_text_examples(path, data.text_column, data.text_pair_column, data.label_column,
                                  encoding=data.encoding)

    def label_names(self, examples: Sequence[TextExample], existing: list[str] | None) -> list[str]:
        found = label_names_of(examples)
        if not found:
            raise InputDataError("the training file has no labels; check --label-column")
        return existing or found

    def check(self, examples: Sequence[TextExample], labels: list[str] | None, path: str | Path) -> None:
        check_labels(list(examples), labels or [], path)

    def encode(self, tokenizer: PreTrainedTokenizerBase, examples: Sequence[TextExample], labels: list[str] | None,
               max_length: int, data: DataOptions) -> list[dict[str, Any]]:
        label_to_id = {label: i for i, label in enumerate(labels)} if labels is not None else None
        return encode(tokenizer, examples, label_to_id, max_length, data.text_prefix or "")

    def collate(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        batch = super().collate(features, pad_id)
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in features])  # (B,)
        return batch

    def loss(self, output: TaskOutput, batch: dict[str, torch.Tensor],
             class_weights: torch.Tensor | None) -> torch.Tensor:
        return loss(output.logits, batch["labels"], class_weights)

    def class_weights(self, features: Sequence[dict[str, Any]], num_labels: int) -> torch.Tensor:
        return balanced_class_weights([f["labels"] for f in features], num_labels)

    def evaluate(self, model: Any, tokenizer: PreTrainedTokenizerBase, examples: Sequence[TextExample],
                 labels: list[str] | None, max_length: int, batch_size: int, data: DataOptions) -> dict[str, Any]:
        features = self.encode(tokenizer, examples, labels, max_length, data)
        predicted = sequence_logits(model, features, batch_size, tokenizer.pad_token_id).argmax(axis=-1)
        return {**metrics([f["labels"] for f in features], predicted.tolist()), "examples": len(features)}

    def parse_input(self, record: Any, where: str) -> TextExample:
        values = text_record(record, where, ("text",), ("text_pair",))
        return TextExample(values["text"], values.get("text_pair"), None, 0)

    def predict(self, model: Any, tokenizer: PreTrainedTokenizerBase, inputs: Sequence[TextExample],
                labels: list[str] | None, max_length: int, batch_size: int, data: DataOptions) -> list[dict]:
        features = self.encode(tokenizer, inputs, None, max_length, data)
        return decode(sequence_logits(model, features, batch_size, tokenizer.pad_token_id), labels or [])
