"""Causal language modelling (GPT): predict every next token of fixed-length blocks.

Blocks are cut from the running token stream of the corpus with the end-of-text token between
documents (GPT-2's recipe): no padding, every position is scored. Perplexity is the exponential
of the mean next-token cross-entropy over held-out blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlpforge.config import ModelConfig
from nlpforge.errors import ConfigError
from nlpforge.models.gpt import GPT
from nlpforge.pretraining.masking import IGNORE
from nlpforge.pretraining.objective import FieldSpec, Scores, init_weights, token_scores


def end_of_text_id(tokenizer: PreTrainedTokenizerBase) -> int:
    for token_id in (tokenizer.eos_token_id, tokenizer.sep_token_id):
        if token_id is not None:
            return int(token_id)
    raise ConfigError("the tokenizer has no end-of-text token (eos or sep); train a bpe tokenizer with "
                      "`nlpforge tokenizer train --kind bpe`, which adds <|endoftext|>")


@dataclass
class CausalLMObjective:
    """Next-token prediction on packed blocks."""

    name: ClassVar[str] = "clm"
    family: ClassVar[str] = "gpt"

    def fields(self, block_size: int) -> FieldSpec:
        return {"input_ids": ("int32", block_size)}

    def blocks(self, tokenizer: PreTrainedTokenizerBase, documents: Iterable[list[str]], block_size: int,
               seed: int) -> Iterator[dict[str, Any]]:
        """``input_ids`` (T,) cut from the token stream, documents ended by the end-of-text token."""
        end = end_of_text_id(tokenizer)
        stream: list[int] = []
        for document in documents:
            for sentence in tokenizer(list(document), add_special_tokens=False)["input_ids"]:
                stream.extend(sentence)
            stream.append(end)
            while len(stream) >= block_size:
                yield {"input_ids": stream[:block_size]}
                del stream[:block_size]

    def new_model(self, config: ModelConfig) -> nn.Module:
        model = GPT(config)
        init_weights(model)
        return model

    def extend(self, model: nn.Module) -> nn.Module:
        if not isinstance(model, GPT):
            raise ConfigError(f"--objective clm trains a decoder (GPT-2 family); the checkpoint holds a "
                              f"{type(model).__name__}")
        return model

    def language_model(self, model: nn.Module) -> nn.Module:
        return model

    def batch(self, rows: dict[str, np.ndarray], indices: Sequence[int], tokenizer: PreTrainedTokenizerBase,
              epoch: int) -> dict[str, torch.Tensor]:
        ids = torch.from_numpy(rows["input_ids"].astype(np.int64))  # (B, T)
        return {"input_ids": ids}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Scores]:
        ids = batch["input_ids"]
        logits = model(ids).logits  # (B, T, V)
        # Position t predicts token t + 1 and the last position nothing: shifting the targets (B, T) rather
        # than the logits spares a copy of the (B, T - 1, V) slice.
        targets = F.pad(ids[:, 1:], (0, 1), value=IGNORE)
        return token_scores(logits.flatten(0, 1), targets.flatten())
