"""Task models: the encoder of models/bert.py plus one small head each.

Head layouts follow the Hugging Face classes of each model_type, so a fine-tuned checkpoint loads
in ``transformers.AutoModelFor{SequenceClassification,TokenClassification,QuestionAnswering}``
(the key maps are in convert/bert.py). The encoder never has its own pooler here: BERT's pooler
is the classification head's ``dense`` layer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nlpforge.config import ModelConfig
from nlpforge.models.bert import BertModel
from nlpforge.models.outputs import SpanOutput, TaskOutput


def encoder_without_pooler(config: ModelConfig) -> BertModel:
    return BertModel(dataclasses.replace(config, has_pooler=False))


class ClassificationHead(nn.Module):
    """First token (B, H) -> (B, C): dense + tanh (ReLU for DistilBERT) -> dropout -> out.

    RoBERTa/XLM-R also apply dropout before ``dense``; BERT's ``dense`` is its pretrained pooler.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = nn.ReLU() if config.model_type == "distilbert" else nn.Tanh()
        self.dropout_first = config.model_type in ("roberta", "xlm-roberta")
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, first_token: torch.Tensor) -> torch.Tensor:
        x = self.dropout(first_token) if self.dropout_first else first_token
        return self.out(self.dropout(self.act(self.dense(x))))


class SequenceClassifier(nn.Module):
    """Single sentences or sentence pairs -> (B, C) class logits."""

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
    ) -> TaskOutput:
        encoded = self.encoder(input_ids, attention_mask, token_type_ids, output_hidden_states, output_attentions,
                               head_mask=head_mask)
        logits = self.head(encoded.last_hidden_state[:, 0])  # (B, C)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return TaskOutput(logits, loss, encoded.hidden_states, encoded.attentions)


class TokenTagger(nn.Module):
    """Tokens -> (B, T, C) tag logits; labels of -100 (later sub-tokens, padding) are ignored."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder_without_pooler(config)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.ModuleDict({"out": nn.Linear(config.hidden_size, config.num_labels)})

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        head_mask: Sequence[torch.Tensor] | torch.Tensor | None = None,  # per layer (A_layer,) gates
    ) -> TaskOutput:
        encoded = self.encoder(input_ids, attention_mask, token_type_ids, output_hidden_states, output_attentions,
                               head_mask=head_mask)
        logits = self.head["out"](self.dropout(encoded.last_hidden_state))  # (B, T, C)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return TaskOutput(logits, loss, encoded.hidden_states, encoded.attentions)


class SpanExtractor(nn.Module):
    """Question + context -> (B, T) start and end logits of the answer span."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder_without_pooler(config)
        self.head = nn.ModuleDict({"out": nn.Linear(config.hidden_size, 2)})

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        head_mask: Sequence[torch.Tensor] | torch.Tensor | None = None,  # per layer (A_layer,) gates
    ) -> SpanOutput:
        encoded = self.encoder(input_ids, attention_mask, token_type_ids, output_hidden_states, output_attentions,
                               head_mask=head_mask)
        start_logits, end_logits = self.head["out"](encoded.last_hidden_state).unbind(dim=-1)  # 2 x (B, T)
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = (F.cross_entropy(start_logits, start_positions) + F.cross_entropy(end_logits, end_positions)) / 2
        return SpanOutput(start_logits, end_logits, loss, encoded.hidden_states, encoded.attentions)
