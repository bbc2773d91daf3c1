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

from nlpforge.data.collate import collate_inputs, length_sorted_batches
from nlpforge.errors import ConfigError
from nlpforge.models.bert import BertModel

POOLINGS = ("mean", "cls")


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
    features = [{"input_ids": ids, "attention_mask": [1] * len(ids)} for ids in token_ids]
    if sort_by_length:
        batches = length_sorted_batches([len(ids) for ids in token_ids], batch_size)
    else:
        batches = [list(range(i, min(i + batch_size, len(texts)))) for i in range(0, len(texts), batch_size)]
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    with tqdm(total=len(texts), desc="embed", unit="text", disable=not progress) as bar:
        for rows in batches:
            batch = collate_inputs([features[i] for i in rows], tokenizer.pad_token_id)
            hidden = model(batch["input_ids"], batch["attention_mask"], packed=True).last_hidden_state
            out[rows] = pool(hidden, batch["attention_mask"], pooling).float().numpy()
            bar.update(len(rows))
    return out
