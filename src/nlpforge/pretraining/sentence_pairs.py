"""Masked LM plus a sentence-pair objective: NSP (BERT) or SOP (ALBERT).

Each block is ``[CLS] A [SEP] B [SEP]`` (padded to the block size), cut from one document as in
BERT's ``create_instances_from_document``: sentences are gathered until the block is full, the
first 1..k-1 of them become segment A and the rest segment B. Then

- ``nsp``: half the time B is replaced by a span of sentences from another document (label 1,
  "random next"), else B is the true continuation (label 0);
- ``sop``: half the time A and B are swapped (label 1, "swapped order"), else kept (label 0); both
  segments always come from the same document, so topic gives the answer away less than in NSP.

The pair head reads the first token through a tanh pooler (BERT's pooler, initialised from the
encoder's when it has one): ``loss = L_mlm + CE(W tanh(P h_[CLS]), label)``, as
``BertForPreTraining`` computes it. The saved checkpoint is the masked LM; the pair head is
training-only (kept in the resume state).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlpforge.config import ModelConfig
from nlpforge.pretraining.mlm import MaskedLMObjective
from nlpforge.pretraining.objective import (
    FieldSpec,
    MaskedLMModel,
    Scores,
    boundary_ids,
    init_weights,
    masked_lm_from,
    token_scores,
    tokenize_document,
    unwrap,
)
from nlpforge.pretraining.words import WordStarts

OTHER_DOCUMENTS = 64  # recent documents a random segment B is drawn from (the stream is not indexable)


def _flatten(sentences: list[tuple[list[int], list[bool]]], field: int) -> list[Any]:
    """One segment's ids (field 0) or word starts (field 1), its sentences joined."""
    return [value for sentence in sentences for value in sentence[field]]


class PairHead(nn.Module):
    """First-token state (B, H) -> (B, 2) logits through a tanh pooler."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size)
        self.classifier = nn.Linear(config.hidden_size, 2)

    def forward(self, first_token: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.tanh(self.pooler(first_token)))


def pair_block(a: list[int], b: list[int], a_starts: list[bool], b_starts: list[bool], label: int,
               first: int, separator: int, pad: int, block_size: int) -> dict[str, Any]:
    """``[CLS] A [SEP] B [SEP]`` padded to ``block_size``; the longer segment is cut from its end first."""
    a, b, a_starts, b_starts = list(a), list(b), list(a_starts), list(b_starts)
    while len(a) + len(b) > block_size - 3:
        longer, flags = (a, a_starts) if len(a) > len(b) else (b, b_starts)
        longer.pop()
        flags.pop()
    ids = [first, *a, separator, *b, separator]
    real = len(ids)
    padding = block_size - real
    return {"input_ids": ids + [pad] * padding,
            "token_type_ids": [0] * (len(a) + 2) + [1] * (len(b) + 1) + [0] * padding,
            "attention_mask": [1] * real + [0] * padding,
            "word_starts": [1, *map(int, a_starts), 1, *map(int, b_starts), 1] + [1] * padding,
            "pair_label": label}


@dataclass
class SentencePairObjective(MaskedLMObjective):
    """MLM + NSP (``order=False``) or MLM + SOP (``order=True``)."""

    order: bool = False  # True: sentence-order prediction; False: next-sentence prediction

    name: ClassVar[str] = "mlm+nsp"

    def fields(self, block_size: int) -> FieldSpec:
        return {"input_ids": ("int32", block_size), "token_type_ids": ("uint8", block_size),
                "attention_mask": ("uint8", block_size), "word_starts": ("uint8", block_size),
                "pair_label": ("int8", 1)}

    def blocks(self, tokenizer: PreTrainedTokenizerBase, documents: Iterable[list[str]], block_size: int,
               seed: int) -> Iterator[dict[str, Any]]:
        rng = random.Random(seed)
        first, separator = boundary_ids(tokenizer)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        words = WordStarts(tokenizer) if self.whole_words else None
        recent: deque[list[tuple[list[int], list[bool]]]] = deque(maxlen=OTHER_DOCUMENTS)
        for document in documents:
            ids, starts = tokenize_document(tokenizer, document, words)
            sentences = [(i, s) for i, s in zip(ids, starts, strict=True) if i]
            chunk: list[tuple[list[int], list[bool]]] = []
            for position, sentence in enumerate(sentences):
                chunk.append(sentence)
                if sum(len(i) for i, _ in chunk) < block_size - 3 and position < len(sentences) - 1:
                    continue
                block = self._pair(chunk, recent, rng)
                if block is not None:
                    yield pair_block(*block, first=first, separator=separator, pad=pad, block_size=block_size)
                chunk = []
            if sentences:
                recent.append(sentences)

    def _pair(self, chunk: list[tuple[list[int], list[bool]]], recent: deque, rng: random.Random
              ) -> tuple[list[int], list[int], list[bool], list[bool], int] | None:
        """(A ids, B ids, A word starts, B word starts, label) from a chunk of sentences, or None."""
        cut = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
        a, b = chunk[:cut], chunk[cut:]
        label = int(rng.random() < 0.5)
        if self.order:
            if not b:
                return None  # SOP needs two segments of one document
            if label:
                a, b = b, a
        elif (label or not b) and recent:  # B from another (recent) document
            other = rng.choice(list(recent))
            begin = rng.randrange(len(other))
            b, label = other[begin: begin + max(1, len(chunk) - cut)], 1
        elif not b:
            return None  # the corpus' first, one-sentence chunk: nothing to pair it with
        else:
            label = 0
        return (_flatten(a, 0), _flatten(b, 0), _flatten(a, 1), _flatten(b, 1), label)

    def extend(self, model: nn.Module) -> nn.Module:
        lm = masked_lm_from(model)
        head = PairHead(lm.config)
        init_weights(head)
        pooler = getattr(lm.encoder, "pooler", None)
        if pooler is not None:  # BERT's pretrained pooler is where its NSP head read from
            head.pooler.load_state_dict(pooler.dense.state_dict())
        return MaskedLMModel(lm, {"pair": head})

    def new_model(self, config: ModelConfig) -> nn.Module:
        return self.extend(super().new_model(config).lm)

    def batch(self, rows: dict[str, np.ndarray], indices: Sequence[int], tokenizer: PreTrainedTokenizerBase,
              epoch: int) -> dict[str, torch.Tensor]:
        batch = super().batch(rows, indices, tokenizer, epoch)
        batch["token_type_ids"] = torch.from_numpy(rows["token_type_ids"].astype(np.int64))
        batch["attention_mask"] = torch.from_numpy(rows["attention_mask"].astype(np.int64))
        batch["pair_label"] = torch.from_numpy(rows["pair_label"].astype(np.int64)).view(-1)  # (B,)
        return batch

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Scores]:
        """L_mlm + L_pair; the Scores (perplexity, accuracy) are the masked LM's."""
        hidden = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])  # (B, T, H)
        inner = unwrap(model)
        logits, targets = inner.masked_logits(hidden, batch["labels"])
        mlm_loss, scores = token_scores(logits, targets)
        pair_loss = F.cross_entropy(inner.extra["pair"](hidden[:, 0]), batch["pair_label"])
        return mlm_loss + pair_loss, scores


@dataclass
class SentenceOrderObjective(SentencePairObjective):
    order: bool = True

    name: ClassVar[str] = "mlm+sop"
