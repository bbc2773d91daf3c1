"""The decoder equals GPT2LMHeadModel: logits, greedy generations, KV cache, sampling controls."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from conftest import tiny_hf_model
from nlpforge.checkpoint import load_checkpoint
from nlpforge.models.gpt import GPT, pick_next_token

PAD = 98


@pytest.fixture
def models(tmp_path: Path) -> tuple[torch.nn.Module, GPT]:
    hf = tiny_hf_model("GPT2LMHeadModel")
    hf.save_pretrained(tmp_path)
    return hf, load_checkpoint(tmp_path).model


def left_padded_prompts() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 98, (3, 6), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    mask[2, :4] = 0
    ids[mask == 0] = PAD
    return ids, mask


def test_logits_hidden_states_and_attentions_match(models: tuple) -> None:
    hf, ours = models
    ids, mask = left_padded_prompts()
    right_mask = mask.flip(1)  # right padding: forward passes use plain positions 0..T-1
    with torch.no_grad():
        expected = hf(ids, attention_mask=right_mask, output_hidden_states=True, output_attentions=True)
        got = ours(ids, right_mask, output_hidden_states=True, output_attentions=True)
    assert_close(got.logits, expected.logits, atol=1e-5, rtol=1e-5)
    for a, b in zip(got.hidden_states, expected.hidden_states, strict=True):
        assert_close(a, b, atol=1e-5, rtol=1e-5)
    real = right_mask.bool()
    for a, b in zip(got.attentions, expected.attentions, strict=True):
        assert_close(a.transpose(1, 2)[real], b.transpose(1, 2)[real], atol=1e-5, rtol=1e-5)


def test_greedy_20_tokens_equal_transformers(models: tuple) -> None:
    hf, ours = models
    prompt = torch.tensor([[5, 17, 42, 3, 77]])
    expected = hf.generate(prompt, max_new_tokens=20, do_sample=False, pad_token_id=PAD)
    got = ours.generate(prompt, max_new_tokens=20, pad_token_id=PAD)
    assert got.shape[1] == expected.shape[1]
    assert got.tolist() == expected.tolist()
    assert len(set(got[0, 5:].tolist())) > 2  # a varied continuation, not one repeated token


def test_batched_left_padded_greedy_equals_transformers(models: tuple) -> None:
    hf, ours = models
    ids, mask = left_padded_prompts()
    expected = hf.generate(ids, attention_mask=mask, max_new_tokens=20, do_sample=False, pad_token_id=PAD)
    got = ours.generate(ids, attention_mask=mask, max_new_tokens=20, pad_token_id=PAD)
    assert got.tolist() == expected.tolist()


def test_left_padding_does_not_change_a_prompt_continuation(models: tuple) -> None:
    _, ours = models
    ids, mask = left_padded_prompts()
    alone = ours.generate(ids[2:, 4:], max_new_tokens=10, stop_token_ids=[])
    batched = ours.generate(ids, attention_mask=mask, max_new_tokens=10, stop_token_ids=[])
    assert batched[2, 6:].tolist() == alone[0, 2:].tolist()


def test_kv_cache_equals_recomputation(models: tuple) -> None:
    _, ours = models
    ids, mask = left_padded_prompts()
    cached = ours.generate(ids, attention_mask=mask, max_new_tokens=15, use_cache=True, stop_token_ids=[])
    recomputed = ours.generate(ids, attention_mask=mask, max_new_tokens=15, use_cache=False, stop_token_ids=[])
    assert cached.tolist() == recomputed.tolist()


def test_cached_step_logits_equal_full_forward(models: tuple) -> None:
    _, ours = models
    ids = torch.tensor([[4, 8, 15, 16, 23, 42]])
    with torch.no_grad():
        full = ours(ids).logits
        first = ours(ids[:, :4], use_cache=True)
        step = ours(ids[:, 4:], past_key_values=first.past_key_values, use_cache=True)
    assert_close(step.logits, full[:, 4:], atol=1e-5, rtol=1e-5)


def test_stop_token_ends_and_pads(models: tuple) -> None:
    _, ours = models
    prompt = torch.tensor([[5, 17, 42, 3, 77]])
    free = ours.generate(prompt, max_new_tokens=10, stop_token_ids=[])
    stop = int(free[0, 7])  # the third generated token
    stopped = ours.generate(prompt, max_new_tokens=10, stop_token_ids=[stop], pad_token_id=0)
    first_stop = stopped[0, 5:].tolist().index(stop)
    assert stopped[0, : 5 + first_stop + 1].tolist() == free[0, : 5 + first_stop + 1].tolist()
    assert stopped.shape[1] == 5 + first_stop + 1  # the only sequence stopped: generation ends


def test_sampling_controls() -> None:
    logits = torch.tensor([[0.0, 3.0, 2.9, -1.0], [5.0, 0.0, 0.0, 0.0]])
    assert pick_next_token(logits, 0.0, 0, 1.0).tolist() == [1, 0]
    # top_k = 1 and a tiny top_p both leave only the argmax.
    assert pick_next_token(logits, 1.0, 1, 1.0).tolist() == [1, 0]
    assert pick_next_token(logits, 1.0, 0, 1e-6).tolist() == [1, 0]
    # top_k = 2 only ever draws the two best tokens.
    draws = {int(pick_next_token(logits[:1], 5.0, 2, 1.0)[0]) for _ in range(200)}
    assert draws == {1, 2}
    seeded = [pick_next_token(logits, 1.5, 0, 0.9, torch.Generator().manual_seed(7)).tolist() for _ in range(2)]
    assert seeded[0] == seeded[1]


def test_generate_rejects_bad_settings(models: tuple) -> None:
    from nlpforge.errors import ConfigError

    _, ours = models
    with pytest.raises(ConfigError, match="top_p"):
        ours.generate(torch.tensor([[1, 2]]), top_p=0.0)
