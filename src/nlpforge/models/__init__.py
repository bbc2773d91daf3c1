"""Model families, one file each; ``build_model`` picks the class for a config and a head."""

from __future__ import annotations

from torch import nn

from nlpforge.config import ModelConfig
from nlpforge.errors import ConfigError
from nlpforge.models.bert import BertForMaskedLM, BertModel
from nlpforge.models.gpt import GPT

# (family, head) -> class. "base" is the bare encoder, "mlm" adds the masked-LM head,
# "lm" is the causal language model.
MODEL_CLASSES: dict[tuple[str, str], type[nn.Module]] = {
    ("bert", "base"): BertModel,
    ("bert", "mlm"): BertForMaskedLM,
    ("gpt", "lm"): GPT,
}


def build_model(config: ModelConfig, head: str) -> nn.Module:
    """A randomly initialised model of this config with the given head."""
    cls = MODEL_CLASSES.get((config.family, head))
    if cls is None:
        heads = sorted(h for f, h in MODEL_CLASSES if f == config.family)
        raise ConfigError(f"no {head!r} head for the {config.family} family; choose one of {', '.join(heads)}")
    return cls(config)


__all__ = ["GPT", "MODEL_CLASSES", "BertForMaskedLM", "BertModel", "build_model"]
