"""Our models (encoders and every head) equal transformers' on tiny random configs, loaded through the
user's path: save_pretrained, then nlpforge's load_checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from conftest import ENCODER_CLASSES, tiny_hf_model
from nlpforge.checkpoint import load_checkpoint

ATOL = dict(atol=1e-5, rtol=1e-5)


def batch(seed: int = 1) -> dict[str, torch.Tensor]:
    """3 sequences of 9 tokens, the 2nd padded after 5 tokens, 3rd after 7; two segments."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 99, (3, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    attention_mask[2, 7:] = 0
    input_ids[attention_mask == 0] = 1  # the pad id of every tiny config below
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 4:] = 1
    return dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)


@pytest.mark.parametrize("name", ENCODER_CLASSES)
def test_encoder_matches_transformers(name: str, tmp_path: Path) -> None:
    hf = tiny_hf_model(name)
    hf.config.pad_token_id = 1
    hf.save_pretrained(tmp_path)
    ours = load_checkpoint(tmp_path).model
    inputs = batch()
    if "Roberta" in name or "DistilBert" in name:
        inputs.pop("token_type_ids")  # one segment only (type_vocab_size 1 / none)
    with torch.no_grad():
        expected = hf(**inputs, output_hidden_states=True, output_attentions=True)
        got = ours(**inputs, output_hidden_states=True, output_attentions=True)
    real = inputs["attention_mask"].bool()
    if name.endswith("ForQuestionAnswering"):
        assert_close(got.start_logits, expected.start_logits, **ATOL)
        assert_close(got.end_logits, expected.end_logits, **ATOL)
    elif "For" in name:  # masked LM, sequence and token classification
        assert_close(got.logits, expected.logits, **ATOL)
    else:
        assert_close(got.last_hidden_state, expected.last_hidden_state, **ATOL)
        if expected.get("pooler_output") is not None:
            assert_close(got.pooler_output, expected.pooler_output, **ATOL)
    assert len(got.hidden_states) == len(expected.hidden_states) == 3
    for ours_h, hf_h in zip(got.hidden_states, expected.hidden_states, strict=True):
        assert_close(ours_h[real], hf_h[real], **ATOL)
    for ours_a, hf_a in zip(got.attentions, expected.attentions, strict=True):
        assert ours_a.shape == (3, 4, 9, 9)
        assert_close(ours_a, hf_a, **ATOL)


@pytest.mark.parametrize("name", ENCODER_CLASSES)
def test_packed_inference_matches_transformers_on_real_tokens(name: str, tmp_path: Path) -> None:
    """``packed=True`` on a padded batch runs the packed path (real tokens only)."""
    hf = tiny_hf_model(name)
    hf.config.pad_token_id = 1
    hf.save_pretrained(tmp_path)
    ours = load_checkpoint(tmp_path).model.eval()
    inputs = batch()
    if "Roberta" in name or "DistilBert" in name:
        inputs.pop("token_type_ids")
    real = inputs["attention_mask"].bool()
    with torch.no_grad():
        expected, got = hf(**inputs), ours(**inputs, packed=True)
    if name.endswith("ForQuestionAnswering"):
        assert_close(got.start_logits[real], expected.start_logits[real], **ATOL)
    elif name.endswith("ForSequenceClassification"):
        assert_close(got.logits, expected.logits, **ATOL)
    elif "For" in name:
        assert_close(got.logits[real], expected.logits[real], **ATOL)
    else:
        assert_close(got.last_hidden_state[real], expected.last_hidden_state[real], **ATOL)
        assert not got.last_hidden_state[~real].any()  # padding positions are zeros on this path


def test_sdpa_packed_and_explicit_attention_agree(tiny_bert_dir: Path) -> None:
    model = load_checkpoint(tiny_bert_dir).model
    inputs = batch()
    real = inputs["attention_mask"].bool()
    with torch.no_grad():
        packed = model(**inputs, packed=True).last_hidden_state
        explicit = model(**inputs, output_attentions=True).last_hidden_state
        padded = model(**inputs).last_hidden_state  # the padded SDPA path
    assert_close(packed[real], explicit[real], **ATOL)
    assert_close(padded, explicit, **ATOL)


def test_roberta_positions_skip_padding(tmp_path: Path) -> None:
    """XLM-R numbers positions from pad_id + 1 over real tokens only: a left-padded copy matches."""
    tiny_hf_model("XLMRobertaModel").save_pretrained(tmp_path)
    model = load_checkpoint(tmp_path).model
    ids = torch.tensor([[0, 7, 8, 9, 2]])
    padded = torch.tensor([[1, 1, 0, 7, 8, 9, 2]])
    with torch.no_grad():
        plain = model(ids).last_hidden_state
        left = model(padded, (padded != 1).long()).last_hidden_state
    assert_close(left[:, 2:], plain, **ATOL)
