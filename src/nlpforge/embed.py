"""Sentence embeddings from an encoder, batched by length for speed, returned in input order.

Sorting by token count before batching means each batch is padded only to the length of its
longest member, so far fewer padding positions go through the encoder than with batches in
file order; the vectors are scattered back to the original order at the end.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm
from transformers import PreTrainedTokenizerBase

from nlpforge.errors import ConfigError
from nlpforge.models.bert import BertModel

POOLINGS = ("mean", "cls")


def pad_batch(token_ids: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad lists of ids to (B, T_max) ids and a (B, T_max) 1/0 attention mask."""
    width = max(len(ids) for ids in token_ids)
    ids = torch.full((len(token_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for row, seq in enumerate(token_ids):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, T, H) hidden states -> (B, H): mean over real tokens, or the first ([CLS]) token."""
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


@torch.inference_mode()
def embed_texts(
    model: BertModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    pooling: str = "mean",
    batch_size: int = 32,
    max_length: int = 256,
    sort_by_length: bool = True,
    progress: bool = True,
) -> np.ndarray:
    """One (H,) float32 vector per text, as an (N, H) array in the order of ``texts``."""
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling {pooling!r} is not supported; use one of {', '.join(POOLINGS)}")
    if batch_size < 1 or max_length < 2:
        raise ConfigError("batch size must be >= 1 and max length >= 2")
    token_ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: len(token_ids[i])) if sort_by_length else list(range(len(texts)))
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    with tqdm(total=len(texts), desc="embed", unit="text", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = pad_batch([token_ids[i] for i in rows], tokenizer.pad_token_id)
            hidden = model(ids, mask).last_hidden_state
            out[rows] = pool(hidden, mask, pooling).float().numpy()
            bar.update(len(rows))
    return out
