"""Named outputs every model returns (never positional tuples).

Shapes: B = batch, T = sequence length, H = hidden size, V = vocabulary, A = attention heads.
Optional fields are ``None`` unless asked for (``output_hidden_states`` / ``output_attentions``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# One (key, value) pair per layer, each (B, A, T_past, H/A).
KVCache = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor  # (B, T, H)
    pooler_output: torch.Tensor | None = None  # (B, H), tanh(W h_[CLS]) when the model has a pooler
    hidden_states: tuple[torch.Tensor, ...] | None = None  # embeddings + each layer: L+1 x (B, T, H)
    attentions: tuple[torch.Tensor, ...] | None = None  # each layer's probabilities: L x (B, A, T, T)


@dataclass
class MaskedLMOutput:
    logits: torch.Tensor  # (B, T, V)
    loss: torch.Tensor | None = None  # mean cross-entropy over positions whose label != -100
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class CausalLMOutput:
    logits: torch.Tensor  # (B, T, V)
    loss: torch.Tensor | None = None  # next-token cross-entropy (labels shifted inside)
    past_key_values: KVCache | None = None  # the cache after this step, when use_cache=True
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class DecoderOutput:
    """A decoder's blocks without its LM head (``GPT.body``): what a decoder task head reads."""

    last_hidden_state: torch.Tensor  # (B, T, H), after the final LayerNorm
    past_key_values: KVCache  # every layer's keys and values, the cached ones included
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class TaskOutput:
    """Classification (logits (B, C)) or tagging (logits (B, T, C)) output."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    lm_loss: torch.Tensor | None = None  # a decoder's next-token loss over its input, when given lm_labels


@dataclass
class SpanOutput:
    """Extractive QA output: a start and an end score per token."""

    start_logits: torch.Tensor  # (B, T)
    end_logits: torch.Tensor  # (B, T)
    loss: torch.Tensor | None = None  # mean of start and end cross-entropy
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
