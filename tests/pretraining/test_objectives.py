"""Pre-training objectives: losses equal transformers' on the same batch; blocks; word starts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from torch.testing import assert_close

from conftest import HF_TINY, tiny_hf_model, tiny_tokenizer
from nlpforge.checkpoint import load_checkpoint
from nlpforge.errors import ConfigError
from nlpforge.pretraining import get_objective
from nlpforge.pretraining.sentence_pairs import SentencePairObjective
from nlpforge.pretraining.words import WordStarts


def tiny_pretraining_pair(tmp_path: Path, tokenizer: transformers.PreTrainedTokenizerBase
                          ) -> tuple[transformers.BertForPreTraining, torch.nn.Module]:
    """A random HF BertForPreTraining and the same weights in our mlm+nsp model."""
    config_cls, kwargs = HF_TINY["BertForMaskedLM"]
    torch.manual_seed(0)
    hf = transformers.BertForPreTraining(config_cls(**kwargs)).eval()
    masked_lm = transformers.BertForMaskedLM(config_cls(**kwargs))
    masked_lm.load_state_dict(hf.state_dict(), strict=False)  # encoder + cls.predictions
    masked_lm.save_pretrained(tmp_path / "mlm")
    ours = SentencePairObjective().extend(load_checkpoint(tmp_path / "mlm").model).eval()
    head = ours.extra["pair"]
    head.pooler.load_state_dict(hf.bert.pooler.dense.state_dict())
    head.classifier.load_state_dict(hf.cls.seq_relationship.state_dict())
    return hf, ours


def test_mlm_plus_nsp_loss_equals_bert_for_pretraining(tmp_path: Path, tiny_vocab: Path) -> None:
    tokenizer = tiny_tokenizer(tiny_vocab)
    hf, ours = tiny_pretraining_pair(tmp_path, tokenizer)
    objective = SentencePairObjective()
    documents = [[f"{w} {w}{v} {v}" for w, v in zip("abcdefgh", "hgfedcba", strict=True)] for _ in range(6)]
    blocks = list(objective.blocks(tokenizer, documents, 24, seed=0))
    assert blocks and {b["pair_label"] for b in blocks} <= {0, 1}
    rows = {name: np.array([b[name] for b in blocks]) for name in objective.fields(24)}
    batch = objective.batch(rows, list(range(len(blocks))), tokenizer, epoch=0)
    assert (batch["labels"] != -100).any()
    loss, scores = objective.loss(ours, batch)
    expected = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  token_type_ids=batch["token_type_ids"], labels=batch["labels"],
                  next_sentence_label=batch["pair_label"]).loss
    assert_close(loss, expected, atol=1e-5, rtol=1e-5)
    assert scores.tokens == int((batch["labels"] != -100).sum())


def test_mlm_loss_equals_bert_for_masked_lm(tmp_path: Path, tiny_vocab: Path) -> None:
    tokenizer = tiny_tokenizer(tiny_vocab)
    hf = tiny_hf_model("BertForMaskedLM")
    hf.save_pretrained(tmp_path / "mlm")
    objective = get_objective("mlm")
    ours = objective.extend(load_checkpoint(tmp_path / "mlm").model).eval()
    documents = [["ab ac ad ae", "ba bo bu by", "ca ce ci co"] for _ in range(10)]
    blocks = list(objective.blocks(tokenizer, documents, 16, seed=0))
    rows = {name: np.array([b[name] for b in blocks]) for name in objective.fields(16)}
    batch = objective.batch(rows, list(range(len(blocks))), tokenizer, epoch=1)
    loss, _ = objective.loss(ours, batch)
    assert_close(loss, hf(input_ids=batch["input_ids"], labels=batch["labels"]).loss, atol=1e-5, rtol=1e-5)


def test_clm_loss_equals_gpt2_lm_head_model(tmp_path: Path) -> None:
    hf = tiny_hf_model("GPT2LMHeadModel")
    hf.save_pretrained(tmp_path / "gpt")
    objective = get_objective("clm")
    ours = objective.extend(load_checkpoint(tmp_path / "gpt").model).eval()
    ids = torch.randint(0, 98, (3, 20), generator=torch.Generator().manual_seed(0))
    batch = objective.batch({"input_ids": ids.numpy().astype(np.int32)}, [0, 1, 2], None, epoch=0)
    loss, scores = objective.loss(ours, batch)
    assert_close(loss, hf(input_ids=ids, labels=ids).loss, atol=1e-5, rtol=1e-5)
    assert scores.tokens == 3 * 19


def test_encoder_blocks_keep_the_token_stream_in_order(tiny_vocab: Path) -> None:
    tokenizer = tiny_tokenizer(tiny_vocab)
    objective = get_objective("mlm")
    documents = [["a b c d e f g"], ["h i j k l m n o p q"]]
    blocks = list(objective.blocks(tokenizer, documents, 8, seed=0))
    stream = [i for b in blocks for i in b["input_ids"][1:-1]]
    expected = tokenizer("a b c d e f g", add_special_tokens=False)["input_ids"] + [3] + \
        tokenizer("h i j k l m n o p q", add_special_tokens=False)["input_ids"]
    assert all(b["input_ids"][0] == 2 and b["input_ids"][-1] == 3 and len(b["input_ids"]) == 8 for b in blocks)
    assert stream == expected[: len(stream)] and len(expected) - len(stream) < 6


def test_sentence_order_blocks_swap_half_the_pairs(tiny_vocab: Path) -> None:
    tokenizer = tiny_tokenizer(tiny_vocab)
    objective = get_objective("mlm+sop")
    # document d: sentences of words that all begin with its letter ("ca ce", "ci co", ...)
    documents = [[f"{'abcdefg'[d % 7]}{x} {'abcdefg'[d % 7]}{y}" for x, y in ("ae", "io", "uy", "rs")]
                 for d in range(200)]
    blocks = list(objective.blocks(tokenizer, documents, 12, seed=3))
    labels = [b["pair_label"] for b in blocks]
    assert len(blocks) > 100 and 0.4 < np.mean(labels) < 0.6
    for block in blocks:  # both segments of one document
        ids = [i for i, m in zip(block["input_ids"], block["attention_mask"], strict=True) if m and i > 4]
        assert len({tokenizer.convert_ids_to_tokens(i)[0] for i in ids}) == 1
        assert block["token_type_ids"][: block["input_ids"].index(3) + 1] == [0] * (block["input_ids"].index(3) + 1)


def test_static_masks_repeat_and_dynamic_masks_change(tiny_vocab: Path) -> None:
    tokenizer = tiny_tokenizer(tiny_vocab)
    documents = [["ab ac ad ae af ag ah ai", "ba bo bu by be bi"] for _ in range(20)]
    for static, same in ((True, True), (False, False)):
        objective = get_objective("mlm", static=static)
        blocks = list(objective.blocks(tokenizer, documents, 16, seed=0))
        rows = {name: np.array([b[name] for b in blocks]) for name in objective.fields(16)}
        first = objective.batch(rows, list(range(len(blocks))), tokenizer, epoch=0)
        second = objective.batch(rows, list(range(len(blocks))), tokenizer, epoch=1)
        assert torch.equal(first["labels"], second["labels"]) is same
        # a block's mask does not depend on the other blocks of its batch (processes mask their shares)
        alone = objective.batch({k: v[3:5] for k, v in rows.items()}, [3, 4], tokenizer, epoch=0)
        assert torch.equal(alone["labels"], first["labels"][3:5])


def test_word_starts_wordpiece_and_chinese() -> None:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "play", "##ing", "the", "我", "们", "喜", "欢", "北", "京"]
    tokenizer = transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    words = WordStarts(tokenizer)
    text = "playing the"
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    assert words.of(text, encoded["input_ids"], encoded["offset_mapping"]) == [True, False, True]
    text = "我们喜欢北京"
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    assert words.of(text, encoded["input_ids"], encoded["offset_mapping"]) == [True, False, True, False, True, False]


def test_unknown_objective_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="mlm, wwm, span, mlm\\+nsp, mlm\\+sop, clm"):
        get_objective("bert")


def test_next_sentence_blocks_draw_half_their_b_segments_from_other_documents(tiny_vocab: Path) -> None:
    tokenizer = tiny_tokenizer(tiny_vocab)
    objective = get_objective("mlm+nsp")
    documents = [[f"{'abcdefg'[d % 7]}{x} {'abcdefg'[d % 7]}{y}" for x, y in ("ae", "io", "uy", "rs")]
                 for d in range(200)]
    blocks = list(objective.blocks(tokenizer, documents, 12, seed=4))
    assert len(blocks) > 100 and 0.4 < np.mean([b["pair_label"] for b in blocks]) < 0.6
    for block in blocks:
        ids = block["input_ids"]
        middle = ids.index(3)  # the [SEP] after segment A
        a = {tokenizer.convert_ids_to_tokens(i)[0] for i in ids[1:middle]}
        b = {tokenizer.convert_ids_to_tokens(i)[0] for i in ids[middle + 1:] if i > 4}
        assert len(a) == 1 and len(b) == 1
        if block["pair_label"] == 0:
            assert a == b  # the true continuation comes from the same document
        assert block["token_type_ids"][middle + 1] == 1
