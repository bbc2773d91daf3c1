"""Hugging Face <-> nlpforge weights for the decoder family (gpt2).

GPT-2 stores its projections as Conv1D, (in, out); ours are nn.Linear, (out, in): op ``t``.
A bare ``GPT2Model`` has no prefix (``h.0...``); ``GPT2LMHeadModel`` prefixes ``transformer.``
and adds ``lm_head.weight``, tied to the token embeddings. The ``classify`` head is
``GPT2ForSequenceClassification``: ``transformer.*`` + ``score.weight``, ours ``decoder.*`` + ``head.weight``
(tasks/classify.py, ``DecoderSequenceClassifier``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from nlpforge.config import ModelConfig
from nlpforge.convert.keymap import Entry, check_keys, check_shapes, entry, expand, hf_to_ours, ours_to_hf
from nlpforge.errors import ConversionError
from nlpforge.models.gpt import GPT
from nlpforge.tasks import DECODER_HEAD_MODELS

PREFIX = "transformer."
LM_HEAD = "lm_head.weight"
HEADS = ("lm", *DECODER_HEAD_MODELS)
# Task heads: our key (under the task model) -> GPT2For* key.
TASK_HEADS = {"classify": [entry("head.weight", "score.weight")]}
# Causal-mask buffers that old GPT-2 checkpoints saved per layer; they hold no learned values.
IGNORED_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")

GPT2 = [
    entry("embed.token.weight", "wte.weight"),
    entry("embed.position.weight", "wpe.weight"),
    *(entry(f"blocks.{{}}.{ours}.{p}", f"h.{{}}.{hf}.{p}")
      for ours, hf in (("norm1", "ln_1"), ("norm2", "ln_2")) for p in ("weight", "bias")),
    *(entry(f"blocks.{{}}.{ours}.weight", f"h.{{}}.{hf}.weight", op="t")
      for ours, hf in (("attn.qkv", "attn.c_attn"), ("attn.out", "attn.c_proj"),
                       ("mlp.up", "mlp.c_fc"), ("mlp.down", "mlp.c_proj"))),
    *(entry(f"blocks.{{}}.{ours}.bias", f"h.{{}}.{hf}.bias")
      for ours, hf in (("attn.qkv", "attn.c_attn"), ("attn.out", "attn.c_proj"),
                       ("mlp.up", "mlp.c_fc"), ("mlp.down", "mlp.c_proj"))),
    entry("final_norm.weight", "ln_f.weight"),
    entry("final_norm.bias", "ln_f.bias"),
]


def full_entries(config: ModelConfig, head: str, hf_prefix: str) -> list[Entry]:
    """The key map of a language model (``lm``) or of a task model (its ``decoder.*`` and head)."""
    if head not in HEADS:
        raise ConversionError(f"the gpt family has no {head!r} head; its heads: {', '.join(HEADS)}")
    if head == "lm":
        return expand(GPT2, config.num_layers, hf_prefix=hf_prefix)
    return expand(GPT2, config.num_layers, hf_prefix=PREFIX, ours_prefix="decoder.") + TASK_HEADS[head]


def hf_to_nlpforge(
    state_dict: Mapping[str, torch.Tensor], config: ModelConfig, head: str | None = None
) -> dict[str, torch.Tensor]:
    """HF GPT2Model / GPT2LMHeadModel (head None or ``lm``) or GPT2For* task weights -> ours (a
    ``GPT``'s names, or the task model's); raises on any key mismatch."""
    head = head or "lm"
    what = f"{config.model_type} checkpoint"
    weights = {k: v for k, v in state_dict.items() if not k.endswith(IGNORED_BUFFER_SUFFIXES)}
    lm_head = weights.pop(LM_HEAD, None) if head == "lm" else None
    prefix = PREFIX if any(k.startswith(PREFIX) for k in weights) else ""
    entries = full_entries(config, head, prefix)
    check_keys(weights, {k for e in entries for k in e.hf}, what)
    converted = hf_to_ours(weights, entries)
    if lm_head is not None and not torch.equal(lm_head, converted["embed.token.weight"]):
        raise ConversionError(f"{what}: {LM_HEAD!r} is not tied to the token embeddings (not supported)")
    with torch.device("meta"):
        model = GPT(config) if head == "lm" else DECODER_HEAD_MODELS[head](config)
        expected = {k: v.shape for k, v in model.state_dict().items()}
    check_shapes(converted, expected, what)
    return converted


def nlpforge_to_hf(
    state_dict: Mapping[str, torch.Tensor], config: ModelConfig, head: str = "lm"
) -> dict[str, torch.Tensor]:
    """Our names -> ``GPT2LMHeadModel`` names (``lm_head.weight`` tied to ``wte``), or a task model's
    -> its ``GPT2For*`` names."""
    entries = full_entries(config, head, PREFIX)
    check_keys(state_dict, {e.ours for e in entries}, "nlpforge decoder")
    converted = ours_to_hf(state_dict, entries)
    if head == "lm":
        converted[LM_HEAD] = state_dict["embed.token.weight"]
    return converted
