"""Features (dicts of Python lists) -> padded tensor batches, and length-sorted batch plans.

``collate_inputs`` pads the model inputs every task shares; each task's ``collate`` adds its
targets (tasks/*.py), with ``pad_rows`` for per-token ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

# Model inputs padded per batch, with the value that pads them (None: the tokenizer's pad id).
PADDED_INPUTS: dict[str, int | None] = {"input_ids": None, "attention_mask": 0, "token_type_ids": 0}


def pad_rows(rows: Sequence[Sequence[int]], value: int, width: int | None = None) -> torch.Tensor:
    """(B, width) tensor of right-padded rows; ``width`` defaults to the longest row."""
    width = max(len(row) for row in rows) if width is None else width
    return torch.tensor([list(row) + [value] * (width - len(row)) for row in rows])


def collate_inputs(features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad the model inputs of ``features`` to the longest one: (B, T_max) tensors.

    Keys that are not model inputs (targets, offsets, word ids) are left out.
    """
    width = max(len(f["input_ids"]) for f in features)
    return {key: pad_rows([f[key] for f in features], pad_id if pad is None else pad, width)
            for key, pad in PADDED_INPUTS.items() if key in features[0]}


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding); each batch's order kept."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
