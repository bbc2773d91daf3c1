"""Downstream tasks: one file per task (preprocessing, decoding, metric), models in heads.py."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from nlpforge.models.bert import BertModel
from nlpforge.tasks.heads import SequenceClassifier, SpanExtractor, TokenTagger

# head name -> task model class (the head names of convert/bert.py's TASK_HEADS).
TASK_MODELS: dict[str, type[nn.Module]] = {
    "classify": SequenceClassifier,
    "tag": TokenTagger,
    "span_qa": SpanExtractor,
}


def task_model_from_encoder(encoder: BertModel, head: str, num_labels: int = 2) -> nn.Module:
    """A new task model whose encoder starts from ``encoder``'s weights and whose head is fresh.

    A BERT pooler, when the encoder has one, initialises the classification head's ``dense``
    layer, as ``BertForSequenceClassification.from_pretrained`` does.
    """
    config = dataclasses.replace(encoder.config, num_labels=num_labels, has_pooler=False)
    model = TASK_MODELS[head](config)
    weights = {k: v for k, v in encoder.state_dict().items() if not k.startswith("pooler.")}
    model.encoder.load_state_dict(weights, strict=True)
    if head == "classify" and encoder.pooler is not None and config.model_type == "bert":
        with torch.no_grad():
            model.head.dense.weight.copy_(encoder.pooler.dense.weight)
            model.head.dense.bias.copy_(encoder.pooler.dense.bias)
    return model
