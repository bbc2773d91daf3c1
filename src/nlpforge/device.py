"""Where a model runs: resolving ``--device`` and moving batches and outputs between devices.

Training and evaluation on a GPU keep the model there; what leaves a forward pass for the
CPU-side decoding (argmax, span search, metrics) is moved back with ``to_cpu``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from nlpforge.errors import ConfigError

DEVICES = ("cpu", "cuda", "auto")


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` / ``cuda:N``, or ``auto`` (the first GPU when torch sees one, else the CPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r}: not a device; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: torch sees no CUDA GPU here (torch {torch.__version__}); "
                          "use --device cpu, or install a CUDA build of torch on a GPU machine")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {name!r}: nlpforge runs on cpu or cuda")
    return device


def model_device(model: Any) -> torch.device:
    """The device of a torch model's first parameter; the CPU for a model without parameters and for
    the runtimes that are not torch modules (ONNX Runtime)."""
    parameter = next(model.parameters(), None) if isinstance(model, nn.Module) else None
    return parameter.device if parameter is not None else torch.device("cpu")


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The batch with its tensors on ``device`` (other values as they are); a no-op on the same device."""
    return {key: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
            for key, value in batch.items()}


def to_cpu(output: Any) -> Any:
    """A model output (a tensor, a dataclass of tensors or tuples of them) with its tensors on the CPU."""
    if isinstance(output, torch.Tensor):
        return output.cpu()
    if isinstance(output, tuple):
        return tuple(to_cpu(value) for value in output)
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return dataclasses.replace(output, **{field.name: to_cpu(getattr(output, field.name))
                                              for field in dataclasses.fields(output) if field.init})
    return output
