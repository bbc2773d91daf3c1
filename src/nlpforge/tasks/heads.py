"""Pieces the task heads share: the encoder without its pooler, and the sequence-classification head.

Head layouts follow the Hugging Face classes of each model_type, so a fine-tuned checkpoint loads
in ``transformers`` (the key maps are in convert/bert.py). The encoder never has its own pooler
here: BERT's pooler is the classification head's ``dense`` layer.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from nlpforge.config import ModelConfig
from nlpforge.models.bert import BertModel


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
