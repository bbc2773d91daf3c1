"""The ``Task`` protocol: everything a downstream task is, in one object.

Training, evaluation, prediction, distillation, ONNX export, the predictor and the server ask a
task object; none of them matches a task name. A task file (``tasks/<name>.py``) holds its head
(the model class), its one loss, examples -> features, collation, decoding to the user's output,
metrics, its ONNX outputs, its warm-up input, the views distillation reads and the request schema
of one input. ``tasks/__init__.py`` maps names to task classes: adding a task is one new file and
one registry line.

A task object may carry settings learnt in training on examples it holds out of the training
file (multilabel: its decision threshold; span_qa: its no-answer threshold). They are saved in
``nlpforge.json`` as ``task_settings`` and passed back to the class on loading.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlpforge.data.collate import collate_inputs
from nlpforge.data.options import DataOptions
from nlpforge.errors import InputDataError
from nlpforge.inference import forward_batches
from nlpforge.models.outputs import TaskOutput

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@runtime_checkable
class Task(Protocol):
    """What every task provides. Shapes: B batch, T tokens, C labels."""

    name: ClassVar[str]  # the registry name (``--task``)
    head: ClassVar[str]  # the weight layout: a head of convert/bert.py, i.e. an HF architecture suffix
    model_class: ClassVar[type[nn.Module]]  # encoder + head; forward returns a models/outputs.py dataclass
    decoder_model_class: ClassVar[type[nn.Module] | None]  # GPT-2 decoder + head, or None (encoders only)
    metric: ClassVar[str]  # what keep-best and early stopping watch (higher is better)
    output_names: ClassVar[tuple[str, ...]]  # ONNX graph outputs, in order
    warmup_input: ClassVar[Any]  # one raw input the server runs before it reports ready
    input_schema: ClassVar[dict[str, Any]]  # JSON schema of one raw input (server docs)
    hf_config_fields: ClassVar[dict[str, Any]]  # extra config.json fields transformers reads
    finetunes: ClassVar[bool]  # whether ``nlpforge train`` trains it (cloze: ``nlpforge fewshot``)
    onnx_inputs: ClassVar[bool]  # whether it reads (B, T) inputs, the layout ONNX export traces

    # data -> features
    def read(self, path: str | Path, data: DataOptions) -> list[Any]: ...
    def label_names(self, examples: Sequence[Any], existing: list[str] | None) -> list[str] | None: ...
    def check(self, examples: Sequence[Any], labels: list[str] | None, path: str | Path) -> None: ...
    def encode(self, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Any], labels: list[str] | None,
               max_length: int, data: DataOptions) -> list[dict[str, Any]]: ...
    def collate(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]: ...
    def padded_length(self, feature: dict[str, Any]) -> int: ...

    # training
    def model_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...
    def loss(self, output: Any, batch: dict[str, torch.Tensor], class_weights: torch.Tensor | None) -> torch.Tensor: ...
    def class_weights(self, features: Sequence[dict[str, Any]], num_labels: int) -> torch.Tensor | None: ...
    def init_head(self, model: nn.Module, features: Sequence[dict[str, Any]]) -> None: ...
    def heldout_split(self, examples: Sequence[Any]) -> tuple[list[Any], list[Any]]: ...
    def tune(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, heldout: Sequence[Any],
             labels: list[str] | None, max_length: int, batch_size: int, data: DataOptions) -> Task: ...
    def settings(self) -> dict[str, Any]: ...

    # evaluation and prediction
    def evaluate(self, model: Any, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Any],
                 labels: list[str] | None, max_length: int, batch_size: int, data: DataOptions) -> dict[str, Any]: ...
    def parse_input(self, record: Any, where: str) -> Any: ...
    def check_input(self, parsed: Any, tokenizer: PreTrainedTokenizerBase, max_length: int, data: DataOptions,
                    where: str) -> None: ...
    def predict(self, model: Any, tokenizer: PreTrainedTokenizerBase, inputs: Sequence[Any],
                labels: list[str] | None, max_length: int, batch_size: int, data: DataOptions) -> list[dict]: ...

    # export and distillation
    def graph_outputs(self, output: Any) -> tuple[torch.Tensor, ...]: ...
    def output_from_graph(self, values: dict[str, torch.Tensor]) -> Any: ...
    def distill_views(self, output: Any) -> list[torch.Tensor]: ...
    def distill_mask(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None: ...
    def distill_gold(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None: ...


@dataclass
class EncoderTask:
    """Defaults shared by the encoder tasks; each task class overrides what differs.

    Subclasses are dataclasses: their fields are the task's settings (``settings()``).
    """

    hf_config_fields: ClassVar[dict[str, Any]] = {}
    heldout_share: ClassVar[float] = 0.0  # share of the training examples kept back to ``tune`` settings
    finetunes: ClassVar[bool] = True
    onnx_inputs: ClassVar[bool] = True  # the model reads (B, T) inputs, the layout ONNX export traces
    decoder_model_class: ClassVar[type[nn.Module] | None] = None  # the task runs on encoders only
    per_token_views: ClassVar[bool] = False  # distillation views are (T, ...) per example

    def settings(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def collate(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        return collate_inputs(features, pad_id)

    def padded_length(self, feature: dict[str, Any]) -> int:
        """The T one feature asks ``collate`` to pad its batch to (``--group-by-length`` sorts by it)."""
        return len(feature["input_ids"])

    def model_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v for k, v in batch.items() if k in MODEL_INPUTS}

    def class_weights(self, features: Sequence[dict[str, Any]], num_labels: int) -> torch.Tensor | None:
        return None

    def init_head(self, model: nn.Module, features: Sequence[dict[str, Any]]) -> None:
        """Adjust a new model's fresh head to the training features before training (default: as built)."""
        return None

    def heldout_split(self, examples: Sequence[Any]) -> tuple[list[Any], list[Any]]:
        """(train, held out): the training examples ``tune`` learns the task's settings on are kept out of
        training (default: every k-th, for a ``heldout_share`` of 1/k)."""
        return split_heldout(examples, self.heldout_share)

    def tune(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, heldout: Sequence[Any],
             labels: list[str] | None, max_length: int, batch_size: int, data: DataOptions) -> EncoderTask:
        return self

    def check_input(self, parsed: Any, tokenizer: PreTrainedTokenizerBase, max_length: int, data: DataOptions,
                    where: str) -> None:
        """Reject a parsed input the model cannot take (InputDataError naming ``where``); texts that are
        merely long are truncated, so most tasks accept every input."""
        return None

    def graph_outputs(self, output: Any) -> tuple[torch.Tensor, ...]:
        return tuple(getattr(output, name) for name in self.output_names)

    def distill_mask(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return None

    def distill_gold(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return None


class SoftmaxLogitsTask:
    """The graph output, distillation view and gold labels of a task whose output is one (B, C)
    softmax distribution per example (classify, multiple_choice)."""

    def output_from_graph(self, values: dict[str, torch.Tensor]) -> TaskOutput:
        return TaskOutput(values["logits"])

    def distill_views(self, output: TaskOutput) -> list[torch.Tensor]:
        return [output.logits]  # (B, C)

    def distill_gold(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return batch["labels"]  # (B,)


def sequence_logits(model: Any, features: Sequence[dict], batch_size: int, pad_id: int) -> np.ndarray:
    """(N, C) float32 logits of a sequence-level head over features (length-sorted batches inside)."""
    rows_out: dict[int, np.ndarray] = {}
    for rows, output in forward_batches(model, features, batch_size, pad_id):
        for row, logits in zip(rows, output.logits.float().numpy(), strict=True):
            rows_out[row] = logits
    return np.stack([rows_out[i] for i in range(len(features))])


def balanced_class_weights(label_ids: Sequence[int], num_labels: int) -> torch.Tensor:
    """(C,) weights n / (C * count_c): rare classes count as much as frequent ones in the loss."""
    counts = torch.bincount(torch.tensor(label_ids), minlength=num_labels).float().clamp(min=1)
    return len(label_ids) / (num_labels * counts)


def text_field(record: dict[str, Any], field: str, where: str, required: bool = True) -> str | None:
    """``record[field]`` as a non-empty string that UTF-8 can encode; InputDataError names ``where.field``."""
    value = record.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InputDataError(f"{where}.{field}: must be a non-empty string")
    check_encodable(value, f"{where}.{field}")
    return value


def check_encodable(text: str, where: str) -> None:
    """Reject lone surrogates (``"\\ud800"``): no tokenizer can encode them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InputDataError(f"{where}: holds an unpaired surrogate at character {error.start}; "
                             "send valid Unicode text") from None


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages (None -> null)."""
    names = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string",
             list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def text_record(record: Any, where: str, fields: Sequence[str], optional: Sequence[str] = (),
                bare: bool = True) -> dict[str, str]:
    """One raw input: a JSON object of ``fields`` (required) and ``optional`` strings, or, when
    ``bare``, a plain string standing for the first field. Every error names ``where``."""
    if isinstance(record, str) and bare:
        if not record.strip():
            raise InputDataError(f"{where}: must be a non-empty string")
        check_encodable(record, where)
        return {fields[0]: record}
    if not isinstance(record, dict):
        kind = "a string or a JSON object" if bare else f"a JSON object with {', '.join(map(repr, fields))}"
        raise InputDataError(f"{where}: must be {kind}, not {json_type(record)}")
    unknown = sorted(set(record) - {*fields, *optional})
    if unknown:
        raise InputDataError(f"{where}: unknown field {unknown[0]!r}; this input takes "
                             f"{', '.join(sorted({*fields, *optional}))}")
    values = {}
    for field in [*fields, *optional]:
        value = text_field(record, field, where, required=field in fields)
        if value is not None:
            values[field] = value
    return values


def split_heldout(examples: Sequence[Any], share: float) -> tuple[list[Any], list[Any]]:
    """(train, held out): every k-th example is held out (k = round(1 / share)); deterministic and
    spread over the file. Nothing is held out when ``share`` is 0 or the set is too small (< 20)."""
    if share <= 0 or len(examples) < 20:
        return list(examples), []
    every = max(2, round(1 / share))
    train = [e for i, e in enumerate(examples) if i % every != every - 1]
    heldout = [e for i, e in enumerate(examples) if i % every == every - 1]
    return train, heldout
