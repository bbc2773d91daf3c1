"""Key maps: exact round trips, and errors that name the offending key."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import HF_TINY, tiny_hf_model
from nlpforge.convert import hf_to_nlpforge, nlpforge_to_hf
from nlpforge.convert.hf_config import config_from_hf, config_to_hf
from nlpforge.errors import CheckpointError, ConversionError


def convert(name: str) -> tuple[torch.nn.Module, dict, object]:
    hf = tiny_hf_model(name)
    state = hf.state_dict()
    config = config_from_hf(hf.config.to_dict(), weights=state)
    return hf, state, config


def head_of(name: str) -> str:
    for suffix, head in (("ForSequenceClassification", "classify"), ("ForTokenClassification", "tag"),
                         ("ForQuestionAnswering", "span_qa"), ("ForMaskedLM", "mlm"), ("LMHeadModel", "lm")):
        if name.endswith(suffix):
            return head
    return "base"


@pytest.mark.parametrize("name", list(HF_TINY))
def test_round_trip_reproduces_the_state_dict_exactly(name: str) -> None:
    _, state, config = convert(name)
    head = head_of(name)
    if head in ("classify", "tag", "span_qa"):
        config = dataclasses.replace(config, has_pooler=False)
    back = nlpforge_to_hf(hf_to_nlpforge(state, config, head), config, head)
    assert sorted(back) == sorted(state)
    for key, tensor in state.items():
        assert torch.equal(back[key], tensor), key


@pytest.mark.parametrize("name", list(HF_TINY))
def test_config_round_trip(name: str) -> None:
    hf, state, config = convert(name)
    head = head_of(name)
    labels = [hf.config.id2label[i] for i in range(hf.config.num_labels)] if head in ("classify", "tag") else None
    again = config_from_hf(config_to_hf(config, head, labels), weights=state)
    assert again == config


def test_unknown_key_is_named() -> None:
    _, state, config = convert("BertModel")
    state["encoder.layer.0.attention.self.rotary.weight"] = torch.zeros(1)
    with pytest.raises(ConversionError, match=r"unknown weight 'encoder\.layer\.0\.attention\.self\.rotary"):
        hf_to_nlpforge(state, config)


def test_missing_key_is_named() -> None:
    _, state, config = convert("GPT2LMHeadModel")
    del state["transformer.h.1.mlp.c_fc.bias"]
    with pytest.raises(ConversionError, match=r"missing weight 'transformer\.h\.1\.mlp\.c_fc\.bias'"):
        hf_to_nlpforge(state, config)


def test_misshaped_key_is_named() -> None:
    _, state, config = convert("DistilBertModel")
    state["transformer.layer.1.ffn.lin1.weight"] = torch.zeros(40, 32)
    with pytest.raises(ConversionError, match=r"layers\.1\.ffn\.up\.weight' has shape \(40, 32\)"):
        hf_to_nlpforge(state, config)


def test_legacy_names_and_buffers_load() -> None:
    """TF-era LayerNorm gamma/beta and saved position_ids buffers, as in real old checkpoints."""
    _, state, config = convert("BertModel")
    legacy = {}
    for key, tensor in state.items():
        if "LayerNorm" in key:
            key = key.replace(".weight", ".gamma").replace(".bias", ".beta")
        legacy[key] = tensor
    legacy["embeddings.position_ids"] = torch.arange(64)[None]
    ours = hf_to_nlpforge(legacy, config)
    assert torch.equal(ours["encoder.embeddings.norm.weight"], state["embeddings.LayerNorm.weight"])


def test_untied_decoder_is_rejected() -> None:
    _, state, config = convert("BertForMaskedLM")
    state["cls.predictions.decoder.weight"] = state["cls.predictions.decoder.weight"].clone() + 1
    with pytest.raises(ConversionError, match="not tied"):
        hf_to_nlpforge(state, config)


def test_unsupported_model_type_lists_supported() -> None:
    with pytest.raises(CheckpointError, match=r"'t5' is not supported; supported: bert, roberta"):
        config_from_hf({"model_type": "t5"})
