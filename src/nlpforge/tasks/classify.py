"""Sequence classification (single sentences and sentence pairs): preprocessing, loss, decoding,
metrics. The model is ``tasks.heads.SequenceClassifier``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score
from transformers import PreTrainedTokenizerBase

from nlpforge.data.examples import TextExample

METRIC = "accuracy"  # what keep-best and early stopping watch


def encode(
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[TextExample],
    label_to_id: dict[str, int] | None,
    max_length: int,
) -> list[dict[str, Any]]:
    """Token ids (pairs as ``[CLS] a [SEP] b [SEP]``, longest side truncated first) + label ids."""
    texts = [e.text for e in examples]
    pairs = [e.text_pair or "" for e in examples] if any(e.text_pair for e in examples) else None
    encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    features = []
    for i, example in enumerate(examples):
        feature = {key: encoded[key][i] for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded}
        if label_to_id is not None and example.label is not None:
            feature["labels"] = label_to_id[example.label]
        features.append(feature)
    return features


def balanced_class_weights(label_ids: Sequence[int], num_labels: int) -> torch.Tensor:
    """(C,) weights n / (C * count_c): rare classes count as much as frequent ones in the loss."""
    counts = torch.bincount(torch.tensor(label_ids), minlength=num_labels).float().clamp(min=1)
    return len(label_ids) / (num_labels * counts)


def loss(logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of (B, C) logits against (B,) label ids, optionally class-weighted."""
    return F.cross_entropy(logits, labels, weight=class_weights)


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
