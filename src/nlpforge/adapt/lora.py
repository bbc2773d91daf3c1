"""LoRA adapters (Hu et al. 2021) on nlpforge models, through ``peft``.

A frozen weight ``W`` (out, in) of a selected linear layer gets a trainable low-rank update:
``h = W x + (alpha / r) * B (A x)``, A (r, in) random, B (out, r) zero at the start, so training
starts from the base model exactly. The task head is new, so it trains in full and is saved with
the adapter (peft's ``modules_to_save``): an adapter without its head is useless on load.

Layers are chosen by the last part of their module name (``qkv``, ``out``, ``up``, ``down``) or by a
group (``attention`` = qkv + out, ``ffn`` = up + down, ``all``), inside the model's body only (the
encoder or the GPT decoder, never the head). Our attention projects q, k and v with one fused
``qkv`` linear, so LoRA on it adapts the three with one rank-r update of the (3H, H) weight.

An adapter directory holds ``adapter_config.json`` + ``adapter_model.safetensors`` (peft's layout),
the tokenizer, and ``nlpforge.json`` naming the base checkpoint (``base_model``), the task and its
labels. ``load_checkpoint`` on it loads the base, applies the adapter and merges it
(``W + (alpha / r) B A``), so a trained adapter predicts, compresses, exports and serves like any
checkpoint; ``merge_adapter_directory`` writes that merged model as a full checkpoint.

``load_adapter_set`` puts several adapters of one base on a single copy of it, unmerged; the
``Predictor`` (and the server, per request) picks one with ``set_adapter`` before each batch, so N
tasks cost one base model in memory plus N adapters and heads.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peft
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlpforge.checkpoint import (
    ADAPTER_CONFIG,
    META_FILE,
    Checkpoint,
    load_checkpoint,
    load_tokenizer,
    read_meta,
    save_checkpoint,
    write_directory_atomically,
)
from nlpforge.errors import CheckpointError, ConfigError
from nlpforge.tasks import get_task, task_model_from_encoder

ADAPTER_WEIGHTS = "adapter_model.safetensors"
TARGET_GROUPS = {"attention": ("qkv", "out"), "ffn": ("up", "down")}
TARGET_GROUPS["all"] = TARGET_GROUPS["attention"] + TARGET_GROUPS["ffn"]
BODIES = ("encoder", "decoder")  # the attribute holding a task model's body (tasks/)


@dataclass
class LoraSettings:
    """Rank, scale and placement of the adapters; ``alpha`` None means ``2 * r``."""

    r: int = 8
    alpha: float | None = None
    dropout: float = 0.05
    targets: str = "attention"  # comma-separated layer names or groups

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ConfigError(f"--lora-r must be >= 1, got {self.r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--lora-dropout must be in [0, 1), got {self.dropout}")
        if self.alpha is None:
            self.alpha = 2.0 * self.r

    @property
    def layer_names(self) -> tuple[str, ...]:
        """The targets with the groups expanded: last parts of module names."""
        names: list[str] = []
        for target in (part.strip() for part in self.targets.split(",") if part.strip()):
            names += TARGET_GROUPS.get(target, (target,))
        if not names:
            raise ConfigError("--lora-targets is empty; name layers (qkv, out, up, down) or groups "
                              f"({', '.join(TARGET_GROUPS)})")
        return tuple(dict.fromkeys(names))


def target_modules(model: nn.Module, settings: LoraSettings) -> list[str]:
    """Full names of the linear layers of ``model``'s body that ``settings`` selects."""
    wanted = settings.layer_names
    found = [name for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and name.split(".")[0] in BODIES and name.split(".")[-1] in wanted]
    missing = [name for name in wanted if not any(f.split(".")[-1] == name for f in found)]
    if missing:
        body = sorted({n.split(".")[-1] for n, m in model.named_modules()
                       if isinstance(m, nn.Linear) and n.split(".")[0] in BODIES})
        raise ConfigError(f"--lora-targets: no linear layer called {', '.join(missing)} in the model's body; "
                          f"its layers are {', '.join(body)} (groups: {', '.join(TARGET_GROUPS)})")
    return found


def add_lora(model: nn.Module, settings: LoraSettings, adapter: str = "default") -> peft.PeftModel:
    """Wrap ``model`` (a task model: body + ``head``) with LoRA adapters; only the adapters and the head train."""
    config = peft.LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                             target_modules=target_modules(model, settings),
                             modules_to_save=["head"] if isinstance(getattr(model, "head", None), nn.Module) else None)
    return peft.get_peft_model(model, config, adapter_name=adapter)


def parameter_counts(model: nn.Module) -> dict[str, Any]:
    """Trainable and total parameters (a wrapped head counts once, as in the merged model)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for name, p in model.named_parameters() if "original_module" not in name
                and "lora_" not in name)
    return {"trainable_parameters": trainable, "total_parameters": total,
            "trainable_percent": round(100.0 * trainable / max(total, 1), 4)}


def lora_settings_of(model: peft.PeftModel) -> dict[str, Any]:
    config = model.peft_config[model.active_adapter]
    return {"r": config.r, "alpha": config.lora_alpha, "dropout": config.lora_dropout,
            "target_modules": sorted(config.target_modules)}


def save_adapter(out_dir: str | Path, model: peft.PeftModel, tokenizer: PreTrainedTokenizerBase | None,
                 meta: dict[str, Any]) -> Path:
    """Write the adapter directory atomically: adapter and head weights, tokenizer, nlpforge.json
    (``meta`` must name the ``base_model``); the record gets the adapter's size and settings."""
    if "base_model" not in meta:
        raise ValueError("an adapter's meta must name its base_model")

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp))
        (tmp / "README.md").unlink(missing_ok=True)  # peft's model-card template
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        record = {**meta, "adapter": "lora", "lora": lora_settings_of(model),
                  "adapter_bytes": (tmp / ADAPTER_WEIGHTS).stat().st_size, **parameter_counts(model)}
        (tmp / META_FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    return write_directory_atomically(Path(out_dir), write)


def is_adapter_directory(directory: Path) -> bool:
    return (Path(directory) / ADAPTER_CONFIG).is_file() and not (Path(directory) / "config.json").is_file()


def base_task_model(meta: dict[str, Any], directory: Path, base: str | None = None) -> tuple[Checkpoint, nn.Module]:
    """The base checkpoint named by an adapter's nlpforge.json, and a fresh task model on its body
    (the head's weights come from the adapter)."""
    base = base or meta.get("base_model")
    if not base:
        raise CheckpointError(f"{directory / META_FILE}: names no base_model; this adapter cannot be loaded")
    try:
        checkpoint = load_checkpoint(base, head="base")
    except CheckpointError as error:
        raise CheckpointError(f"{directory}: cannot load the adapter's base model {base} ({error}); "
                              "pass the base checkpoint's current path") from None
    task = get_task(meta["task"], meta.get("task_settings"))
    labels = meta.get("labels") or []
    if meta.get("classifier_pooling"):  # a head trained over mean-pooled embeddings (adapt/generator.py)
        checkpoint.model.config = dataclasses.replace(checkpoint.model.config,
                                                      classifier_pooling=meta["classifier_pooling"])
    pad = checkpoint.tokenizer.pad_token_id if checkpoint.tokenizer is not None else None
    return checkpoint, task_model_from_encoder(checkpoint.model, task, len(labels) or 2, pad)


def load_adapter(directory: str | Path, base: str | None = None, merge: bool = True) -> Checkpoint:
    """An adapter directory as a checkpoint: the base model with the adapter applied, merged into the
    weights (``merge=False`` keeps the peft wrapper, to switch adapters or disable them)."""
    directory = Path(directory)
    meta = read_meta(directory)
    if "task" not in meta:
        raise CheckpointError(f"{directory}: an adapter directory needs its {META_FILE} (task, labels, base_model)")
    checkpoint, model = base_task_model(meta, directory, base)
    wrapped = peft.PeftModel.from_pretrained(model, str(directory))
    loaded: nn.Module = wrapped.merge_and_unload() if merge else wrapped
    loaded.eval()
    tokenizer = load_tokenizer(directory) or checkpoint.tokenizer
    return Checkpoint(loaded, model.config, tokenizer, directory, meta, get_task(meta["task"]).head)


def load_adapter_set(named: Mapping[str, str | Path], base: str | None = None
                     ) -> tuple[Checkpoint, dict[str, dict[str, Any]]]:
    """Several adapter directories (name -> directory) on one copy of their base, unmerged.

    Returns the checkpoint (its model a ``peft.PeftModel`` holding every adapter, the first active;
    its meta the first adapter's) and each adapter's nlpforge.json by name. ``base`` (default: the
    first adapter's ``base_model``) is loaded once. The adapters must share the task and the head's
    shape: peft keeps one copy of the head per adapter, shaped like the first.
    """
    if not named:
        raise ConfigError("no adapters given; name at least one as NAME=DIRECTORY")
    metas: dict[str, dict[str, Any]] = {}
    for name, directory in named.items():
        if not is_adapter_directory(Path(directory)):
            raise ConfigError(f"adapter {name!r}: {directory} is not a LoRA adapter directory (no {ADAPTER_CONFIG}); "
                              "train one with `nlpforge train ... --lora-r 8`")
        metas[name] = read_meta(Path(directory))
        if "task" not in metas[name]:
            raise CheckpointError(f"{directory}: an adapter directory needs its {META_FILE} (task, labels, base_model)")
    first = next(iter(named))
    for name, meta in metas.items():
        for key, what in (("task", "task"), ("classifier_pooling", "classifier pooling")):
            if meta.get(key) != metas[first].get(key):
                raise ConfigError(f"adapter {name!r} has {what} {meta.get(key)!r} but {first!r} has "
                                  f"{metas[first].get(key)!r}; adapters served together must share it")
        if len(meta.get("labels") or []) != len(metas[first].get("labels") or []):
            raise ConfigError(f"adapter {name!r} has {len(meta.get('labels') or [])} labels but {first!r} has "
                              f"{len(metas[first].get('labels') or [])}; adapters served together need heads of "
                              "one shape (serve the others from another server)")
    checkpoint, model = base_task_model(metas[first], Path(named[first]), base)
    wrapped = peft.PeftModel.from_pretrained(model, str(named[first]), adapter_name=first)
    for name, directory in list(named.items())[1:]:
        wrapped.load_adapter(str(directory), adapter_name=name)
    wrapped.set_adapter(first)
    wrapped.eval()
    tokenizer = load_tokenizer(Path(named[first])) or checkpoint.tokenizer
    return (Checkpoint(wrapped, model.config, tokenizer, Path(named[first]), metas[first],
                       get_task(metas[first]["task"]).head), metas)


def merge_adapter_directory(adapter_dir: str | Path, out_dir: str | Path, base: str | None = None) -> Path:
    """Write the adapter merged into its base as a full checkpoint (the deployable model)."""
    checkpoint = load_adapter(adapter_dir, base)
    meta = {k: v for k, v in checkpoint.meta.items() if k not in ("adapter_bytes",)}
    meta = {**meta, "stage": "lora-merge", "merged_from": str(adapter_dir)}
    return save_checkpoint(out_dir, checkpoint.model, checkpoint.config, checkpoint.tokenizer, checkpoint.head, meta)


__all__ = ["ADAPTER_CONFIG", "TARGET_GROUPS", "LoraSettings", "add_lora", "is_adapter_directory", "load_adapter",
           "load_adapter_set", "merge_adapter_directory", "parameter_counts", "save_adapter", "target_modules"]

