"""Hugging Face ``config.json`` fields <-> ``ModelConfig``, one explicit field map per model_type."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from nlpforge.config import SUPPORTED_MODEL_TYPES, ModelConfig
from nlpforge.errors import CheckpointError

# ModelConfig field -> HF field, per model_type (fields not listed keep ModelConfig's default).
_BERT_FIELDS = {
    "vocab_size": "vocab_size", "hidden_size": "hidden_size", "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads", "intermediate_size": "intermediate_size",
    "max_positions": "max_position_embeddings", "type_vocab_size": "type_vocab_size",
    "layer_norm_eps": "layer_norm_eps", "hidden_act": "hidden_act", "dropout": "hidden_dropout_prob",
    "attention_dropout": "attention_probs_dropout_prob", "pad_token_id": "pad_token_id",
    "bos_token_id": "bos_token_id", "eos_token_id": "eos_token_id",
    "tie_word_embeddings": "tie_word_embeddings",
}
FIELD_MAPS: dict[str, dict[str, str]] = {
    "bert": _BERT_FIELDS,
    "roberta": _BERT_FIELDS,
    "xlm-roberta": _BERT_FIELDS,
    "albert": {**_BERT_FIELDS, "embedding_size": "embedding_size"},
    "distilbert": {
        "vocab_size": "vocab_size", "hidden_size": "dim", "num_layers": "n_layers", "num_heads": "n_heads",
        "intermediate_size": "hidden_dim", "max_positions": "max_position_embeddings",
        "hidden_act": "activation", "dropout": "dropout", "attention_dropout": "attention_dropout",
        "pad_token_id": "pad_token_id", "tie_word_embeddings": "tie_word_embeddings",
    },
    "gpt2": {
        "vocab_size": "vocab_size", "hidden_size": "n_embd", "num_layers": "n_layer", "num_heads": "n_head",
        "intermediate_size": "n_inner", "max_positions": "n_positions", "layer_norm_eps": "layer_norm_epsilon",
        "hidden_act": "activation_function", "dropout": "resid_pdrop", "attention_dropout": "attn_pdrop",
        "pad_token_id": "pad_token_id", "bos_token_id": "bos_token_id", "eos_token_id": "eos_token_id",
        "tie_word_embeddings": "tie_word_embeddings",
    },
}
# transformers' defaults for fields a config.json may omit, where they differ from ModelConfig's.
HF_DEFAULTS = {
    "albert": {"embedding_size": 128, "hidden_act": "gelu_new", "dropout": 0.0, "attention_dropout": 0.0},
}
# Values a model_type fixes whatever its config.json says (or omits).
FIXED = {
    "distilbert": {"type_vocab_size": 0, "layer_norm_eps": 1e-12, "has_pooler": False},
    "gpt2": {"type_vocab_size": 0, "has_pooler": False},
}
_ARCHITECTURE_PREFIX = {"bert": "Bert", "roberta": "Roberta", "xlm-roberta": "XLMRoberta", "distilbert": "DistilBert",
                        "albert": "Albert"}
# ALBERT layouts we run: one group of one layer, shared by every depth (ALBERT's published models).
ALBERT_SHARING = {"num_hidden_groups": 1, "inner_group_num": 1}
_HEAD_SUFFIX = {"base": "Model", "mlm": "ForMaskedLM", "classify": "ForSequenceClassification",
                "tag": "ForTokenClassification", "span_qa": "ForQuestionAnswering",
                "multiple_choice": "ForMultipleChoice"}
# (model_type, head) -> the transformers class that loads such a checkpoint.
ARCHITECTURES = {
    **{(model_type, head): prefix + suffix
       for model_type, prefix in _ARCHITECTURE_PREFIX.items() for head, suffix in _HEAD_SUFFIX.items()},
    ("gpt2", "lm"): "GPT2LMHeadModel",
    ("gpt2", "classify"): "GPT2ForSequenceClassification",
}
HEAD_OF_ARCHITECTURE = {architecture: head for (_, head), architecture in ARCHITECTURES.items()}


def head_from_hf(hf: dict[str, Any]) -> str | None:
    """The head named by config.json's ``architectures`` (None when absent or not one of ours)."""
    for architecture in hf.get("architectures") or []:
        if architecture in HEAD_OF_ARCHITECTURE:
            return HEAD_OF_ARCHITECTURE[architecture]
    return None


def read_hf_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{directory}: no config.json; a checkpoint directory needs config.json "
                              "and model.safetensors (Hugging Face layout)")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(values, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return values


def require_supported(hf: dict[str, Any], source: str) -> str:
    """The config's model_type, or an error that lists the supported ones."""
    model_type = hf.get("model_type")
    if model_type not in FIELD_MAPS:
        raise CheckpointError(
            f"{source}: model_type {model_type!r} is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    if model_type == "distilbert" and hf.get("sinusoidal_pos_embds"):
        raise CheckpointError(f"{source}: DistilBERT with sinusoidal_pos_embds is not supported")
    if model_type == "albert":
        for name, supported in ALBERT_SHARING.items():
            if hf.get(name, 1) != supported:
                raise CheckpointError(
                    f"{source}: ALBERT with {name} = {hf[name]!r} is not supported; nlpforge runs ALBERT's "
                    "published layout, num_hidden_groups = 1 and inner_group_num = 1 (one layer shared by all depths)"
                )
    return model_type


def config_from_hf(
    hf: dict[str, Any], source: str = "config.json", weights: Mapping[str, torch.Tensor] | None = None
) -> ModelConfig:
    """HF config.json values -> ModelConfig; unsupported model_type names the supported ones.

    Whether a BERT-type encoder has a pooler is a property of the weights, not of config.json:
    pass ``weights`` (the HF state dict) to decide it; without them the encoder has one.
    """
    model_type = require_supported(hf, source)
    values: dict[str, Any] = {"model_type": model_type, **HF_DEFAULTS.get(model_type, {})}
    for ours, theirs in FIELD_MAPS[model_type].items():
        if hf.get(theirs) is not None or (ours.endswith("token_id") and theirs in hf):
            values[ours] = hf[theirs]
    if isinstance(hf.get("id2label"), dict) and hf["id2label"]:
        values["num_labels"] = len(hf["id2label"])
    if model_type == "gpt2" and "intermediate_size" not in values:
        values["intermediate_size"] = 4 * values["hidden_size"]  # n_inner = None means 4 x n_embd
    for name in ("layer_heads", "layer_intermediate"):  # written by nlpforge's structured pruning
        if hf.get(f"nlpforge_{name}") is not None:
            values[name] = list(hf[f"nlpforge_{name}"])
    if hf.get("nlpforge_classifier_pooling") is not None:
        values["classifier_pooling"] = hf["nlpforge_classifier_pooling"]
    if weights is not None:
        pooler = "pooler.weight" if model_type == "albert" else "pooler.dense.weight"
        values["has_pooler"] = any(k.endswith(pooler) for k in weights)
    values.update(FIXED.get(model_type, {}))
    try:
        return ModelConfig(**values)
    except TypeError as error:
        raise CheckpointError(f"{source}: {error}") from None


def config_to_hf(config: ModelConfig, head: str, labels: list[str] | None = None) -> dict[str, Any]:
    """ModelConfig -> a config.json that ``transformers.AutoConfig`` reads back to the same model.

    ``labels`` (classification / tagging heads) become ``id2label`` / ``label2id``.
    """
    hf: dict[str, Any] = {"model_type": config.model_type,
                          "architectures": [ARCHITECTURES[(config.model_type, head)]]}
    for ours, theirs in FIELD_MAPS[config.model_type].items():
        hf[theirs] = getattr(config, ours)
    for name in ("layer_heads", "layer_intermediate"):
        if getattr(config, name) is not None:  # transformers cannot build such a model: it fails on shapes
            hf[f"nlpforge_{name}"] = getattr(config, name)
    if config.classifier_pooling != "cls":  # transformers pools the first token whatever this says
        hf["nlpforge_classifier_pooling"] = config.classifier_pooling
    if labels is not None:
        hf["id2label"] = dict(enumerate(labels))
        hf["label2id"] = {label: i for i, label in enumerate(labels)}
    if config.model_type == "distilbert":
        hf["sinusoidal_pos_embds"] = False
    if config.model_type == "albert":
        hf.update(ALBERT_SHARING)
    return hf
