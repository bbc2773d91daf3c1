"""Load and save the checkpoint directory every stage reads and writes.

Layout (Hugging Face, so ``transformers`` loads it too)::

    config.json          HF config of the architecture
    model.safetensors    weights under HF names
    tokenizer files      whatever ``AutoTokenizer.save_pretrained`` writes
    nlpforge.json        task, label names, max length, the stage that made it, its metrics

Loading never unpickles: safetensors, or ``torch.load(weights_only=True)`` for a legacy ``.bin``.
Saving writes a sibling temporary directory and renames it into place, so a crash never leaves
a half-written checkpoint behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from nlpforge import __version__
from nlpforge.config import ModelConfig
from nlpforge.convert import hf_to_nlpforge, nlpforge_to_hf
from nlpforge.convert.hf_config import config_from_hf, config_to_hf, head_from_hf, read_hf_config, require_supported
from nlpforge.errors import CheckpointError
from nlpforge.locate import resolve_directory
from nlpforge.models import build_model
from nlpforge.models.bert import BertModel
from nlpforge.tasks import HEAD_MODELS_OF_FAMILY, TASKS, Task, task_of

META_FILE = "nlpforge.json"
ADAPTER_CONFIG = "adapter_config.json"  # a LoRA adapter directory (peft's layout)
PROMPT_WEIGHTS = "prompt.safetensors"  # a prompt-tuning directory (adapt/prompt.py)
WEIGHTS_FILE = "model.safetensors"
SHARD_INDEX_FILE = "model.safetensors.index.json"
LEGACY_WEIGHTS_FILE = "pytorch_model.bin"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                   "sentencepiece.bpe.model", "spiece.model")
# Heads whose outputs are named labels (config.json's id2label).
LABELLED_HEADS = ("classify", "tag")


@dataclass
class Checkpoint:
    """A loaded model with everything the next stage needs to know about it."""

    model: nn.Module
    config: ModelConfig
    tokenizer: PreTrainedTokenizerBase | None
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    head: str = "base"

    @property
    def task(self) -> Task | None:
        """The task of this model (its nlpforge.json's, or its head's); None for an encoder or LM."""
        return task_of(self.meta, self.head)


def read_hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint under their HF names (safetensors, sharded or not, or legacy .bin)."""
    try:
        if (directory / WEIGHTS_FILE).is_file():
            return load_file(directory / WEIGHTS_FILE)
        if (directory / SHARD_INDEX_FILE).is_file():
            index = json.loads((directory / SHARD_INDEX_FILE).read_text(encoding="utf-8"))
            weights: dict[str, torch.Tensor] = {}
            for shard in sorted(set(index["weight_map"].values())):
                weights.update(load_file(directory / shard))
            return weights
        if (directory / LEGACY_WEIGHTS_FILE).is_file():
            return torch.load(directory / LEGACY_WEIGHTS_FILE, map_location="cpu", weights_only=True)
    except (SafetensorError, OSError, RuntimeError, KeyError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{directory}: cannot read the weights ({error})") from None
    raise CheckpointError(
        f"{directory}: no {WEIGHTS_FILE} (or {LEGACY_WEIGHTS_FILE}); the directory holds no weights"
    )


def load_tokenizer(directory: Path) -> PreTrainedTokenizerBase | None:
    """The fast tokenizer saved beside the weights, or None when the directory has none."""
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        return None
    try:
        return AutoTokenizer.from_pretrained(str(directory), use_fast=True)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{directory}: cannot load the tokenizer ({error})") from None


def read_meta(directory: Path) -> dict[str, Any]:
    path = directory / META_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from None


def load_checkpoint(
    name_or_path: str | os.PathLike[str], head: str = "auto", dtype: torch.dtype = torch.float32
) -> Checkpoint:
    """Load a checkpoint directory (or hub name) into an nlpforge model, in eval mode.

    ``head``: ``auto`` loads the head the checkpoint carries: a task head named in config.json's
    ``architectures`` (``classify``, ``tag``, ``span_qa``), a masked-LM head (``mlm``), the causal
    LM of a decoder (``lm``), or none (``base``). ``base`` loads only the encoder of any of them.
    A LoRA adapter directory (adapt/lora.py) loads as its base model with the adapter merged in, a
    prompt directory (adapt/prompt.py) as its base model with the prompt attached.
    """
    directory = resolve_directory(name_or_path)
    if not (directory / "config.json").is_file() and (directory / ADAPTER_CONFIG).is_file():
        from nlpforge.adapt.lora import load_adapter  # adapt/ builds on this module

        adapted = load_adapter(directory)  # the base model with the adapter merged in
        adapted.model.to(dtype)
        return adapted
    if not (directory / "config.json").is_file() and (directory / PROMPT_WEIGHTS).is_file():
        from nlpforge.adapt.prompt import load_prompt

        prompted = load_prompt(directory)  # the base model with the trained prompt attached
        prompted.model.to(dtype)
        return prompted
    source = str(directory / "config.json")
    hf_config = read_hf_config(directory)
    require_supported(hf_config, source)  # before reading any weights
    hf_weights = read_hf_weights(directory)
    config = config_from_hf(hf_config, source, hf_weights)
    head_models = HEAD_MODELS_OF_FAMILY[config.family]  # the task models of this family, by head
    task_head = head_from_hf(hf_config) if head_from_hf(hf_config) in head_models else None
    if task_head is not None:  # BERT's pooler belongs to the classification head then
        config = dataclasses.replace(config, has_pooler=False)
    weights = hf_to_nlpforge(hf_weights, config, task_head)
    carried = task_head or ("lm" if config.family == "gpt" else
                            "mlm" if any(k.startswith("mlm.") for k in weights) else "base")
    head = carried if head == "auto" else head
    if head not in (carried, "base"):
        raise CheckpointError(f"{directory}: has no {head!r} head weights (it carries {carried!r}); "
                              f"load it with head='base' or head='{carried}'")
    model = head_models[head](config) if head in head_models else build_model(config, head)
    if isinstance(model, BertModel):  # the bare encoder: drop the "encoder." prefix and any head
        weights = {k.removeprefix("encoder."): v for k, v in weights.items() if k.startswith("encoder.")}
    model.load_state_dict({k: v.to(dtype) for k, v in weights.items()}, strict=True)
    model.to(dtype).eval()
    meta = read_meta(directory)
    if "labels" not in meta and head in LABELLED_HEADS and isinstance(hf_config.get("id2label"), dict):
        meta["labels"] = [hf_config["id2label"][str(i)] for i in range(len(hf_config["id2label"]))]
    return Checkpoint(model, config, load_tokenizer(directory), directory, meta, head)


def nlpforge_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights, on the CPU, under the names the converters expect (a bare encoder gets
    ``encoder.``)."""
    state = {key: value.cpu() for key, value in model.state_dict().items()}
    if isinstance(model, BertModel):
        return {f"encoder.{k}": v for k, v in state.items()}
    return dict(state)


def save_hf_weights(weights: dict[str, torch.Tensor], path: Path) -> None:
    """Write HF-named weights as safetensors, storing tensors that share memory (tied) once."""
    seen: set[tuple[int, tuple[int, ...]]] = set()
    unique = {}
    for key, tensor in weights.items():
        identity = (tensor.data_ptr(), tuple(tensor.shape))
        if identity in seen and tensor.numel():  # empty tensors (pruned away) all share data_ptr 0
            continue  # a tied alias (MLM decoder, GPT-2 lm_head): transformers re-ties it on load
        seen.add(identity)
        unique[key] = tensor.detach().contiguous()
    save_file(unique, str(path), metadata={"format": "pt"})


def write_directory_atomically(out_dir: Path, write: Callable[[Path], None], last: str = META_FILE) -> Path:
    """Call ``write(tmp_dir)`` on a sibling temporary directory, then rename each file into ``out_dir``.

    Nothing in ``out_dir`` changes unless ``write`` succeeds; every file is then replaced by a
    rename, so it is always whole. ``last`` is moved after the others: its presence and content
    describe a complete write. Files of ``out_dir`` that ``write`` did not produce are kept (a
    training run keeps its metrics log and resume state beside the best model).
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        staged = sorted((p for p in tmp.rglob("*") if p.is_file()), key=lambda p: p.name == last)
        for path in staged:
            target = out_dir / path.relative_to(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o666 & ~umask)  # some writers create private (0600) files; a model is shared
            os.replace(path, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def head_labels(config: ModelConfig, head: str, meta: dict[str, Any] | None) -> list[str] | None:
    """``meta["labels"]``, or ``LABEL_i`` for a head with labels but no names: transformers sizes a
    classification or tagging head from config.json's ``id2label``, so it is always written."""
    if head not in LABELLED_HEADS:
        return None
    return (meta or {}).get("labels") or [f"LABEL_{i}" for i in range(config.num_labels)]


def task_hf_config(config: ModelConfig, head: str, meta: dict[str, Any] | None) -> dict[str, Any]:
    """config.json of a model with this head: the architecture, its labels and the fields its task
    adds for transformers (multilabel: ``problem_type``)."""
    task = TASKS.get((meta or {}).get("task", ""))
    extra = task.hf_config_fields if task is not None and task.head == head else {}
    return {**config_to_hf(config, head, head_labels(config, head, meta)), **extra}


def save_checkpoint(
    out_dir: str | os.PathLike[str],
    model: nn.Module,
    config: ModelConfig,
    tokenizer: PreTrainedTokenizerBase | None,
    head: str,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write the checkpoint directory (HF layout + ``nlpforge.json`` when ``meta`` is given).

    Classification and tagging heads take their label names from ``meta["labels"]``.
    """
    hf_weights = nlpforge_to_hf(nlpforge_state_dict(model), config, head)

    def write(tmp: Path) -> None:
        hf_config = task_hf_config(config, head, meta)
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
        save_hf_weights(hf_weights, tmp / WEIGHTS_FILE)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        if meta is not None:
            record = {"nlpforge_version": __version__, "family": config.family, **meta}
            (tmp / META_FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n",
                                         encoding="utf-8")

    return write_directory_atomically(Path(out_dir), write)


# Training state that a run keeps beside its best model; not part of the model artifact.
TRAINING_STATE = ("resume", "metrics.jsonl")


def directory_size(directory: Path) -> int:
    """Bytes on disk of the model artifact: every file under the directory except training state."""
    directory = Path(directory)
    return sum(p.stat().st_size for p in directory.rglob("*")
               if p.is_file() and p.relative_to(directory).parts[0] not in TRAINING_STATE)
