"""Run a model over features in length-sorted batches; hand each feature its own slice back."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from nlpforge.data.collate import collate_inputs, length_sorted_batches


@torch.inference_mode()
def forward_batches(
    model: nn.Module, features: Sequence[dict[str, Any]], batch_size: int, pad_id: int
) -> Iterator[tuple[list[int], Any]]:
    """Yield (feature indices, model output) per batch; batches group features of similar length.

    Targets (labels, positions) are not passed, so the model computes no loss; torch models run
    their packed inference path (real tokens only).
    """
    model.eval()
    for rows in length_sorted_batches([len(f["input_ids"]) for f in features], batch_size):
        yield rows, model(**collate_inputs([features[i] for i in rows], pad_id), packed=True)
