"""Run a model over features in length-sorted batches; hand each feature its own slice back."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from nlpforge.data.collate import collate_inputs, length_sorted_batches
from nlpforge.device import model_device, to_cpu, to_device


@torch.inference_mode()
def forward_batches(
    model: nn.Module, features: Sequence[dict[str, Any]], batch_size: int, pad_id: int
) -> Iterator[tuple[list[int], Any]]:
    """Yield (feature indices, model output) per batch; batches group features of similar length.

    Targets (labels, positions) are not passed, so the model computes no loss; torch models run
    their packed inference path (real tokens only). The batch goes to the model's device and the
    output comes back to the CPU.
    """
    model.eval()
    device = model_device(model)
    for rows in length_sorted_batches([len(f["input_ids"]) for f in features], batch_size):
        batch = to_device(collate_inputs([features[i] for i in rows], pad_id), device)
        yield rows, to_cpu(model(**batch, packed=True))
