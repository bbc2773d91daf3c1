"""ModelConfig: the typed, serialisable description of one transformer.

Presets are plain data (``PRESETS``); a config can also come from a JSON/YAML file or from a
checkpoint directory's Hugging Face ``config.json``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nlpforge.errors import ConfigError

# model_type (as in Hugging Face config.json) -> architecture family implemented in models/.
FAMILY_OF_MODEL_TYPE: dict[str, str] = {
    "bert": "bert",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "distilbert": "bert",
    "gpt2": "gpt",
    "albert": "bert",  # factorised embeddings + one layer shared across depth (models/bert.py)
}
SUPPORTED_MODEL_TYPES = tuple(FAMILY_OF_MODEL_TYPE)
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")


@dataclass
class ModelConfig:
    """Shape and numerics of one transformer; every field is a plain JSON value.

    ``family`` and ``head_dim`` are derived in ``__post_init__`` (``family`` from ``model_type``);
    ``position_offset`` is derived too: RoBERTa/XLM-R number positions from ``pad_token_id + 1``;
    so is ``shared_layers``: ALBERT applies one layer's weights at every depth.
    """

    model_type: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int = 512
    type_vocab_size: int = 2  # 0 = the model has no token-type embedding (DistilBERT, GPT-2)
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    dropout: float = 0.1
    attention_dropout: float = 0.1
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    has_pooler: bool = True  # encoder only: BERT's tanh pooler over the first token
    tie_word_embeddings: bool = True
    num_labels: int = 2  # outputs of a classification or tagging head
    # What a sequence classifier reads: the first token ("cls", BERT's) or the "mean" of the real tokens
    # (sentence-embedding bodies, e.g. after contrastive few-shot tuning). transformers' BERT classes
    # read the first token only: a "mean" model is written with nlpforge_classifier_pooling.
    classifier_pooling: str = "cls"
    # ALBERT only: width E of the token embeddings, projected to hidden_size by the encoder.
    # None (every other model_type): the embeddings are hidden_size wide and not projected.
    embedding_size: int | None = None
    # Structured pruning (compress/prune.py): heads / FFN neurons each layer keeps; None = unpruned.
    layer_heads: list[int] | None = None
    layer_intermediate: list[int] | None = None
    # Derived, never set by hand (kept in the dataclass so that asdict() shows them).
    family: str = field(default="", init=False)
    head_dim: int = field(default=0, init=False)
    position_offset: int = field(default=0, init=False)
    shared_layers: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.model_type not in FAMILY_OF_MODEL_TYPE:
            raise ConfigError(
                f"model_type {self.model_type!r} is not supported; supported: "
                f"{', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                     "max_positions", "num_labels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"config field {name!r} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ConfigError(
                f"hidden_act {self.hidden_act!r} is not supported; use one of {', '.join(ACTIVATIONS)}"
            )
        for name in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"config field {name!r} must be in [0, 1), got {getattr(self, name)}")
        for name in ("layer_heads", "layer_intermediate"):
            sizes = getattr(self, name)
            if sizes is not None and (len(sizes) != self.num_layers or any(n < 0 for n in sizes)):
                raise ConfigError(f"config field {name!r} needs {self.num_layers} non-negative sizes, got {sizes}")
        if self.layer_heads is not None and any(n > self.num_heads for n in self.layer_heads):
            raise ConfigError(f"layer_heads {self.layer_heads} exceeds num_heads {self.num_heads}")
        if self.classifier_pooling not in ("cls", "mean"):
            raise ConfigError(f"config field 'classifier_pooling' must be 'cls' or 'mean', "
                              f"got {self.classifier_pooling!r}")
        self._check_albert()
        self.family = FAMILY_OF_MODEL_TYPE[self.model_type]
        self.head_dim = self.hidden_size // self.num_heads
        uses_offset = self.model_type in ("roberta", "xlm-roberta")
        self.position_offset = (self.pad_token_id or 0) + 1 if uses_offset else 0
        self.shared_layers = self.model_type == "albert"  # HF num_hidden_groups = inner_group_num = 1
        if self.family == "gpt":
            self.has_pooler = False

    def _check_albert(self) -> None:
        """ALBERT's embedding width is required (and only ALBERT has one); its shared layer has no
        per-layer sizes to prune."""
        if self.model_type != "albert":
            if self.embedding_size is not None:
                raise ConfigError(f"config field 'embedding_size' is ALBERT's (model_type 'albert'); a "
                                  f"{self.model_type} model embeds tokens at hidden_size: remove the field")
            return
        value = self.embedding_size
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"model_type 'albert' needs 'embedding_size', a positive integer, got {value!r}")
        if self.layer_heads is not None or self.layer_intermediate is not None:
            raise ConfigError("layer_heads / layer_intermediate (structured pruning) are not supported for "
                              "ALBERT: its layers share one set of weights")

    @property
    def embedding_width(self) -> int:
        """E, the width of the token embeddings: ALBERT's embedding_size, else hidden_size."""
        return self.embedding_size if self.embedding_size is not None else self.hidden_size

    def heads_of_layer(self, index: int) -> int:
        return self.layer_heads[index] if self.layer_heads is not None else self.num_heads

    def intermediate_of_layer(self, index: int) -> int:
        return self.layer_intermediate[index] if self.layer_intermediate is not None else self.intermediate_size

    # ----------------------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        """The init fields only (derived ones are recomputed on load)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(values) - known - {"family", "head_dim", "position_offset", "shared_layers"})
        if unknown:
            raise ConfigError(f"{source}: unknown config field(s) {', '.join(unknown)}; "
                              f"known fields: {', '.join(sorted(known))}")
        try:
            return cls(**{k: v for k, v in values.items() if k in known})
        except TypeError as error:  # a required field is missing
            raise ConfigError(f"{source}: {error}") from None

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> ModelConfig:
        """A named preset from ``PRESETS``, with optional field overrides."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(sorted(PRESETS))}")
        return cls.from_dict({**PRESETS[name], **overrides}, source=f"preset {name!r}")

    @classmethod
    def from_file(cls, path: str | Path) -> ModelConfig:
        """A config written as JSON or YAML (``.yaml``/``.yml``); YAML is parsed with safe_load."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        text = path.read_text(encoding="utf-8")
        try:
            values = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        except (yaml.YAMLError, json.JSONDecodeError) as error:
            raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.') or 'JSON'}: {error}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of config fields at the top level")
        if "preset" in values:
            return cls.from_name(values.pop("preset"), **values)
        return cls.from_dict(values, source=str(path))

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> ModelConfig:
        """The config of a Hugging Face-layout checkpoint directory (its ``config.json``)."""
        from nlpforge.convert.hf_config import config_from_hf, read_hf_config

        return config_from_hf(read_hf_config(Path(path)), source=str(Path(path) / "config.json"))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


# Named presets: data, not code. "tiny-*" are for unit tests (hidden 32, 2 layers, vocab 99).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny-bert": dict(model_type="bert", vocab_size=99, hidden_size=32, num_layers=2, num_heads=4,
                      intermediate_size=37, max_positions=64, type_vocab_size=2),
    "tiny-gpt": dict(model_type="gpt2", vocab_size=99, hidden_size=32, num_layers=2, num_heads=4,
                     intermediate_size=128, max_positions=64, type_vocab_size=0,
                     layer_norm_eps=1e-5, hidden_act="gelu_new", pad_token_id=None,
                     bos_token_id=98, eos_token_id=98),
    "bert-base": dict(model_type="bert", vocab_size=30522, hidden_size=768, num_layers=12,
                      num_heads=12, intermediate_size=3072),
    "minilm-l6-h384": dict(model_type="bert", vocab_size=30522, hidden_size=384, num_layers=6,
                           num_heads=12, intermediate_size=1536),
    "bert-4l-h312": dict(model_type="bert", vocab_size=30522, hidden_size=312, num_layers=4,
                         num_heads=12, intermediate_size=1200),
    # small models to pre-train from scratch (vocab_size, pad/bos/eos come from the tokenizer)
    "bert-6l-h256": dict(model_type="bert", vocab_size=30522, hidden_size=256, num_layers=6, num_heads=4,
                         intermediate_size=1024),
    # ALBERT (Lan et al. 2019): 128-wide embeddings, one layer shared by all 6; no dropout, as ALBERT v2
    "albert-6l-h256": dict(model_type="albert", vocab_size=30000, embedding_size=128, hidden_size=256,
                           num_layers=6, num_heads=4, intermediate_size=1024, hidden_act="gelu_new",
                           dropout=0.0, attention_dropout=0.0),
    "gpt-6l-h256": dict(model_type="gpt2", vocab_size=50257, hidden_size=256, num_layers=6, num_heads=4,
                        intermediate_size=1024, max_positions=512, type_vocab_size=0, layer_norm_eps=1e-5,
                        hidden_act="gelu_new", pad_token_id=None),
    "gpt2": dict(model_type="gpt2", vocab_size=50257, hidden_size=768, num_layers=12, num_heads=12,
                 intermediate_size=3072, max_positions=1024, type_vocab_size=0, layer_norm_eps=1e-5,
                 hidden_act="gelu_new", pad_token_id=None, bos_token_id=50256, eos_token_id=50256),
}
