"""Hugging Face <-> nlpforge weights for the encoder family (bert, roberta, xlm-roberta, distilbert, albert).

Our names (see models/bert.py) are those of ``BertForMaskedLM``: ``encoder.*`` for the encoder and
``mlm.*`` for the masked-LM head. A checkpoint of the bare encoder has no HF prefix
(``embeddings...``); one with a head has the base prefix (``bert.embeddings...``) and head keys.
ALBERT's one shared layer is our ``layers.0`` and HF's layer group 0 (``num_hidden_groups`` 1).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from nlpforge.config import ModelConfig
from nlpforge.convert.keymap import Entry, check_keys, check_shapes, entry, expand, hf_to_ours, ours_to_hf
from nlpforge.errors import ConversionError
from nlpforge.models.bert import BertForMaskedLM
from nlpforge.tasks import HEAD_MODELS

BASE_PREFIX = {"bert": "bert.", "roberta": "roberta.", "xlm-roberta": "roberta.", "distilbert": "distilbert.",
               "albert": "albert."}

# Buffers that old checkpoints saved next to the weights; they hold no learned values.
IGNORED_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")

_EMBEDDINGS = [
    entry("embeddings.word.weight", "embeddings.word_embeddings.weight"),
    entry("embeddings.position.weight", "embeddings.position_embeddings.weight"),
    entry("embeddings.norm.weight", "embeddings.LayerNorm.weight"),
    entry("embeddings.norm.bias", "embeddings.LayerNorm.bias"),
]
_TOKEN_TYPE = [entry("embeddings.token_type.weight", "embeddings.token_type_embeddings.weight")]

_BERT_LAYER = "encoder.layer.{}."
BERT_LAYERS = [
    *(entry(f"layers.{{}}.attn.qkv.{p}", *(f"{_BERT_LAYER}attention.self.{n}.{p}" for n in ("query", "key", "value")),
            op="cat") for p in ("weight", "bias")),
    *(entry(f"layers.{{}}.{ours}.{p}", f"{_BERT_LAYER}{hf}.{p}")
      for ours, hf in (("attn.out", "attention.output.dense"), ("attn_norm", "attention.output.LayerNorm"),
                       ("ffn.up", "intermediate.dense"), ("ffn.down", "output.dense"),
                       ("ffn_norm", "output.LayerNorm"))
      for p in ("weight", "bias")),
]

_DISTIL_LAYER = "transformer.layer.{}."
DISTILBERT_LAYERS = [
    *(entry(f"layers.{{}}.attn.qkv.{p}", *(f"{_DISTIL_LAYER}attention.{n}.{p}" for n in ("q_lin", "k_lin", "v_lin")),
            op="cat") for p in ("weight", "bias")),
    *(entry(f"layers.{{}}.{ours}.{p}", f"{_DISTIL_LAYER}{hf}.{p}")
      for ours, hf in (("attn.out", "attention.out_lin"), ("attn_norm", "sa_layer_norm"),
                       ("ffn.up", "ffn.lin1"), ("ffn.down", "ffn.lin2"), ("ffn_norm", "output_layer_norm"))
      for p in ("weight", "bias")),
]

# ALBERT: the E -> H projection lives in HF's encoder; its layer group {} holds one layer (inner_group_num 1).
_ALBERT_LAYER = "encoder.albert_layer_groups.{}.albert_layers.0."
ALBERT_LAYERS = [
    *(entry(f"layers.{{}}.attn.qkv.{p}", *(f"{_ALBERT_LAYER}attention.{n}.{p}" for n in ("query", "key", "value")),
            op="cat") for p in ("weight", "bias")),
    *(entry(f"layers.{{}}.{ours}.{p}", f"{_ALBERT_LAYER}{hf}.{p}")
      for ours, hf in (("attn.out", "attention.dense"), ("attn_norm", "attention.LayerNorm"),
                       ("ffn.up", "ffn"), ("ffn.down", "ffn_output"), ("ffn_norm", "full_layer_layer_norm"))
      for p in ("weight", "bias")),
]
_EMBEDDING_PROJECTION = [entry(f"embeddings.project.{p}", f"encoder.embedding_hidden_mapping_in.{p}")
                         for p in ("weight", "bias")]

POOLER = [entry("pooler.dense.weight", "pooler.dense.weight"), entry("pooler.dense.bias", "pooler.dense.bias")]
ALBERT_POOLER = [entry("pooler.dense.weight", "pooler.weight"), entry("pooler.dense.bias", "pooler.bias")]

# Masked-LM heads: (key map, HF keys tied to one of ours -> that key of ours).
_BERT_MLM = (
    [entry("transform.weight", "cls.predictions.transform.dense.weight"),
     entry("transform.bias", "cls.predictions.transform.dense.bias"),
     entry("norm.weight", "cls.predictions.transform.LayerNorm.weight"),
     entry("norm.bias", "cls.predictions.transform.LayerNorm.bias"),
     entry("bias", "cls.predictions.bias")],
    {"cls.predictions.decoder.weight": "encoder.embeddings.word.weight",
     "cls.predictions.decoder.bias": "mlm.bias"},
)
_ROBERTA_MLM = (
    [entry("transform.weight", "lm_head.dense.weight"), entry("transform.bias", "lm_head.dense.bias"),
     entry("norm.weight", "lm_head.layer_norm.weight"), entry("norm.bias", "lm_head.layer_norm.bias"),
     entry("bias", "lm_head.bias")],
    {"lm_head.decoder.weight": "encoder.embeddings.word.weight", "lm_head.decoder.bias": "mlm.bias"},
)
_DISTILBERT_MLM = (
    [entry("transform.weight", "vocab_transform.weight"), entry("transform.bias", "vocab_transform.bias"),
     entry("norm.weight", "vocab_layer_norm.weight"), entry("norm.bias", "vocab_layer_norm.bias"),
     entry("bias", "vocab_projector.bias")],
    {"vocab_projector.weight": "encoder.embeddings.word.weight"},
)
_ALBERT_MLM = (  # dense maps H -> E (factorised embeddings)
    [entry("transform.weight", "predictions.dense.weight"), entry("transform.bias", "predictions.dense.bias"),
     entry("norm.weight", "predictions.LayerNorm.weight"), entry("norm.bias", "predictions.LayerNorm.bias"),
     entry("bias", "predictions.bias")],
    {"predictions.decoder.weight": "encoder.embeddings.word.weight", "predictions.decoder.bias": "mlm.bias"},
)
MLM_HEADS = {"bert": _BERT_MLM, "roberta": _ROBERTA_MLM, "xlm-roberta": _ROBERTA_MLM,
             "distilbert": _DISTILBERT_MLM, "albert": _ALBERT_MLM}


def _linear(ours: str, hf: str) -> list[Entry]:
    return [entry(f"{ours}.weight", f"{hf}.weight"), entry(f"{ours}.bias", f"{hf}.bias")]


# Task heads (tasks/*.py), ours under "head.". BERT's sequence classifier is its pooler (dense +
# tanh over [CLS]) followed by "classifier"; RoBERTa's is "classifier.dense" + "out_proj";
# DistilBERT's "pre_classifier" (ReLU) + "classifier". All map to our head.dense + head.out.
_ROBERTA_CLASSIFY = _linear("dense", "classifier.dense") + _linear("out", "classifier.out_proj")
TASK_HEADS: dict[str, dict[str, list[Entry]]] = {
    "classify": {
        "bert": _linear("dense", "bert.pooler.dense") + _linear("out", "classifier"),
        "roberta": _ROBERTA_CLASSIFY,
        "xlm-roberta": _ROBERTA_CLASSIFY,
        "distilbert": _linear("dense", "pre_classifier") + _linear("out", "classifier"),
        "albert": _linear("dense", "albert.pooler") + _linear("out", "classifier"),
    },
    "tag": dict.fromkeys(BASE_PREFIX, _linear("out", "classifier")),
    "span_qa": dict.fromkeys(BASE_PREFIX, _linear("out", "qa_outputs")),
    # *ForMultipleChoice: the pooler (DistilBERT: pre_classifier) + a one-score "classifier"
    "multiple_choice": {
        "bert": _linear("dense", "bert.pooler.dense") + _linear("out", "classifier"),
        "roberta": _linear("dense", "roberta.pooler.dense") + _linear("out", "classifier"),
        "xlm-roberta": _linear("dense", "roberta.pooler.dense") + _linear("out", "classifier"),
        "distilbert": _linear("dense", "pre_classifier") + _linear("out", "classifier"),
        "albert": _linear("dense", "albert.pooler") + _linear("out", "classifier"),
    },
}
HEADS = ("base", "mlm", *TASK_HEADS)


def encoder_entries(config: ModelConfig, hf_prefix: str) -> list[Entry]:
    """The encoder's key map for this config, HF keys with ``hf_prefix`` in front."""
    albert = config.model_type == "albert"
    layers = DISTILBERT_LAYERS if config.model_type == "distilbert" else ALBERT_LAYERS if albert else BERT_LAYERS
    entries = _EMBEDDINGS + (_TOKEN_TYPE if config.type_vocab_size else []) + layers
    if albert:
        entries = entries + _EMBEDDING_PROJECTION
    if config.has_pooler:
        entries = entries + (ALBERT_POOLER if albert else POOLER)
    stored_layers = 1 if config.shared_layers else config.num_layers
    return expand(entries, stored_layers, hf_prefix=hf_prefix, ours_prefix="encoder.")


def head_entries(config: ModelConfig, head: str) -> tuple[list[Entry], dict[str, str]]:
    """The head's key map (ours prefixed ``mlm.`` or ``head.``) and its tied HF aliases."""
    if head == "base":
        return [], {}
    if head == "mlm":
        entries, tied = MLM_HEADS[config.model_type]
        return expand(entries, 0, ours_prefix="mlm."), tied
    if head not in TASK_HEADS:
        raise ConversionError(f"unknown head {head!r}; heads of the encoder family: {', '.join(HEADS)}")
    return expand(TASK_HEADS[head][config.model_type], 0, ours_prefix="head."), {}


def full_entries(config: ModelConfig, head: str, prefixed: bool) -> tuple[list[Entry], dict[str, str]]:
    """Encoder + head key map. HF prefixes the encoder (``bert.``...) whenever a head is present."""
    entries, tied = head_entries(config, head)
    prefix = BASE_PREFIX[config.model_type] if prefixed else ""
    return encoder_entries(config, prefix) + entries, tied


def normalise_legacy_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename TF-era LayerNorm ``gamma``/``beta`` to ``weight``/``bias``; drop saved buffers."""
    renamed = {}
    for key, tensor in state_dict.items():
        if key.endswith(IGNORED_BUFFERS):
            continue
        if key.endswith(".gamma"):
            key = key[: -len("gamma")] + "weight"
        elif key.endswith(".beta"):
            key = key[: -len("beta")] + "bias"
        renamed[key] = tensor
    return renamed


def detect_head(state_dict: Mapping[str, torch.Tensor], config: ModelConfig) -> str:
    """``mlm`` when the weights carry a masked-LM head, else ``base`` (task heads are named in
    config.json's ``architectures``, since their keys alone are ambiguous)."""
    mlm_keys = {k for e in MLM_HEADS[config.model_type][0] for k in e.hf}
    return "mlm" if mlm_keys & set(state_dict) else "base"


def hf_to_nlpforge(
    state_dict: Mapping[str, torch.Tensor], config: ModelConfig, head: str | None = None
) -> dict[str, torch.Tensor]:
    """HF encoder (+ head) -> our ``encoder.*`` / ``mlm.*`` / ``head.*`` names.

    ``head=None`` detects a masked-LM head. Raises ConversionError naming any unknown, missing
    or mis-shaped key.
    """
    state_dict = normalise_legacy_keys(state_dict)
    head = head or detect_head(state_dict, config)
    prefixed = any(k.startswith(BASE_PREFIX[config.model_type]) for k in state_dict)
    entries, tied = full_entries(config, head, prefixed)
    tied_present = {k: v for k, v in tied.items() if k in state_dict}
    what = f"{config.model_type} checkpoint"
    check_keys(set(state_dict) - set(tied_present), {k for e in entries for k in e.hf}, what)
    converted = hf_to_ours(state_dict, entries)
    for hf_key, ours_key in tied_present.items():
        if not torch.equal(state_dict[hf_key], converted[ours_key]):
            raise ConversionError(
                f"{what}: {hf_key!r} is not tied to {ours_key!r} (untied output embeddings are not supported)"
            )
    check_shapes(converted, expected_shapes(config, head), what)
    return converted


def expected_shapes(config: ModelConfig, head: str) -> dict[str, torch.Size]:
    """Shapes of the weights of an encoder of this config with this head, under our names."""
    with torch.device("meta"):
        model = HEAD_MODELS[head](config) if head in HEAD_MODELS else BertForMaskedLM(config)
        return {k: v.shape for k, v in model.state_dict().items()}


def nlpforge_to_hf(state_dict: Mapping[str, torch.Tensor], config: ModelConfig, head: str) -> dict[str, torch.Tensor]:
    """Our names -> HF names, the exact inverse of ``hf_to_nlpforge``.

    A bare encoder gets the unprefixed layout (as ``BertModel`` saves it), an encoder with a head
    the prefixed one. Tied HF keys (the MLM decoder) are emitted as the same tensor they are tied
    to, as in HF's own ``state_dict()``; ``checkpoint.save_hf_weights`` stores them once.
    """
    entries, tied = full_entries(config, head, prefixed=head != "base")
    check_keys(state_dict, {e.ours for e in entries}, "nlpforge encoder")
    converted = ours_to_hf(state_dict, entries)
    for hf_key, ours_key in tied.items():
        converted[hf_key] = state_dict[ours_key]
    return converted
