"""SQuAD-layout QA reader: SQuAD v1.1 and CMRC 2018 files, offset repair and every error path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import shared_path
from nlpforge.data.examples import Answer, QAExample
from nlpforge.data.squad import read_squad
from nlpforge.errors import InputDataError

CONTEXT = "Denver Broncos beat the Panthers. The Broncos won."


def squad(*articles: dict) -> dict:
    return {"version": "1.1", "data": list(articles)}


def article(title: str, *qas: dict, context: str = CONTEXT) -> dict:
    return {"title": title, "paragraphs": [{"context": context, "qas": list(qas)}]}


def qa(qid: str, question: str = "Who won?", *answers: tuple[str, int]) -> dict:
    return {"id": qid, "question": question, "answers": [{"text": t, "answer_start": s} for t, s in answers]}


def write(tmp_path: Path, document: object, name: str = "dev.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def error_of(path: Path, **kwargs) -> str:
    with pytest.raises(InputDataError) as caught:
        read_squad(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


def test_squad_layout(tmp_path):
    path = write(tmp_path, squad(article("Super_Bowl", qa("q1", "Who won?", ("Denver Broncos", 0), ("Broncos", 7)))))
    assert read_squad(path) == [
        QAExample(
            id="q1",
            question="Who won?",
            context=CONTEXT,
            answers=[Answer("Denver Broncos", 0), Answer("Broncos", 7)],
            title="Super_Bowl",
        )
    ]


def test_cmrc_layout_with_ids_and_no_title(tmp_path):
    document = {
        "version": "v1.0",
        "data": [
            {
                "id": "DEV_0",
                "paragraphs": [
                    {"id": "DEV_0", "context": "光荣和ω-force开发", "qas": [qa("DEV_0_QUERY_0", "谁?", ("光荣", 0))]}
                ],
            }
        ],
    }
    [example] = read_squad(write(tmp_path, document))
    assert (example.id, example.title, example.answers) == ("DEV_0_QUERY_0", "", [Answer("光荣", 0)])


def test_off_by_n_start_moves_to_the_nearest_occurrence(tmp_path):
    # "Broncos" occurs at 7 and 38; a start of 36 (off by -2) is nearest to 38, a start of 8 to 7
    path = write(tmp_path, squad(article("t", qa("q1", "?", ("Broncos", 36)), qa("q2", "?", ("Broncos", 8)))))
    assert [e.answers[0].start for e in read_squad(path)] == [38, 7]


def test_non_span_reference_answer_is_kept_with_start_minus_one(tmp_path):
    path = write(tmp_path, squad(article("t", qa("q1", "?", ("Denver Broncos", 0), ("a free-form answer", -1)))))
    [example] = read_squad(path)
    assert example.answers == [Answer("Denver Broncos", 0), Answer("a free-form answer", -1)]


def test_start_minus_one_with_a_span_text_is_located(tmp_path):
    path = write(tmp_path, squad(article("t", qa("q1", "?", ("Panthers", -1)))))
    assert read_squad(path)[0].answers == [Answer("Panthers", 24)]


def test_question_without_answers_is_kept(tmp_path):
    path = write(tmp_path, squad(article("t", qa("q1", "?"))))
    assert read_squad(path)[0].answers == []


def test_articles_slice(tmp_path):
    path = write(tmp_path, squad(*(article(f"a{i}", qa(f"q{i}", "?", ("Broncos", 7))) for i in range(5))))
    assert [e.title for e in read_squad(path, articles=(3, 5))] == ["a3", "a4"]
    assert [e.id for e in read_squad(path, articles=(0, 1))] == ["q0"]
    assert error_of(path, articles=(3, 6)).startswith(f"{path}: articles=(3, 6) is out of range; the file has 5")
    assert "out of range" in error_of(path, articles=(2, 2))


def test_missing_file(tmp_path):
    assert "file not found" in error_of(tmp_path / "nope.json")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text("\n", encoding="utf-8")
    assert "empty" in error_of(path)


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"data": [\n  {"title": "x",}\n]}', encoding="utf-8")
    assert error_of(path).startswith(f"{path}:2: not valid JSON")


def test_wrong_top_level(tmp_path):
    assert "expected a JSON object" in error_of(write(tmp_path, [1, 2]))
    assert error_of(write(tmp_path, {"version": "1.1"})).endswith(
        "the top level: missing key 'data'; expected SQuAD-layout JSON"
    )
    assert "key 'data' holds a JSON object, expected array" in error_of(write(tmp_path, {"data": {}}))


def test_no_questions(tmp_path):
    assert "no questions" in error_of(write(tmp_path, squad(article("t"))))


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ({"question": "?", "answers": []}, "data[0].paragraphs[0].qas[0]: missing key 'id'"),
        ({"id": "q7", "answers": []}, "qas[0] (question id 'q7'): missing key 'question'"),
        ({"id": "q7", "question": "?"}, "qas[0] (question id 'q7'): missing key 'answers'"),
        (
            {"id": "q7", "question": "?", "answers": [{"text": "Broncos"}]},
            "(question id 'q7').answers[0]: missing key 'answer_start'",
        ),
        (
            {"id": "q7", "question": "?", "answers": [{"text": "Broncos", "answer_start": "7"}]},
            "(question id 'q7').answers[0]: key 'answer_start' holds a JSON string, expected integer",
        ),
        ({"id": "q7", "question": None, "answers": []}, "key 'question' holds a JSON null, expected string"),
        ({"id": " ", "question": "?", "answers": []}, 'empty "id"'),
        ("not an object", "qas[0]: expected a JSON object, found string"),
    ],
)
def test_missing_and_mistyped_keys(tmp_path, broken, expected):
    path = write(tmp_path, squad(article("t", broken)))
    message = error_of(path)
    assert expected in message


def test_missing_context_and_paragraphs(tmp_path):
    path = write(tmp_path, squad({"title": "t", "paragraphs": [{"qas": []}]}))
    assert "data[0].paragraphs[0]: missing key 'context'" in error_of(path)
    path = write(tmp_path, squad({"title": "t"}))
    assert "data[0]: missing key 'paragraphs'" in error_of(path)


def test_answer_not_in_context_names_the_question(tmp_path):
    path = write(tmp_path, squad(article("t", qa("q9", "?", ("Seahawks", 5)))))
    message = error_of(path)
    assert "question id 'q9'" in message and "'Seahawks' does not occur in the context" in message


def test_no_span_answer_at_all(tmp_path):
    path = write(tmp_path, squad(article("t", qa("q9", "?", ("free text", -1)))))
    assert "(question id 'q9'): no answer is a span" in error_of(path)


def test_empty_answer_text(tmp_path):
    path = write(tmp_path, squad(article("t", qa("q9", "?", (" ", 0)))))
    assert "empty answer text" in error_of(path)


def test_duplicate_id(tmp_path):
    path = write(tmp_path, squad(article("t", qa("q1", "?", ("Broncos", 7)), qa("q1", "?", ("Broncos", 7)))))
    assert "duplicate question id 'q1'" in error_of(path)


@pytest.mark.integration
def test_squad_dev():
    path = shared_path("data", "squad_v1.1", "dev-v1.1.json")
    examples = read_squad(path)
    assert len(examples) == 10570
    assert len({e.title for e in examples}) == 48
    report = read_squad(path, articles=(38, 48))
    assert len({e.title for e in report}) == 10
    assert len(read_squad(path, articles=(0, 38))) + len(report) == 10570
    for e in examples:
        assert all(e.context[a.start : a.start + len(a.text)] == a.text for a in e.answers)


@pytest.mark.integration
def test_cmrc2018():
    trial = read_squad(shared_path("data", "cmrc2018", "cmrc2018_trial.json"))
    dev = read_squad(shared_path("data", "cmrc2018", "cmrc2018_dev.json"))
    assert (len(trial), len(dev)) == (1002, 3219)
    for e in trial + dev:
        assert e.answers[0].start >= 0
        assert all(a.start < 0 or e.context[a.start : a.start + len(a.text)] == a.text for a in e.answers)
