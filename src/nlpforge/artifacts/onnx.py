"""The onnxruntime backend: an exported ONNX directory run behind the torch models' call signature.

An ONNX directory holds what a checkpoint directory holds, with ``model.onnx`` for the weights
(compress/export.py writes it): inputs ``input_ids``, ``attention_mask`` (+ ``token_type_ids``),
all (batch, sequence) int64; outputs the task's ``output_names`` or ``last_hidden_state``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlpforge.checkpoint import LABELLED_HEADS, read_meta
from nlpforge.config import ModelConfig
from nlpforge.convert.hf_config import config_from_hf, head_from_hf, read_hf_config
from nlpforge.errors import CheckpointError
from nlpforge.models.outputs import EncoderOutput
from nlpforge.tasks import Task, task_of

ONNX_FILE = "model.onnx"


def onnx_precision(directory: str | os.PathLike[str]) -> str:
    """The ``precision`` an ONNX directory's nlpforge.json records (``fp32`` when not recorded)."""
    directory = Path(directory)
    if not (directory / ONNX_FILE).is_file():
        raise CheckpointError(f"{directory}: no {ONNX_FILE}; pass a directory written by export_onnx")
    return str(read_meta(directory).get("precision", "fp32"))


class OnnxModel:
    """An exported model run by onnxruntime, called like the torch model it came from.

    ``model(input_ids, attention_mask, token_type_ids)`` takes torch tensors (B, T) and returns what
    the torch model returns (its task's ``output_from_graph``; ``EncoderOutput`` for a bare encoder)
    holding torch tensors; no loss, hidden states or attentions. ``eval()`` is a no-op, for code
    that calls it. ``task`` is None for a bare encoder.
    """

    def __init__(self, session: Any, config: ModelConfig, task: Task | None, path: Path,
                 meta: dict[str, Any]) -> None:
        self.session, self.config, self.task, self.path, self.meta = session, config, task, path, meta
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]
        self.training = False

    @classmethod
    def load(cls, directory: str | os.PathLike[str], threads: int | None = None) -> OnnxModel:
        """Open ``directory/model.onnx`` on the CPU; ``threads``: intra-op threads (None: onnxruntime's
        default, one per physical core). Inter-op work runs sequentially (one thread)."""
        import onnxruntime as ort

        directory = Path(directory)
        if not (directory / ONNX_FILE).is_file():
            raise CheckpointError(f"{directory}: no {ONNX_FILE}; pass a directory written by export_onnx")
        hf = read_hf_config(directory)
        head = head_from_hf(hf) or "base"
        config = dataclasses.replace(config_from_hf(hf, str(directory / "config.json")), has_pooler=False)
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = threads
        meta = read_meta(directory)
        if str(meta.get("precision", "fp32")).startswith("int8") and \
                not (meta.get("quantization") or {}).get("reduce_range"):
            # An INT8 file with full 8-bit weights (written before weights were capped at 7 bits,
            # compress/quantize.py): its uint8 x int8 sums saturate 16 bits on CPUs without VNNI
            # unless onnxruntime is asked for the exact (slower) kernels.
            options.add_session_config_entry("session.x64quantprecision", "1")
        try:
            session = ort.InferenceSession(str(directory / ONNX_FILE), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types for a bad file
            raise CheckpointError(f"{directory / ONNX_FILE}: onnxruntime cannot load it ({error})") from None
        if "labels" not in meta and head in LABELLED_HEADS and isinstance(hf.get("id2label"), dict):
            meta["labels"] = [hf["id2label"][str(i)] for i in range(len(hf["id2label"]))]
        return cls(session, config, task_of(meta, head), directory, meta)

    def eval(self) -> OnnxModel:
        return self

    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        packed: bool = False,  # the torch models' inference switch; the graph decides for itself
    ) -> Any:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        feed = {name: np.ascontiguousarray(given[name].detach().cpu().numpy(), dtype=np.int64)
                for name in self.input_names}
        values = dict(zip(self.output_names, self.session.run(self.output_names, feed), strict=True))
        out = {name: torch.from_numpy(value) for name, value in values.items()}
        if self.task is None:
            return EncoderOutput(out["last_hidden_state"])
        return self.task.output_from_graph(out)

    def __repr__(self) -> str:
        task = self.task.name if self.task is not None else None
        return f"OnnxModel({str(self.path)!r}, task={task!r}, precision={self.meta.get('precision', 'fp32')!r})"

