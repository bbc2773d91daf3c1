"""The torch INT8 backend: an ``int8-torch-dynamic`` artifact stores each Linear's int8 weights,
per-channel scales and zero points in safetensors (never pickle) and loads them into torch's
dynamic-int8 Linear modules without re-quantizing.

Layout: config.json and tokenizer files as in a checkpoint, ``model.int8.safetensors``, and
nlpforge.json with ``precision: int8-torch-dynamic`` and the quantization settings. There is no
``model.safetensors``: transformers cannot read int8 values with separate scales, so it refuses
the directory instead of reading int8 numbers as weights.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlpforge import __version__
from nlpforge.checkpoint import META_FILE, head_labels, task_hf_config, write_directory_atomically
from nlpforge.convert.hf_config import config_from_hf, head_from_hf, read_hf_config
from nlpforge.errors import CheckpointError, ConfigError
from nlpforge.models.bert import BertModel
from nlpforge.tasks import HEAD_MODELS, encoder_of

TORCH_INT8 = "int8-torch-dynamic"
TORCH_INT8_FILE = "model.int8.safetensors"
# What a torch int8 artifact holds, recorded in its nlpforge.json.
TORCH_INT8_SETTINGS = {
    "method": "torch.ao.quantization.quantize_dynamic", "modules": ["Linear"],
    "weights": "int8 symmetric, per output channel (per_channel_dynamic_qconfig)",
    "activations": "quantized per call to 7 bits (reduce_range: no 16-bit overflow on AVX2)",
    "embeddings": "fp32", "file": TORCH_INT8_FILE,
}


def is_torch_quantized(model: nn.Module) -> bool:
    """Whether any Linear of the model is a quantized (dynamic or static) module."""
    return any(isinstance(m, (torch.ao.nn.quantized.dynamic.Linear, torch.ao.nn.quantized.Linear))
               for m in model.modules())


def _int8_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of a dynamic-int8 model under its own state-dict names, nothing packed.

    Each quantized Linear ``X`` becomes ``X.weight`` (out, in) int8, ``X.weight_scale`` (out,)
    float64 and ``X.weight_zero_point`` (out,) int64 (0-dim for a per-tensor weight), ``X.bias``
    (out,) fp32; every other parameter and buffer is stored as it is (fp32).
    """
    quantized = {name: module for name, module in model.named_modules()
                 if isinstance(module, torch.ao.nn.quantized.dynamic.Linear)}
    tensors: dict[str, torch.Tensor] = {}
    for name, module in quantized.items():
        weight = module.weight()  # (out, in) qint8
        if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            if weight.q_per_channel_axis() != 0:
                raise ConfigError(f"{name}: int8 weight quantized along axis {weight.q_per_channel_axis()}; "
                                  "only per-output-channel (axis 0) or per-tensor weights can be stored")
            scale, zero_point = weight.q_per_channel_scales(), weight.q_per_channel_zero_points()
        else:
            scale = torch.tensor(weight.q_scale(), dtype=torch.float64)
            zero_point = torch.tensor(weight.q_zero_point(), dtype=torch.int64)
        tensors[f"{name}.weight"] = weight.int_repr()
        tensors[f"{name}.weight_scale"] = scale.to(torch.float64)
        tensors[f"{name}.weight_zero_point"] = zero_point.to(torch.int64)
        if module.bias() is not None:
            tensors[f"{name}.bias"] = module.bias().detach()
    prefixes = tuple(f"{name}." for name in quantized)
    for key, value in model.state_dict().items():
        if not key.startswith(prefixes):  # the packed params of a quantized Linear are stored above
            tensors[key] = value.detach()
    return {key: value.contiguous() for key, value in tensors.items()}


def _int8_weight(tensors: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """The quantized (out, in) weight of Linear ``name`` from its stored int8 values, scales and zero points."""
    values, scale, zero_point = (tensors[f"{name}.{part}"] for part in ("weight", "weight_scale", "weight_zero_point"))
    if scale.dim() == 0:
        return torch._make_per_tensor_quantized_tensor(values, float(scale), int(zero_point))
    return torch._make_per_channel_quantized_tensor(values, scale, zero_point, 0)


def write_torch_int8(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase | None,
    out_dir: str | os.PathLike[str],
    meta: dict[str, Any] | None = None,
) -> Path:
    """An ``int8-torch-dynamic`` artifact of a dynamic-int8 ``model`` (compress.quantize makes one):
    ``model.int8.safetensors`` holds each Linear's int8 values, scales and zero points (see
    ``_int8_tensors``) and the fp32 rest; ``load_torch_int8`` rebuilds the model without re-quantizing.
    """
    if not is_torch_quantized(model):
        raise ConfigError("write_torch_int8 takes a dynamic-int8 model; quantize it first "
                          "(nlpforge.compress.quantize.save_torch_quantized does both)")
    head = next((h for h, cls in HEAD_MODELS.items() if type(model) is cls), "base")
    config = encoder_of(model).config
    tensors = _int8_tensors(model)
    labels = head_labels(config, head, meta)
    record = {**(meta or {}), **({"labels": labels} if labels else {})}

    def write(tmp: Path) -> None:
        hf_config = task_hf_config(config, head, record)
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
        save_file(tensors, str(tmp / TORCH_INT8_FILE), metadata={"format": "pt", "precision": TORCH_INT8})
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        meta_json = {"nlpforge_version": __version__, "family": config.family, **record, "precision": TORCH_INT8,
                     "quantization": TORCH_INT8_SETTINGS}
        (tmp / META_FILE).write_text(json.dumps(meta_json, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    return write_directory_atomically(Path(out_dir), write)


def load_torch_int8(directory: Path) -> nn.Module:
    """The dynamic-int8 model of an ``int8-torch-dynamic`` artifact, rebuilt from its stored int8 weights."""
    hf_config = read_hf_config(directory)
    source = str(directory / "config.json")
    try:
        tensors = load_file(directory / TORCH_INT8_FILE)
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{directory / TORCH_INT8_FILE}: cannot read the int8 weights ({error})") from None
    head = head_from_hf(hf_config)
    config = config_from_hf(hf_config, source)
    if head in HEAD_MODELS:  # a task model's encoder has no pooler (BERT's is the head's dense layer)
        model = HEAD_MODELS[head](dataclasses.replace(config, has_pooler=False))
    else:
        model = BertModel(dataclasses.replace(config, has_pooler=any(k.startswith("pooler.") for k in tensors)))
    names = sorted(key.removesuffix(".weight_scale") for key in tensors if key.endswith(".weight_scale"))
    weights = {name: _int8_weight(tensors, name) for name in names}
    # Load every tensor through the fp32 model first (strict: an unknown or missing name is an
    # error), the int8 weights de-quantized; then swap each Linear for its int8 module.
    fp32 = {k: v for k, v in tensors.items() if not k.endswith((".weight_scale", ".weight_zero_point"))}
    fp32.update({f"{name}.weight": weight.dequantize() for name, weight in weights.items()})
    try:
        model.load_state_dict(fp32, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{directory / TORCH_INT8_FILE}: does not fit config.json ({error})") from None
    for name, weight in weights.items():
        linear = model.get_submodule(name)
        if not isinstance(linear, nn.Linear):
            raise CheckpointError(f"{directory / TORCH_INT8_FILE}: {name} holds int8 weights but is not a Linear")
        int8 = torch.ao.nn.quantized.dynamic.Linear(linear.in_features, linear.out_features,
                                                    bias_=linear.bias is not None, dtype=torch.qint8)
        int8.set_weight_bias(weight, None if linear.bias is None else linear.bias.detach().clone())
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, int8)
    return model.eval()
