"""Weight conversion between Hugging Face and nlpforge names, dispatched on the model family."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from nlpforge.config import ModelConfig
from nlpforge.convert import bert, gpt

_FAMILY_MODULES = {"bert": bert, "gpt": gpt}


def hf_to_nlpforge(
    state_dict: Mapping[str, torch.Tensor], config: ModelConfig, head: str | None = None
) -> dict[str, torch.Tensor]:
    """HF state dict -> nlpforge state dict; raises ConversionError naming any mismatched key.

    ``head`` (``base``, ``mlm``, ``classify``, ``tag``, ``span_qa``; ``lm`` for decoders) says
    which head the weights carry; None detects a language-model head or none.
    """
    return _FAMILY_MODULES[config.family].hf_to_nlpforge(state_dict, config, head)


def nlpforge_to_hf(
    state_dict: Mapping[str, torch.Tensor], config: ModelConfig, head: str
) -> dict[str, torch.Tensor]:
    """nlpforge state dict -> HF state dict, the exact inverse of ``hf_to_nlpforge``."""
    return _FAMILY_MODULES[config.family].nlpforge_to_hf(state_dict, config, head)


__all__ = ["hf_to_nlpforge", "nlpforge_to_hf"]
