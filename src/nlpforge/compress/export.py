"""Export a task model (or bare encoder) to ONNX, and run the export with onnxruntime.

An ONNX directory holds what a checkpoint directory holds, with ``model.onnx`` for the weights::

    model.onnx       inputs input_ids, attention_mask (+ token_type_ids), all (batch, sequence), int64;
                     outputs: the task's ``output_names`` (tasks/*.py), or last_hidden_state
    config.json      the HF config of the architecture (so the head and labels are known)
    tokenizer files
    nlpforge.json    meta + {"format": "onnx", "precision": "fp32" | "int8-dynamic" | "int8-static"}

The exporter is the classic TorchScript one (``torch.onnx.export(..., dynamo=False)``): it traces
one call. ``padding_mask`` in models/bert.py skips the mask when nothing is padded, a Python branch
the trace would freeze; we therefore trace with an example batch that *has* padding, so the graph
always applies the mask (an all-ones mask then gives the unmasked result, which the tests check).

The onnxruntime backend that runs the export is ``nlpforge.artifacts.onnx.OnnxModel``.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlpforge import __version__
from nlpforge.artifacts.onnx import ONNX_FILE
from nlpforge.artifacts.torch_int8 import is_torch_quantized
from nlpforge.checkpoint import META_FILE, task_hf_config, write_directory_atomically
from nlpforge.config import ModelConfig
from nlpforge.errors import ConfigError
from nlpforge.models.bert import BertModel
from nlpforge.tasks import HEAD_MODELS, Task, encoder_of, task_of

ENCODER_OUTPUTS = ("last_hidden_state",)  # the graph output of a bare encoder


def model_head(model: nn.Module) -> str:
    """The head (weight layout) of an exportable model: a task head of tasks/*.py, or ``base``."""
    if isinstance(model, BertModel):
        return "base"
    for head, cls in HEAD_MODELS.items():
        if type(model) is cls:
            return head
    raise ConfigError(f"{type(model).__name__}: cannot export it; export a task model of tasks/*.py "
                      f"({', '.join(cls.__name__ for cls in HEAD_MODELS.values())}) or a bare BertModel")


def model_config(model: nn.Module) -> ModelConfig:
    """The config that describes the model's weights: a task model's encoder never has a pooler."""
    return encoder_of(model).config


def uses_token_types(config: ModelConfig) -> bool:
    """Whether the graph takes ``token_type_ids`` (DistilBERT has none; RoBERTa has one type, still fed)."""
    return bool(config.type_vocab_size)



class _GraphOutputs(nn.Module):
    """The model behind a flat signature, returning the task's graph outputs (a bare encoder: its
    last hidden states) as a tuple."""

    def __init__(self, model: nn.Module, task: Task | None) -> None:
        super().__init__()
        self.model, self.task = model, task

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        out = self.model(input_ids, attention_mask, token_type_ids)
        return (out.last_hidden_state,) if self.task is None else self.task.graph_outputs(out)


def example_inputs(config: ModelConfig) -> dict[str, torch.Tensor]:
    """A (2, 8) batch whose second row is padded: tracing it keeps the attention mask in the graph."""
    T = min(8, config.max_positions - config.position_offset)
    pad = config.pad_token_id
    input_ids = torch.arange(2 * T).remainder(config.vocab_size).view(2, T)
    if pad is not None:
        input_ids[input_ids == pad] = (pad + 1) % config.vocab_size
    attention_mask = torch.ones(2, T, dtype=torch.long)
    attention_mask[1, T // 2:] = 0
    if pad is not None:
        input_ids[1, T // 2:] = pad
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if uses_token_types(config):
        inputs["token_type_ids"] = torch.zeros(2, T, dtype=torch.long)
    return inputs


def meta_record(config: ModelConfig, meta: dict[str, Any] | None, **fields: Any) -> str:
    """nlpforge.json text: version and family, the caller's meta, then ``fields`` (format, precision)."""
    record = {"nlpforge_version": __version__, "family": config.family, **(meta or {}), **fields}
    return json.dumps(record, indent=2, ensure_ascii=False) + "\n"


def export_onnx(
    model: nn.Module,
    out_dir: str | os.PathLike[str],
    tokenizer: PreTrainedTokenizerBase | None = None,
    meta: dict[str, Any] | None = None,
    opset: int = 17,
) -> Path:
    """Export a task model or bare BertModel (fp32) to ``out_dir/model.onnx`` plus its side files.

    Inputs ``input_ids``, ``attention_mask`` (+ ``token_type_ids`` when the config has token types),
    outputs the task's ``output_names`` (``meta["task"]``, else the task of the head) or
    ``last_hidden_state``; every axis 0 is ``batch`` and every axis 1 ``sequence``. Classification
    and tagging take label names from ``meta["labels"]`` (``LABEL_i`` otherwise, so config.json
    keeps the number of labels).
    A half-precision model is exported as an fp32 copy; a torch-quantized one cannot be exported.
    """
    head = model_head(model)
    if is_torch_quantized(model):
        raise ConfigError("cannot export a torch-quantized model to ONNX; export the fp32 model, then "
                          "quantize the ONNX directory (quantize_onnx_dynamic / quantize_onnx_static)")
    config = model_config(model)
    original, was_training = model, model.training
    if any(p.dtype != torch.float32 for p in model.parameters()):
        model = copy.deepcopy(model).float()
    task = task_of(meta or {}, head)
    if task is not None and not task.onnx_inputs:
        raise ConfigError(f"a {task.name} model reads (batch, options, sequence) inputs, which the ONNX export "
                          "does not trace; serve its torch checkpoint")
    graph = _GraphOutputs(model, task).eval()  # export restores this mode afterwards, not the model's
    inputs = example_inputs(config)
    names = list(inputs)
    outputs = list(ENCODER_OUTPUTS if task is None else task.output_names)
    axes = {name: {0: "batch", 1: "sequence"} for name in names + outputs}

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():  # tracer notes on Python branches and the legacy-exporter notice
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, tuple(inputs.values()), str(tmp / ONNX_FILE), dynamo=False,
                              input_names=names, output_names=outputs, dynamic_axes=axes,
                              opset_version=opset, do_constant_folding=True)
        (tmp / "config.json").write_text(json.dumps(task_hf_config(config, head, meta), indent=2) + "\n",
                                         encoding="utf-8")
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        (tmp / META_FILE).write_text(meta_record(config, meta, format="onnx", precision="fp32"),
                                     encoding="utf-8")

    try:
        return write_directory_atomically(Path(out_dir), write)
    finally:
        original.train(was_training)
