"""Masked language modelling (BERT, RoBERTa) and its whole-word variant (BERT-wwm).

``mlm``: 15% of the tokens of each block are selected independently; ``wwm``: whole words are
selected (Chinese words from jieba, English words from the tokenizer's ``##`` / ``▁`` pieces)
until 15% of the tokens are covered. Either way the selection is corrupted 80/10/10
(``masking.corrupt``) and the loss is the cross-entropy at the selected positions only.

Masks are dynamic (RoBERTa): drawn again in each epoch, from a seed of (run seed, epoch, block).
``static=True`` leaves the epoch out, so a block's mask is the same in every epoch (BERT's
original recipe, kept for comparison).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlpforge.config import ModelConfig
from nlpforge.models.bert import BertForMaskedLM
from nlpforge.pretraining import masking
from nlpforge.pretraining.objective import (
    FieldSpec,
    MaskedLMModel,
    Scores,
    encoder_blocks,
    init_weights,
    mask_token_id,
    masked_lm_from,
    special_ids,
    token_scores,
    unwrap,
)
from nlpforge.pretraining.words import WordStarts


@dataclass
class MaskedLMObjective:
    """BERT's masked LM over token or whole-word selections."""

    whole_words: bool = False
    rate: float = 0.15  # share of each block's maskable tokens that is predicted
    static: bool = False  # one mask per block for the whole run, instead of a new one per epoch
    seed: int = 0

    name: ClassVar[str] = "mlm"
    family: ClassVar[str] = "bert"

    def fields(self, block_size: int) -> FieldSpec:
        return {"input_ids": ("int32", block_size), "word_starts": ("uint8", block_size)}

    def blocks(self, tokenizer: PreTrainedTokenizerBase, documents: Iterable[list[str]], block_size: int,
               seed: int) -> Iterator[dict[str, Any]]:
        return encoder_blocks(tokenizer, documents, block_size, WordStarts(tokenizer) if self.whole_words else None)

    def new_model(self, config: ModelConfig) -> nn.Module:
        lm = BertForMaskedLM(config)
        init_weights(lm)
        return self.extend(lm)

    def extend(self, model: nn.Module) -> nn.Module:
        return MaskedLMModel(masked_lm_from(model))

    def language_model(self, model: nn.Module) -> nn.Module:
        return model.lm

    def select(self, input_ids: torch.Tensor, word_starts: torch.Tensor, maskable: torch.Tensor,
               generator: torch.Generator) -> torch.Tensor:
        """(B, T) bool selection of the positions to predict."""
        if self.whole_words:
            return masking.select_whole_words(word_starts, maskable, self.rate, generator)
        return masking.select_tokens(maskable, self.rate, generator)

    def mask_seed(self, epoch: int, index: int) -> int:
        """The seed of block ``index``'s mask in ``epoch``: a pure function of the block, so a run
        split over processes (each masking its share of a batch) or resumed draws the same masks."""
        return hash((self.seed, 0 if self.static else epoch, index)) & 0x7FFF_FFFF_FFFF_FFFF

    def batch(self, rows: dict[str, np.ndarray], indices: Sequence[int], tokenizer: PreTrainedTokenizerBase,
              epoch: int) -> dict[str, torch.Tensor]:
        """Stored blocks -> corrupted ``input_ids`` and ``labels`` (-100 where nothing is predicted)."""
        ids = torch.from_numpy(rows["input_ids"].astype(np.int64))  # (B, T)
        starts = torch.from_numpy(rows["word_starts"].astype(bool))
        special = special_ids(tokenizer)
        maskable = ~torch.isin(ids, special)
        replaceable = torch.ones(len(tokenizer), dtype=torch.bool)
        replaceable[special] = False
        parts = []
        for row, index in enumerate(indices):
            generator = torch.Generator().manual_seed(self.mask_seed(epoch, int(index)))
            one = slice(row, row + 1)
            chosen = self.select(ids[one], starts[one], maskable[one], generator)
            parts.append(masking.corrupt(ids[one], chosen, mask_token_id(tokenizer), len(tokenizer), generator,
                                         replaceable))
        inputs, labels = (torch.cat(tensors) for tensors in zip(*parts, strict=True))
        return {"input_ids": inputs, "attention_mask": torch.ones_like(inputs), "labels": labels,
                **self.extra_fields(ids, labels != masking.IGNORE)}

    def extra_fields(self, input_ids: torch.Tensor, selected: torch.Tensor) -> dict[str, torch.Tensor]:
        """Further batch fields an objective derives from the (B, T) original ids and selection."""
        return {}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Scores]:
        hidden = model(batch["input_ids"], batch["attention_mask"])  # (B, T, H)
        logits, targets = unwrap(model).masked_logits(hidden, batch["labels"])  # (N, V), (N,)
        return token_scores(logits, targets)
