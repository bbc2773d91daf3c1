"""``nlpforge.evaluate``: a fine-tuned model's metrics on a labelled file (what ``nlpforge eval`` prints).

    import nlpforge
    nlpforge.evaluate("my-model", "dev.tsv")                       # {"accuracy": ..., "macro_f1": ...}
    nlpforge.evaluate("ner-model", "valid.txt", batch_size=32)      # entity P/R/F1
    nlpforge.evaluate("tags-model", "dev.jsonl", label_column="labels")
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from nlpforge.errors import ConfigError


def evaluate(checkpoint: str | os.PathLike[str], data: str | os.PathLike[str], batch_size: int = 64,
             max_length: int | None = None, **data_options: Any) -> dict[str, Any]:
    """The task's metrics of ``checkpoint`` (any artifact: checkpoint, ONNX, INT8) on ``data``.

    The file is read as the model was trained to read it (nlpforge.json ``data``); ``data_options``
    override fields of ``DataOptions`` (``text_column``, ``label_column``, ``encoding``, ...).
    ``max_length`` defaults to the length the model was trained with.
    """
    from nlpforge.artifacts import load_artifact
    from nlpforge.tasks import DataOptions

    artifact = load_artifact(checkpoint)
    if artifact.task is None:
        raise ConfigError(f"{checkpoint}: is not a fine-tuned task model; train one with `nlpforge train`")
    if artifact.tokenizer is None:
        raise ConfigError(f"{checkpoint}: has no tokenizer files")
    known = {field.name for field in dataclasses.fields(DataOptions)}
    unknown = sorted(set(data_options) - known)
    if unknown:
        raise ConfigError(f"evaluate: unknown data option {unknown[0]!r}; known: {', '.join(sorted(known))}")
    options = dataclasses.replace(DataOptions(**(artifact.meta.get("data") or {})), **data_options)
    examples = artifact.task.read(data, options)
    artifact.task.check(examples, artifact.labels, data)
    length = max_length or int(artifact.meta.get("max_length", 128))
    metrics = artifact.task.evaluate(artifact.model, artifact.tokenizer, examples, artifact.labels, length,
                                     batch_size, options)
    return {"checkpoint": str(artifact.path), "data": str(data), **metrics}
