"""``Predictor``: any nlpforge artifact behind one call, ``predict(inputs)`` / ``embed(texts)``.

The same object backs ``nlpforge predict``, the HTTP server (serve/app.py wraps it, nothing more)
and user code::

    from nlpforge import Predictor
    predictor = Predictor.load("quickstart-model")            # checkpoint -> torch
    predictor.predict(["a gorgeous, witty film"])              # [{"label": "1", "score": ..., ...}]
    Predictor.load("out/student-int8-onnx").predict([...])    # ONNX (fp32 or INT8) -> onnxruntime

Inputs per task (each task's ``input_schema``): classify and multilabel take a string or
``{"text", "text_pair"}``; tag takes a string or ``{"text"}``; span_qa takes ``{"question",
"context"}``. ``parse`` checks one raw input and raises ``InputDataError`` naming where it came
from, so callers can reject bad input before queueing it.

Several LoRA adapters of one base share one copy of it: ``Predictor.load(base, adapters={"sentiment":
"out/sst2-lora", "topic": "out/tnews-lora"})``, then ``predict(inputs, adapter="topic")`` (default:
the first); each adapter keeps its own labels, head and input settings (nlpforge.adapt.lora).

A decoder checkpoint (GPT-2 family, ``nlpforge pretrain --objective clm``) generates text instead:
``predictor.stream(prompt, options)`` yields the new text token by token, ``predictor.generate(prompts,
options)`` returns whole completions (nlpforge.generation).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlpforge.artifacts import ONNX_FILE, OnnxModel, load_artifact
from nlpforge.embed import embed_texts
from nlpforge.errors import ConfigError, InputDataError
from nlpforge.generation import (
    Completion,
    GenerationOptions,
    GenerationStep,
    generate_text,
    options_dict,
    stream_generate,
)
from nlpforge.models.gpt import GPT
from nlpforge.tasks import DataOptions, Task, encoder_of
from nlpforge.tasks.base import check_encodable

BACKENDS = ("torch", "onnxruntime")


@dataclass
class Predictor:
    """A loaded model with its tokenizer and task, ready for batched inference (eval mode, no grad)."""

    model: nn.Module | OnnxModel
    tokenizer: PreTrainedTokenizerBase
    meta: dict[str, Any]
    backend: str
    path: str
    task_spec: Task | None  # the task object (tasks/*.py); None for a bare encoder
    batch_size: int = 32
    # The temporary ONNX export of a checkpoint served with --backend onnxruntime (kept alive here).
    _export_dir: tempfile.TemporaryDirectory | None = field(default=None, repr=False)
    # LoRA adapters on the one base ``model`` (a peft.PeftModel): name -> the adapter's nlpforge.json.
    adapters: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, artifact: str | os.PathLike[str], backend: str | None = None, threads: int | None = None,
             batch_size: int = 32, adapters: Mapping[str, str | os.PathLike[str]] | None = None) -> Predictor:
        """Load a checkpoint directory (or hub name) or an exported ONNX directory.

        ``backend``: None picks the artifact's own (ONNX -> onnxruntime, checkpoint -> torch);
        ``onnxruntime`` on a torch checkpoint exports it to ONNX first (fp32, a temporary directory).
        ``threads``: intra-op threads for onnxruntime (torch uses its process-wide setting).
        ``adapters``: name -> LoRA adapter directory, all trained on ``artifact`` (the base checkpoint),
        loaded unmerged on one copy of it and chosen per call (torch only).
        """
        if backend not in (None, *BACKENDS):
            raise ConfigError(f"backend {backend!r} is not supported; use one of {', '.join(BACKENDS)}")
        path = str(artifact)
        is_onnx = (Path(path) / ONNX_FILE).is_file()
        if adapters:
            return cls._load_adapters(path, adapters, backend, is_onnx, batch_size)
        if is_onnx and backend == "torch":
            raise ConfigError(f"{path}: is an ONNX export; serve it with --backend onnxruntime "
                              "(or pass the torch checkpoint it came from)")
        export_dir = None
        path_to_load = path
        if backend == "onnxruntime" and not is_onnx:
            from nlpforge.compress.export import export_onnx  # only this conversion needs the exporter

            loaded = load_artifact(path)
            export_dir = tempfile.TemporaryDirectory(prefix="nlpforge-serve-onnx-")
            export_onnx(loaded.model, export_dir.name, loaded.tokenizer, loaded.meta)
            path_to_load = export_dir.name
        loaded = load_artifact(path_to_load, threads=threads)
        if loaded.tokenizer is None:
            raise ConfigError(f"{path}: has no tokenizer files; save the tokenizer next to the model")
        meta = {**loaded.meta, "task": loaded.task.name if loaded.task else None}
        return cls(loaded.model, loaded.tokenizer, meta, loaded.backend, path, loaded.task, batch_size, export_dir)

    @classmethod
    def _load_adapters(cls, base: str, adapters: Mapping[str, str | os.PathLike[str]], backend: str | None,
                       is_onnx: bool, batch_size: int) -> Predictor:
        from nlpforge.adapt.lora import load_adapter_set  # peft only when adapters are served

        if is_onnx or backend == "onnxruntime":
            raise ConfigError(f"{base}: adapters are switched per request on a torch model; serve the base "
                              "checkpoint with the torch backend (or merge one adapter with `nlpforge lora-merge` "
                              "and export that)")
        checkpoint, metas = load_adapter_set({name: str(directory) for name, directory in adapters.items()}, base)
        if checkpoint.tokenizer is None:
            raise ConfigError(f"{base}: has no tokenizer files; save the tokenizer next to the model")
        task = checkpoint.task
        metas = {name: {**meta, "task": task.name if task else None} for name, meta in metas.items()}
        first = next(iter(metas))
        return cls(checkpoint.model, checkpoint.tokenizer, metas[first], "torch", base, task, batch_size,
                   adapters=metas)

    # ------------------------------------------------------------------ what the model can do

    @property
    def task(self) -> str | None:
        """The task's name (classify, tag, span_qa, multilabel, ...), or None for a bare encoder."""
        return self.task_spec.name if self.task_spec is not None else None

    @property
    def generates(self) -> bool:
        """Whether the model is a language model (a decoder): it generates text, and neither predicts nor embeds."""
        return isinstance(self.model, GPT)

    @property
    def labels(self) -> list[str] | None:
        return self.meta.get("labels")

    @property
    def max_length(self) -> int:
        """Tokens per input: as trained (nlpforge.json), else 128; never past the model's positions."""
        return self._max_length(self.meta)

    def _max_length(self, meta: dict[str, Any]) -> int:
        config = self.model.config
        return min(int(meta.get("max_length", 128)), config.max_positions - config.position_offset)

    def adapter_meta(self, adapter: str | None) -> dict[str, Any]:
        """The record that predictions under ``adapter`` follow (labels, max_length, data options):
        the adapter's (None: the first), or the model's own when it serves no adapters."""
        if not self.adapters:
            if adapter is not None:
                raise ConfigError(f"{self.path}: serves no adapters, so adapter {adapter!r} cannot be chosen; "
                                  "load it with adapters={name: directory} (`nlpforge serve --adapter NAME=DIR`)")
            return self.meta
        name = adapter if adapter is not None else next(iter(self.adapters))
        if name not in self.adapters:
            raise InputDataError(f"adapter: {name!r} is not served here; choose one of {', '.join(self.adapters)}")
        return self.adapters[name]

    @property
    def encoder(self) -> nn.Module | OnnxModel | None:
        """The module that yields last hidden states (for embed): a bare encoder, a task model's
        torch encoder, or None (an ONNX task model exports only its head's logits; a decoder has none)."""
        if self.model.config.family == "gpt":  # a language model or a decoder classifier
            return None
        if isinstance(self.model, OnnxModel):
            return self.model if self.model.task is None else None
        return encoder_of(self.model)

    def describe(self) -> dict[str, Any]:
        """What the model is, for /ready and the playground."""
        return {"path": self.path, "task": self.task, "backend": self.backend, "labels": self.labels,
                "max_length": self.max_length, "precision": self.meta.get("precision", "fp32"),
                "embed": self.encoder is not None, "generate": self.generates,
                **({"adapters": {name: meta.get("labels") for name, meta in self.adapters.items()}}
                   if self.adapters else {})}

    def with_data(self, **overrides: Any) -> Predictor:
        """The same model read with some data options replaced (e.g. ``null_threshold`` of a span_qa
        reader): the model is shared, the artifact untouched."""
        DataOptions(**overrides)  # an unknown option fails here, by name
        return dataclasses.replace(self, meta={**self.meta, "data": {**(self.meta.get("data") or {}), **overrides}},
                                   adapters={name: {**meta, "data": {**(meta.get("data") or {}), **overrides}}
                                             for name, meta in self.adapters.items()})

    def with_null_threshold(self, threshold: float | None) -> Predictor:
        """A span_qa reader that answers "" when the no-answer score beats the best span's by more than
        ``threshold`` (e.g. the ``best_f1_threshold`` that ``nlpforge eval`` reports on SQuAD 2.0-style
        data); None: as saved."""
        if threshold is None:
            return self
        if self.task != "span_qa":
            raise ConfigError(f"--null-threshold: {self.path} is a {self.task or 'bare encoder'} model; the no-answer "
                              "threshold applies to span_qa readers")
        return self.with_data(null_threshold=threshold)

    # ------------------------------------------------------------------ inference

    def parse(self, record: Any, where: str, adapter: str | None = None) -> Any:
        """One raw input (a string or a JSON object) -> the task's input; InputDataError names ``where``."""
        task = self._task()
        meta = self.adapter_meta(adapter)
        parsed = task.parse_input(record, where)
        task.check_input(parsed, self.tokenizer, self._max_length(meta), DataOptions(**(meta.get("data") or {})),
                         where)
        return parsed

    def predict_parsed(self, inputs: Sequence[Any], adapter: str | None = None) -> list[dict[str, Any]]:
        """Predictions for inputs already checked by ``parse``, in order (batched by length)."""
        meta = self.adapter_meta(adapter)
        if self.adapters:  # one batch holds one adapter's inputs (the server groups them so)
            self.model.set_adapter(adapter if adapter is not None else next(iter(self.adapters)))
        options = DataOptions(**(meta.get("data") or {}))
        with torch.inference_mode():
            return self._task().predict(self.model, self.tokenizer, inputs, meta.get("labels"),
                                        self._max_length(meta), self.batch_size, options)

    def predict(self, inputs: Sequence[Any], adapter: str | None = None) -> list[dict[str, Any]]:
        """classify -> label, score, scores; multilabel -> labels, scores; tag -> entities with
        character offsets; span_qa -> answer, score, start, end. ``adapter``: which LoRA adapter
        answers (when several are loaded)."""
        return self.predict_parsed([self.parse(record, f"inputs[{i}]", adapter) for i, record in enumerate(inputs)],
                                   adapter)

    def embed(self, texts: Sequence[str], pooling: str = "mean") -> np.ndarray:
        """(N, H) float32 sentence vectors (mean pooling over the encoder's last hidden states)."""
        encoder = self.encoder
        if self.generates:
            raise ConfigError(f"{self.path}: is a language model (a decoder); it generates text but does not embed")
        if encoder is None:
            raise ConfigError(f"{self.path}: an ONNX {self.task} model has no hidden-state output; "
                              "serve the torch checkpoint (or an ONNX export of the bare encoder) to embed")
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise InputDataError(f"inputs[{i}]: must be a non-empty string")
            check_encodable(text, f"inputs[{i}]")
        # With adapters: the base encoder's embeddings, whichever adapter answered last.
        with self.model.disable_adapter() if self.adapters else contextlib.nullcontext():
            return embed_texts(encoder, self.tokenizer, texts, pooling, self.batch_size, self.max_length,
                               progress=False)

    def stream(self, prompts: str | Sequence[str], options: GenerationOptions | None = None
               ) -> Iterator[GenerationStep]:
        """A decoder's new text, token by token: one ``GenerationStep`` per token (the prompts are
        checked before the first)."""
        return stream_generate(self._decoder(), self.tokenizer, prompts, **options_dict(options or GenerationOptions()))

    def generate(self, prompts: str | Sequence[str], options: GenerationOptions | None = None) -> list[Completion]:
        """A decoder's completion of each prompt: text, tokens generated, finish reason (stop or length)."""
        return generate_text(self._decoder(), self.tokenizer, prompts, **options_dict(options or GenerationOptions()))

    def _decoder(self) -> GPT:
        if not isinstance(self.model, GPT):
            raise ConfigError(f"{self.path}: is not a language model (a decoder such as GPT-2); only a decoder "
                              "checkpoint generates text (`nlpforge pretrain --objective clm` trains one)")
        return self.model

    def _task(self) -> Task:
        if self.generates:
            raise ConfigError(f"{self.path}: is a language model (a decoder); it generates text and has no task "
                              "to predict")
        if self.task_spec is None:
            raise ConfigError(f"{self.path}: is a bare encoder with no task head; it can only embed")
        return self.task_spec

