"""What every pre-training objective provides, and the pieces the encoder objectives share.

An objective (one file each: ``mlm.py``, ``span.py``, ``sentence_pairs.py``, ``clm.py``; the
registry is ``pretraining/__init__.py``) turns documents into fixed-size blocks, builds or
extends a model for itself, turns stored blocks into a training batch (dynamic masking happens
here: a block's mask depends on the block and the epoch only) and computes its loss with the counts that held-out
perplexity and masked-token accuracy are made of.

Shapes: B blocks, T = block size, H hidden, V vocabulary, N scored positions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlpforge.config import ModelConfig
from nlpforge.errors import ConfigError
from nlpforge.models.bert import BertForMaskedLM
from nlpforge.pretraining.masking import IGNORE
from nlpforge.pretraining.words import WordStarts

FieldSpec = dict[str, tuple[str, int]]  # field -> (numpy dtype, width per block)
EVAL_EPOCH = -1  # the "epoch" of held-out masks: the same at every evaluation, so the figures compare


@dataclass
class Scores:
    """Sums over the scored positions of a batch: negative log-likelihood, count, correct argmax."""

    nll: float = 0.0
    tokens: int = 0
    correct: int = 0

    def add(self, other: Scores) -> None:
        self.nll += other.nll
        self.tokens += other.tokens
        self.correct += other.correct

    def report(self, prefix: str) -> dict[str, float]:
        """``{prefix}_loss``, ``{prefix}_perplexity`` (exp of the mean NLL) and ``{prefix}_accuracy`` (%)."""
        mean = self.nll / max(self.tokens, 1)
        return {f"{prefix}_loss": mean, f"{prefix}_perplexity": float(np.exp(min(mean, 50.0))),
                f"{prefix}_accuracy": 100.0 * self.correct / max(self.tokens, 1)}


def token_scores(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, Scores]:
    """Mean cross-entropy of (N, V) logits against (N,) ids over the targets that are not -100, and its
    Scores (a zero loss when none is scored). The argmax behind ``correct`` (a pass over N x V) is taken
    only when no gradient is recorded (evaluation); a training step leaves it at 0."""
    scored = targets != IGNORE
    count = int(scored.sum())
    if not count:
        return logits.sum() * 0.0, Scores()
    loss = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE)
    correct = 0 if torch.is_grad_enabled() else int(((logits.argmax(-1) == targets) & scored).sum())
    return loss, Scores(float(loss.detach()) * count, count, correct)


class Objective(Protocol):
    """A pre-training objective (``--objective NAME``)."""

    name: ClassVar[str]
    family: ClassVar[str]  # the model family it trains: "bert" (encoder) or "gpt" (decoder)

    def fields(self, block_size: int) -> FieldSpec: ...
    def blocks(self, tokenizer: PreTrainedTokenizerBase, documents: Iterable[list[str]], block_size: int,
               seed: int) -> Iterator[dict[str, Any]]: ...
    def new_model(self, config: ModelConfig) -> nn.Module: ...
    def extend(self, model: nn.Module) -> nn.Module: ...
    def language_model(self, model: nn.Module) -> nn.Module: ...
    def batch(self, rows: dict[str, np.ndarray], indices: Sequence[int], tokenizer: PreTrainedTokenizerBase,
              epoch: int) -> dict[str, torch.Tensor]: ...
    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Scores]: ...


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT / GPT-2 initialisation of new weights: N(0, std) for linear and embedding weights, zero
    biases, unit LayerNorm (PyTorch's defaults would start embeddings at N(0, 1))."""
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, nn.Embedding)):
            nn.init.normal_(sub.weight, std=std)
            if isinstance(sub, nn.Linear) and sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)


def special_ids(tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """(S,) ids never masked nor drawn as random replacements: the tokenizer's special tokens."""
    return torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)


def boundary_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int]:
    """(first, separator) ids of an encoder block: [CLS]/[SEP], or <s>/</s> for RoBERTa-style vocabularies."""
    first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    separator = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if first is None or separator is None:
        raise ConfigError("the tokenizer has no [CLS]/[SEP] (or <s>/</s>) tokens; an encoder objective needs them")
    return first, separator


def mask_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    if tokenizer.mask_token_id is None:
        raise ConfigError("the tokenizer has no mask token; a masked-LM objective needs one (train a wordpiece "
                          "or unigram tokenizer with `nlpforge tokenizer train`, which adds [MASK] / <mask>)")
    return int(tokenizer.mask_token_id)


def tokenize_document(tokenizer: PreTrainedTokenizerBase, document: Sequence[str], words: WordStarts | None
                      ) -> tuple[list[list[int]], list[list[bool]]]:
    """Per sentence its token ids (no special tokens) and word starts (all True without ``words``)."""
    encoded = tokenizer(list(document), add_special_tokens=False, return_offsets_mapping=words is not None)
    ids = encoded["input_ids"]
    if words is None:
        return ids, [[True] * len(sentence) for sentence in ids]
    starts = [words.of(text, sentence, offsets)
              for text, sentence, offsets in zip(document, ids, encoded["offset_mapping"], strict=True)]
    return ids, starts


def encoder_blocks(tokenizer: PreTrainedTokenizerBase, documents: Iterable[list[str]], block_size: int,
                   words: WordStarts | None) -> Iterator[dict[str, list[int]]]:
    """RoBERTa's FULL-SENTENCES blocks: ``[CLS] t_1 .. t_{T-2} [SEP]`` cut from the running token stream,
    sentences packed across document ends (a [SEP] marks each end); the last partial block is dropped.

    Yields ``input_ids`` (T,) and ``word_starts`` (T,) 0/1.
    """
    first, separator = boundary_ids(tokenizer)
    body = block_size - 2
    ids: list[int] = []
    starts: list[bool] = []
    for document in documents:
        sentence_ids, sentence_starts = tokenize_document(tokenizer, document, words)
        for sentence, flags in zip(sentence_ids, sentence_starts, strict=True):
            ids.extend(sentence)
            starts.extend(flags)
            while len(ids) >= body:
                yield {"input_ids": [first, *ids[:body], separator],
                       "word_starts": [1, *map(int, starts[:body]), 1]}
                del ids[:body], starts[:body]
        if ids:
            ids.append(separator)
            starts.append(True)


class MaskedLMModel(nn.Module):
    """An encoder's masked LM (``lm``, saved as the checkpoint) plus the objective's extra heads.

    ``masked_logits`` scores only the N selected positions: the (H x V) decoder is the largest
    matrix product of a small encoder, and the other T - N positions are never scored.
    """

    def __init__(self, lm: BertForMaskedLM, extra: dict[str, nn.Module] | None = None) -> None:
        super().__init__()
        self.lm = lm
        self.extra = nn.ModuleDict(extra or {})
        if lm.encoder.pooler is not None:  # no objective reads BERT's pooler (the pair head has its own):
            lm.encoder.pooler.requires_grad_(False)  # kept as loaded, and out of DDP's gradient sync

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) ids -> (B, T, H) last hidden states (the heads are applied by the objective)."""
        return self.lm.encoder(input_ids, attention_mask, token_type_ids).last_hidden_state

    def masked_logits(self, hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, H) states, (B, T) labels -> ((N, V) logits, (N,) targets) at labels != -100."""
        scored = labels != -100
        logits = self.lm.mlm(hidden[scored], self.lm.encoder.embeddings.word.weight)
        return logits, labels[scored]


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (the model itself otherwise). Objectives run
    the wrapper's forward (so DDP syncs gradients) and read the heads from the model inside."""
    return getattr(model, "module", model)


def masked_lm_from(model: nn.Module) -> BertForMaskedLM:
    """A masked LM from a loaded encoder checkpoint: its own head when it has one, else a new head
    (transform + LayerNorm + decoder tied to the word embeddings) at BERT's initialisation."""
    if isinstance(model, BertForMaskedLM):
        return model
    encoder = getattr(model, "encoder", model)
    lm = BertForMaskedLM(encoder.config)
    lm.encoder = encoder
    init_weights(lm.mlm)
    return lm
