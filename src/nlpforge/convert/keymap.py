"""The engine under every family's key map: expand, apply, invert, and check.

A key map is a list of ``Entry(ours, hf, op)``. ``{}`` in a key stands for the layer number and
is expanded for every layer. ``op`` says how the Hugging Face tensors become ours:

- ``copy``: one tensor, unchanged;
- ``cat``:  several HF tensors concatenated along dim 0 (separate q/k/v -> our fused qkv);
- ``t``:    one tensor transposed (GPT-2's Conv1D stores (in, out); nn.Linear wants (out, in)).

Every op is exactly invertible, so HF -> nlpforge -> HF reproduces the original tensors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from nlpforge.errors import ConversionError

Op = str  # "copy" | "cat" | "t"


@dataclass(frozen=True)
class Entry:
    ours: str
    hf: tuple[str, ...]
    op: Op = "copy"


def entry(ours: str, *hf: str, op: Op = "copy") -> Entry:
    return Entry(ours, tuple(hf), op)


def expand(entries: Iterable[Entry], num_layers: int, hf_prefix: str = "", ours_prefix: str = "") -> list[Entry]:
    """Substitute every layer number for ``{}`` and put the prefixes in front of the keys."""
    expanded = []
    for e in entries:
        for i in range(num_layers) if "{}" in e.ours else [None]:
            ours = e.ours.format(i) if i is not None else e.ours
            hf = tuple(hf_prefix + (k.format(i) if i is not None else k) for k in e.hf)
            expanded.append(Entry(ours_prefix + ours, hf, e.op))
    return expanded


def hf_to_ours(state_dict: Mapping[str, torch.Tensor], entries: list[Entry]) -> dict[str, torch.Tensor]:
    """Apply the map; every entry's HF keys must be present (``check_keys`` says which are not)."""
    converted = {}
    for e in entries:
        tensors = [state_dict[k] for k in e.hf]
        if e.op == "cat":
            converted[e.ours] = torch.cat(tensors, dim=0)
        elif e.op == "t":
            converted[e.ours] = tensors[0].t().contiguous()
        else:
            converted[e.ours] = tensors[0]
    return converted


def ours_to_hf(state_dict: Mapping[str, torch.Tensor], entries: list[Entry]) -> dict[str, torch.Tensor]:
    """The inverse of ``hf_to_ours``: ``cat`` is split into equal parts, ``t`` transposed back."""
    converted = {}
    for e in entries:
        tensor = state_dict[e.ours]
        if e.op == "cat":
            for key, part in zip(e.hf, tensor.chunk(len(e.hf), dim=0), strict=True):
                converted[key] = part.clone()
        elif e.op == "t":
            converted[e.hf[0]] = tensor.t().contiguous()
        else:
            converted[e.hf[0]] = tensor
    return converted


def check_keys(found: Iterable[str], expected: Iterable[str], what: str) -> None:
    """Raise naming the first missing and the unknown keys (weight loading never skips silently)."""
    found, expected = set(found), set(expected)
    missing = sorted(expected - found)
    unknown = sorted(found - expected)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ConversionError(f"{what}: missing weight {missing[0]!r}{more}")
    if unknown:
        more = f" (and {len(unknown) - 1} more: {', '.join(unknown[1:4])}...)" if len(unknown) > 1 else ""
        raise ConversionError(
            f"{what}: unknown weight {unknown[0]!r}{more}; it is not in the key map for this model_type"
        )


def check_shapes(converted: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size], what: str) -> None:
    for key, shape in expected.items():
        if key in converted and converted[key].shape != shape:
            raise ConversionError(
                f"{what}: weight {key!r} has shape {tuple(converted[key].shape)}, the config needs "
                f"{tuple(shape)}; does config.json belong to these weights?"
            )
