"""Downstream tasks, one file each (``tasks/<name>.py``), and the registry: the one place that maps
a task name to its task. ``tasks/base.py`` defines what a task provides.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nlpforge.errors import ConfigError
from nlpforge.models.bert import BertModel
from nlpforge.models.gpt import GPT
from nlpforge.models.outputs import TaskOutput
from nlpforge.tasks.base import DataOptions, EncoderTask, Task
from nlpforge.tasks.classify import ClassifyTask
from nlpforge.tasks.cloze import ClozeTask
from nlpforge.tasks.multilabel import MultiLabelTask
from nlpforge.tasks.multiple_choice import MultipleChoiceTask
from nlpforge.tasks.span_qa import SpanQATask
from nlpforge.tasks.tag import TagTask

TASKS: dict[str, type[EncoderTask]] = {
    task.name: task for task in (ClassifyTask, TagTask, SpanQATask, MultiLabelTask, ClozeTask, MultipleChoiceTask)
}
# Weight layout (a head of convert/bert.py) -> the model class that holds it. A task on the masked-LM
# head (cloze) loads as the family's masked-LM model (models/), which any MLM checkpoint is.
HEAD_MODELS: dict[str, type[nn.Module]] = {task.head: task.model_class for task in TASKS.values() if task.head != "mlm"}
# The same for decoders (a head of convert/gpt.py): the tasks that also run on a GPT-2 body.
DECODER_HEAD_MODELS: dict[str, type[nn.Module]] = {
    task.head: task.decoder_model_class for task in TASKS.values() if task.decoder_model_class is not None
}
HEAD_MODELS_OF_FAMILY: dict[str, dict[str, type[nn.Module]]] = {"bert": HEAD_MODELS, "gpt": DECODER_HEAD_MODELS}


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


def decoder_of(model: Any, what: str = "this") -> GPT:
    """The decoder inside a model: the model itself when it is a bare GPT, else its ``.decoder``."""
    decoder = model if isinstance(model, GPT) else getattr(model, "decoder", None)
    if not isinstance(decoder, GPT):
        raise ConfigError(f"{type(model).__name__} holds no decoder-family (GPT-2) model; {what} works on "
                          "decoders only: start from a GPT-2 checkpoint")
    return decoder


def task_model_from_encoder(encoder: BertModel | GPT, task: Task, num_labels: int = 2,
                            pad_token_id: int | None = None) -> nn.Module:
    """A new model for ``task`` whose encoder (or GPT decoder) starts from ``encoder``'s weights and
    whose head is fresh.

    A BERT (or ALBERT) pooler, when the encoder has one, initialises the classification head's ``dense``
    layer, as ``BertForSequenceClassification.from_pretrained`` does. A decoder's config takes
    ``pad_token_id`` (the tokenizer's), by which transformers finds the last real token.
    """
    if isinstance(encoder, GPT):
        if task.decoder_model_class is None:
            raise ConfigError(f"task {task.name!r} runs on encoder-family models only, not on a decoder (GPT-2)")
        pad = pad_token_id if pad_token_id is not None else encoder.config.pad_token_id
        model = task.decoder_model_class(dataclasses.replace(encoder.config, num_labels=num_labels, pad_token_id=pad))
        model.decoder.load_state_dict(encoder.state_dict(), strict=True)
        return model
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


@dataclass
class WithLMLoss:
    """A task trained with GPT's auxiliary language-modelling loss (Radford et al. 2018):
    ``L = L_task + lm_loss_weight * L_lm``, L_lm the next-token cross-entropy over the real tokens of
    the input, which a decoder task model returns as ``lm_loss`` when given ``lm_labels``. Only the
    training loop's two calls (``model_inputs``, ``loss``) go through it; the rest is ``task``'s."""

    task: Task
    lm_loss_weight: float

    def model_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        lm_labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)  # (B, T): no padding target
        return {**self.task.model_inputs(batch), "lm_labels": lm_labels}

    def loss(self, output: TaskOutput, batch: dict[str, torch.Tensor],
             class_weights: torch.Tensor | None) -> torch.Tensor:
        return self.task.loss(output, batch, class_weights) + self.lm_loss_weight * output.lm_loss


def with_lm_loss(task: Task, model: nn.Module, lm_loss_weight: float) -> Task | WithLMLoss:
    """What the training loop calls for inputs and loss: ``task``, or with ``lm_loss_weight`` > 0 the
    task plus GPT's auxiliary LM loss (ConfigError when ``model`` is no decoder)."""
    if not lm_loss_weight:
        return task
    decoder_of(model, "--lm-loss-weight (the GPT-style auxiliary LM loss)")
    return WithLMLoss(task, lm_loss_weight)


__all__ = ["DECODER_HEAD_MODELS", "HEAD_MODELS", "HEAD_MODELS_OF_FAMILY", "TASKS", "DataOptions", "Task",
           "WithLMLoss", "decoder_of", "encoder_of", "get_task", "task_model_from_encoder", "task_of", "with_lm_loss"]
