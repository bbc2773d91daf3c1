"""Every kind of model directory a stage writes, behind one loader and one writer.

    kind        precision            files                                     backend
    checkpoint  fp32 / fp16 / bf16   model.safetensors (HF layout)             torch
    torch-int8  int8-torch-dynamic   model.int8.safetensors (torch_int8.py)    torch (dynamic int8 Linear)
    onnx        fp32 / int8-dynamic  model.onnx (onnx.py)                      onnxruntime
                / int8-static

Each also holds config.json, tokenizer files and nlpforge.json (task, labels, stage, metrics).
``load_artifact(path)`` returns an ``Artifact`` whatever the kind: its ``model`` is called the same
way on every backend, ``model(input_ids, attention_mask, token_type_ids, packed=...)`` -> the
task's output dataclass. ``write_artifact`` writes any kind from a torch model. Loading never
imports the compression code: serving depends on this package only.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlpforge.artifacts.onnx import ONNX_FILE, OnnxModel
from nlpforge.artifacts.torch_int8 import TORCH_INT8, TORCH_INT8_FILE, load_torch_int8
from nlpforge.checkpoint import META_FILE, directory_size, load_checkpoint, load_tokenizer, read_meta
from nlpforge.config import ModelConfig
from nlpforge.errors import ConfigError
from nlpforge.tasks import HEAD_MODELS, Task, task_of

# write_artifact kinds -> what they write.
WRITE_KINDS = ("checkpoint", "fp16", "bf16", "onnx", "int8-onnx", "int8-static-onnx", "int8-torch")


@dataclass
class Artifact:
    """A loaded model directory, ready for inference (eval mode)."""

    path: Path
    kind: str  # checkpoint | torch-int8 | onnx
    precision: str  # fp32, fp16, bf16, int8-torch-dynamic, int8-dynamic, int8-static
    backend: str  # torch | onnxruntime
    config: ModelConfig
    task: Task | None  # None for a bare encoder or a language model
    labels: list[str] | None
    tokenizer: PreTrainedTokenizerBase | None
    model: Any  # model(input_ids, attention_mask, token_type_ids, packed=False) -> the task's output dataclass
    meta: dict[str, Any]

    @property
    def size_bytes(self) -> int:
        """Bytes on disk of the artifact (every file but training state)."""
        return directory_size(self.path)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (``nlpforge info``)."""
        config = self.config
        return {
            "path": str(self.path), "kind": self.kind, "precision": self.precision, "backend": self.backend,
            "task": self.task.name if self.task is not None else None, "labels": self.labels,
            "task_settings": self.task.settings() if self.task is not None else None,
            "family": config.family, "model_type": config.model_type, "layers": config.num_layers,
            "hidden_size": config.hidden_size, "heads": config.num_heads,
            "intermediate_size": config.intermediate_size, "vocab_size": config.vocab_size,
            "max_positions": config.max_positions, "parameters": parameter_count(self.model),
            "bytes_on_disk": self.size_bytes,
            "tokenizer": type(self.tokenizer).__name__ if self.tokenizer is not None else None,
            "stage": self.meta.get("stage"), "metrics": self.meta.get("metrics"),
        }


def parameter_count(model: Any) -> int:
    """Weights of a torch model (int8 Linear weights included) or of an ONNX graph's initializers."""
    if isinstance(model, OnnxModel):
        import onnx

        graph = onnx.load(str(model.path / ONNX_FILE), load_external_data=False).graph
        sizes = [1] * len(graph.initializer)
        for i, initializer in enumerate(graph.initializer):
            for dim in initializer.dims:
                sizes[i] *= dim
        return sum(sizes)
    quantized = sum(m.weight().numel() for m in model.modules()
                    if isinstance(m, torch.ao.nn.quantized.dynamic.Linear))
    return quantized + sum(p.numel() for p in model.parameters())


def load_artifact(path: str | os.PathLike[str], dtype: torch.dtype | None = None,
                  threads: int | None = None) -> Artifact:
    """Any artifact directory (or a hub name of a checkpoint) as an ``Artifact``.

    ``threads``: onnxruntime intra-op threads (None: one per physical core). ``dtype``: a
    checkpoint's compute dtype; None means float32, since CPU kernels for fp16 are slow or missing
    (``torch.bfloat16`` is fast on CPUs with AVX512-BF16/AMX; ``torch.float16`` for a GPU).
    """
    directory = Path(path)
    if (directory / ONNX_FILE).is_file():
        model = OnnxModel.load(directory, threads)
        return Artifact(directory, "onnx", str(model.meta.get("precision", "fp32")), "onnxruntime", model.config,
                        model.task, model.meta.get("labels"), load_tokenizer(directory), model, model.meta)
    if directory.is_dir() and read_meta(directory).get("precision") == TORCH_INT8:
        if not (directory / TORCH_INT8_FILE).is_file():  # written before int8 weights were stored
            from nlpforge.compress.quantize import quantize_torch_dynamic

            checkpoint = load_checkpoint(directory)
            model, meta = quantize_torch_dynamic(checkpoint.model), checkpoint.meta
        else:
            model, meta = load_torch_int8(directory), read_meta(directory)
        head = _head_of(model)
        return Artifact(directory, "torch-int8", TORCH_INT8, "torch", model.config, task_of(meta, head),
                        meta.get("labels"), load_tokenizer(directory), model, meta)
    checkpoint = load_checkpoint(path, dtype=dtype or torch.float32)  # also a hub name, as everywhere
    precision = checkpoint.meta.get("precision", "fp32")
    return Artifact(checkpoint.path, "checkpoint", precision, "torch", checkpoint.config, checkpoint.task,
                    checkpoint.meta.get("labels"), checkpoint.tokenizer, checkpoint.model, checkpoint.meta)


def write_artifact(model: nn.Module, tokenizer: PreTrainedTokenizerBase | None, out_dir: str | os.PathLike[str],
                   kind: str = "checkpoint", meta: dict[str, Any] | None = None,
                   calibration: list[dict[str, Any]] | None = None) -> Path:
    """Write ``model`` (a torch task model or bare encoder, fp32) as an artifact of ``kind``.

    ``checkpoint`` (fp32), ``fp16`` / ``bf16`` (half-precision weights), ``onnx`` (fp32 graph),
    ``int8-onnx`` (onnxruntime dynamic INT8), ``int8-static-onnx`` (calibrated on ``calibration``
    feature batches), ``int8-torch`` (torch dynamic INT8). Every write is atomic.
    """
    from nlpforge.checkpoint import save_checkpoint
    from nlpforge.compress.export import export_onnx, model_config, model_head
    from nlpforge.compress.quantize import (
        half_precision_copy,
        quantize_onnx_dynamic,
        quantize_onnx_static,
        save_torch_quantized,
    )

    if kind not in WRITE_KINDS:
        raise ConfigError(f"artifact kind {kind!r}: choose one of {', '.join(WRITE_KINDS)}")
    if kind == "checkpoint":
        return save_checkpoint(out_dir, model, model_config(model), tokenizer, model_head(model), meta)
    if kind in ("fp16", "bf16"):
        return half_precision_copy(model, tokenizer, out_dir, torch.float16 if kind == "fp16" else torch.bfloat16,
                                   meta)
    if kind == "onnx":
        return export_onnx(model, out_dir, tokenizer, meta)
    if kind == "int8-torch":
        return save_torch_quantized(model, tokenizer, out_dir, meta)
    if kind == "int8-static-onnx" and not calibration:
        raise ConfigError("int8-static-onnx: pass calibration feature batches from in-domain text")
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(dir=out_dir.parent if out_dir.parent.exists() else None) as work:
        fp32 = export_onnx(model, Path(work) / "onnx", tokenizer, meta)
        if kind == "int8-onnx":
            return quantize_onnx_dynamic(fp32, out_dir)
        return quantize_onnx_static(fp32, out_dir, calibration or [])


def record_artifact_metrics(path: str | os.PathLike[str], metrics: dict[str, Any], **fields: Any) -> None:
    """Set ``metrics`` (and ``fields``) in the artifact's nlpforge.json, replacing the file in one rename.

    For a stage measured after it was written: its nlpforge.json then carries its own numbers, not
    those of the model it was made from.
    """
    directory = Path(path)
    record = {**read_meta(directory), "metrics": metrics, **fields}
    tmp = directory / f".{META_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, directory / META_FILE)


def _head_of(model: nn.Module) -> str:
    """The head (weight layout) of a torch model: a task head, or ``base`` for an encoder or LM."""
    return next((head for head, cls in HEAD_MODELS.items() if type(model) is cls), "base")


__all__ = ["ONNX_FILE", "WRITE_KINDS", "Artifact", "OnnxModel", "load_artifact", "record_artifact_metrics",
           "write_artifact"]
