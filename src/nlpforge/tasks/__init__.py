"""Downstream tasks, one file each (``tasks/<name>.py``), and the registry: the one place that maps
a task name to its task. ``tasks/base.py`` defines what a task provides.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from nlpforge.errors import ConfigError
from nlpforge.models.bert import BertModel
from nlpforge.tasks.base import DataOptions, EncoderTask, Task
from nlpforge.tasks.classify import ClassifyTask
from nlpforge.tasks.multilabel import MultiLabelTask
from nlpforge.tasks.span_qa import SpanQATask
from nlpforge.tasks.tag import TagTask

TASKS: dict[str, type[EncoderTask]] = {
    task.name: task for task in (ClassifyTask, TagTask, SpanQATask, MultiLabelTask)
}
# Weight layout (a head of convert/bert.py) -> the model class that holds it.
HEAD_MODELS: dict[str, type[nn.Module]] = {task.head: task.model_class for task in TASKS.values()}


def get_task(name: str, settings: dict[str, Any] | None = None) -> Task:
    """The task called ``name``, with ``settings`` learnt in training (nlpforge.json ``task_settings``)."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; the tasks are: {', '.join(TASKS)}")
    task_class = TASKS[name]
    known = {field.name for field in dataclasses.fields(task_class)}
    return task_class(**{k: v for k, v in (settings or {}).items() if k in known})


def task_of(meta: dict[str, Any], head: str) -> Task | None:
    """The task of a loaded model: its nlpforge.json's, else the one its head stands for (a plain
    transformers task checkpoint); None for a bare encoder or a language model."""
    name = meta.get("task") or (head if head in TASKS else None)
    return get_task(name, meta.get("task_settings")) if name else None


def encoder_of(model: Any) -> BertModel:
    """The encoder inside a model: the model itself when it is a bare encoder, else its ``.encoder``."""
    encoder = model if isinstance(model, BertModel) else getattr(model, "encoder", None)
    if not isinstance(encoder, BertModel):
        raise ConfigError(f"{type(model).__name__} holds no encoder-family model (a BertModel, or a task model "
                          "with one as .encoder); this works on encoder-family models only")
    return encoder


def task_model_from_encoder(encoder: BertModel, task: Task, num_labels: int = 2) -> nn.Module:
    """A new model for ``task`` whose encoder starts from ``encoder``'s weights and whose head is fresh.

    A BERT (or ALBERT) pooler, when the encoder has one, initialises the classification head's ``dense``
    layer, as ``BertForSequenceClassification.from_pretrained`` does.
    """
    config = dataclasses.replace(encoder.config, num_labels=num_labels, has_pooler=False)
    model = task.model_class(config)
    weights = {k: v for k, v in encoder.state_dict().items() if not k.startswith("pooler.")}
    model.encoder.load_state_dict(weights, strict=True)
    dense = getattr(getattr(model, "head", None), "dense", None)
    if isinstance(dense, nn.Linear) and encoder.pooler is not None and config.model_type in ("bert", "albert"):
        with torch.no_grad():
            dense.weight.copy_(encoder.pooler.dense.weight)
            dense.bias.copy_(encoder.pooler.dense.bias)
    return model


__all__ = ["HEAD_MODELS", "TASKS", "DataOptions", "Task", "encoder_of", "get_task", "task_model_from_encoder",
           "task_of"]
