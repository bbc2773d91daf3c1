"""Classification by cloze prompt (adapt/cloze.py): a masked-LM model fills ``{mask}`` in a template
and a verbalizer maps the words it prefers to labels. The templates and the verbalizer are the task's
settings (``nlpforge.json`` ``task_settings``); the weights are a plain masked-LM checkpoint, so
transformers loads them as ``AutoModelForMaskedLM``. Reading files, labels and requests is
classification's; models are trained by ``nlpforge fewshot --method cloze``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlpforge.adapt.cloze import collate_cloze, encode_cloze, ensemble_scores, verbalizer_token_ids
from nlpforge.data.examples import TextExample
from nlpforge.errors import ConfigError
from nlpforge.models.bert import BertForMaskedLM
from nlpforge.models.outputs import TaskOutput
from nlpforge.tasks.base import DataOptions
from nlpforge.tasks.classify import ClassifyTask, decode, metrics


@dataclass
class ClozeTask(ClassifyTask):
    """One label per text (pair), read off the masked-LM head through templates and a verbalizer."""

    name: ClassVar[str] = "cloze"
    head: ClassVar[str] = "mlm"
    model_class: ClassVar[type[nn.Module]] = BertForMaskedLM
    decoder_model_class: ClassVar[type[nn.Module] | None] = None
    finetunes: ClassVar[bool] = False  # its loss needs the verbalizer's token ids: nlpforge fewshot trains it

    templates: list[str] = field(default_factory=list)
    verbalizer: dict[str, list[str]] = field(default_factory=dict)

    def scores(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, examples: Sequence[TextExample],
               labels: Sequence[str], max_length: int, batch_size: int) -> np.ndarray:
        """(N, C) template-ensembled label log-probabilities."""
        if not self.templates:
            raise ConfigError("this cloze model has no templates in its nlpforge.json task_settings")
        label_ids = verbalizer_token_ids(tokenizer, self.verbalizer, labels)
        return ensemble_scores(model, tokenizer, self.templates, label_ids,
                               [(e.text, e.text_pair) for e in examples], max_length, batch_size)

    def encode(self, tokenizer: PreTrainedTokenizerBase, examples: Sequence[TextExample], labels: list[str] | None,
               max_length: int, data: DataOptions) -> list[dict[str, Any]]:
        """Every example under every template (training features: ``labels`` as ids)."""
        features = []
        for template in self.templates:
            for example in examples:
                feature = encode_cloze(tokenizer, template, example.text, example.text_pair, max_length)
                if labels is not None and example.label is not None:
                    feature["labels"] = labels.index(example.label)
                features.append(feature)
        return features

    def collate(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        return collate_cloze(features, pad_id)

    def evaluate(self, model: Any, tokenizer: PreTrainedTokenizerBase, examples: Sequence[TextExample],
                 labels: list[str] | None, max_length: int, batch_size: int, data: DataOptions) -> dict[str, Any]:
        labels = labels or list(self.verbalizer)
        predicted = self.scores(model, tokenizer, examples, labels, max_length, batch_size).argmax(axis=-1)
        gold = [labels.index(e.label) for e in examples]
        return {**metrics(gold, predicted.tolist()), "examples": len(examples)}

    def predict(self, model: Any, tokenizer: PreTrainedTokenizerBase, inputs: Sequence[TextExample],
                labels: list[str] | None, max_length: int, batch_size: int, data: DataOptions) -> list[dict]:
        labels = labels or list(self.verbalizer)
        return decode(self.scores(model, tokenizer, inputs, labels, max_length, batch_size), labels)

    def graph_outputs(self, output: Any) -> tuple[torch.Tensor, ...]:
        raise ConfigError("a cloze model is not exported to ONNX: its label scores come from the templates and "
                          "the verbalizer at run time; serve the checkpoint itself")

    def output_from_graph(self, values: dict[str, torch.Tensor]) -> TaskOutput:
        raise ConfigError("a cloze model has no ONNX graph")

    def distill_views(self, output: Any) -> list[torch.Tensor]:
        raise ConfigError("a cloze model cannot teach by distillation yet")
