"""Prompt tuning of a frozen encoder: the prompts and the task head train, nothing else.

    prompt       (Lester et al. 2021) P trainable vectors join the input after its first token:
                 embeddings (B, T, H) -> (B, T + P, H); the outputs drop them again -> (B, T, H)
    deep-prompt  (P-tuning v2, Liu et al. 2022) trainable keys and values of P positions at every
                 layer, which every token attends to: per layer (A, P, D) each, expanded over B

The prompt is attached to the encoder (``BertModel.prompt``), so a task model runs it without knowing.
A prompt directory is saved like an adapter: ``prompt.safetensors`` (the prompt and the head),
the tokenizer, and ``nlpforge.json`` naming the base checkpoint; ``load_checkpoint`` on it loads
the base and attaches the prompt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlpforge.adapt.lora import base_task_model
from nlpforge.checkpoint import (
    META_FILE,
    PROMPT_WEIGHTS,
    Checkpoint,
    load_tokenizer,
    read_meta,
    write_directory_atomically,
)
from nlpforge.config import ModelConfig
from nlpforge.errors import CheckpointError, ConfigError
from nlpforge.tasks import encoder_of, get_task

PROMPT_KINDS = ("prompt", "deep-prompt")
INIT_STD = 0.02  # BERT's initializer range


class SoftPrompt(nn.Module):
    """P input vectors inserted after the first token (after [CLS], so first-token heads still read it).

    ``vectors`` (P, H): an ``nn.Parameter`` to train the prompt itself, or a tensor computed elsewhere
    (a prompt generator's output, through which gradients reach the generator).
    """

    def __init__(self, vectors: torch.Tensor) -> None:
        super().__init__()
        self.length = vectors.shape[0]
        self.vectors = vectors  # (P, H); registered as a parameter when it is one

    def extend(self, x: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        B = x.shape[0]
        x = torch.cat([x[:, :1], self.vectors.expand(B, -1, -1).to(x.dtype), x[:, 1:]], dim=1)  # (B, T + P, H)
        if attention_mask is not None:
            ones = attention_mask.new_ones(B, self.length)
            attention_mask = torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], dim=1)
        return x, attention_mask

    def prefix(self, depth: int, batch: int) -> None:
        return None

    def trim(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :1], x[:, 1 + self.length :]], dim=1)  # (B, T, H)


class DeepPrompt(nn.Module):
    """Per layer P trainable keys and values (each (A_layer, P, D)) prepended to the attention's own."""

    def __init__(self, config: ModelConfig, length: int) -> None:
        super().__init__()
        self.length = length
        shapes = [(config.heads_of_layer(i), length, config.head_dim) for i in range(config.num_layers)]
        self.keys = nn.ParameterList(nn.Parameter(torch.randn(shape) * INIT_STD) for shape in shapes)
        self.values = nn.ParameterList(nn.Parameter(torch.randn(shape) * INIT_STD) for shape in shapes)

    def extend(self, x: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        return x, attention_mask

    def prefix(self, depth: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.keys[depth], self.values[depth]
        return keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1)  # (B, A, P, D) each

    def trim(self, x: torch.Tensor) -> torch.Tensor:
        return x


def attach_prompt(model: nn.Module, kind: str, length: int) -> nn.Module:
    """Freeze ``model`` (a task model on an encoder) except its head and attach a new prompt; returns it."""
    if kind not in PROMPT_KINDS:
        raise ConfigError(f"--prompt-tuning {kind!r}: choose one of {', '.join(PROMPT_KINDS)}")
    if length < 1:
        raise ConfigError(f"--prompt-length must be >= 1, got {length}")
    encoder = encoder_of(model)  # a ConfigError for decoders
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    head = getattr(model, "head", None)
    if isinstance(head, nn.Module):
        head.requires_grad_(True)
    config = encoder.config
    encoder.prompt = SoftPrompt(nn.Parameter(torch.randn(length, config.hidden_size) * INIT_STD)) \
        if kind == "prompt" else DeepPrompt(config, length)
    return model


def prompt_kind(model: nn.Module) -> str | None:
    """The kind of prompt attached to ``model``'s encoder, or None."""
    prompt = getattr(getattr(model, "encoder", None), "prompt", None)
    return None if prompt is None else "prompt" if isinstance(prompt, SoftPrompt) else "deep-prompt"


def trained_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The prompt and the head: what a prompt directory stores."""
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters()
            if name.startswith(("encoder.prompt.", "head."))}


def save_prompt(out_dir: str | Path, model: nn.Module, tokenizer: PreTrainedTokenizerBase | None,
                meta: dict[str, Any]) -> Path:
    """Write the prompt directory atomically (``meta`` names the ``base_model``)."""
    weights = trained_weights(model)
    kind = prompt_kind(model)

    def write(tmp: Path) -> None:
        save_file(weights, str(tmp / PROMPT_WEIGHTS), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        record = {**meta, "adapter": kind, "prompt_length": encoder_of(model).prompt.length,
                  "adapter_bytes": (tmp / PROMPT_WEIGHTS).stat().st_size,
                  "trainable_parameters": sum(w.numel() for w in weights.values())}
        (tmp / META_FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    return write_directory_atomically(Path(out_dir), write)


def load_prompt(directory: str | Path) -> Checkpoint:
    """A prompt directory as a checkpoint: its base's task model with the prompt attached."""
    directory = Path(directory)
    meta = read_meta(directory)
    if meta.get("adapter") not in PROMPT_KINDS or "task" not in meta:
        raise CheckpointError(f"{directory}: {META_FILE} does not describe a prompt (adapter, task, base_model)")
    checkpoint, model = base_task_model(meta, directory)
    attach_prompt(model, meta["adapter"], int(meta["prompt_length"]))
    stored = load_file(str(directory / PROMPT_WEIGHTS))
    expected = trained_weights(model)
    wrong = sorted(set(stored) ^ set(expected))
    if wrong:
        raise CheckpointError(f"{directory / PROMPT_WEIGHTS}: unexpected or missing weight {wrong[0]!r}")
    model.load_state_dict(stored, strict=False)  # the frozen rest comes from the base
    model.eval()
    tokenizer = load_tokenizer(directory) or checkpoint.tokenizer
    return Checkpoint(model, model.config, tokenizer, directory, meta, get_task(meta["task"]).head)
