"""Features (dicts of Python lists) -> padded tensor batches, and length-sorted batch plans."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

# Model inputs padded per batch, with the value that pads them (None: the tokenizer's pad id).
PADDED_INPUTS: dict[str, int | None] = {"input_ids": None, "attention_mask": 0, "token_type_ids": 0}
# Per-token labels pad with the ignore index; per-example targets are stacked as they are.
TOKEN_TARGETS = {"labels": -100}
EXAMPLE_TARGETS = ("start_positions", "end_positions")


def collate(features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad the model inputs of ``features`` to the longest one: (B, T_max) tensors.

    ``labels`` are per example (classification: ints) or per token (tagging: lists, padded with
    -100). Keys that are not model inputs (offsets, word ids, example index) are left out.
    """
    width = max(len(f["input_ids"]) for f in features)
    batch: dict[str, torch.Tensor] = {}
    for key, pad in PADDED_INPUTS.items():
        if key in features[0]:
            value = pad_id if pad is None else pad
            batch[key] = torch.tensor([f[key] + [value] * (width - len(f[key])) for f in features])
    if "labels" in features[0]:
        if isinstance(features[0]["labels"], list):
            pad = TOKEN_TARGETS["labels"]
            batch["labels"] = torch.tensor([f["labels"] + [pad] * (width - len(f["labels"])) for f in features])
        else:
            batch["labels"] = torch.tensor([f["labels"] for f in features])
    for key in EXAMPLE_TARGETS:
        if key in features[0]:
            batch[key] = torch.tensor([f[key] for f in features])
    return batch


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding); each batch's order kept."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
