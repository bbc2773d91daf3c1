"""KBQA: the knowledge base in rdflib, entity linking, relation paths learnt from questions, the SPARQL
returned with each answer, the saved directory, `nlpforge kbqa` and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from nlpforge.errors import ConfigError, InputDataError
from nlpforge.qa.kbqa import KBQA, hits_at_1, load_kb, pathquestion_answers, read_kb_questions

TRIPLES = """alice_smith\tspouse\tbob_jones
bob_jones\tnationality\tfrance
bob_jones\tparents\teve_jones
eve_jones\tplace_of_birth\tlyon
alice_smith\tplace_of_birth\tparis
carol_white\tspouse\tdave_brown
dave_brown\tnationality\tspain
dave_brown\tparents\tfrank_brown
frank_brown\tplace_of_birth\tmadrid
carol_white\tplace_of_birth\trome
"""
TEMPLATES = [("what is the nationality of {} 's husband ?", ("spouse", "nationality")),
             ("which country is {} 's spouse from ?", ("spouse", "nationality")),
             ("where was {} born ?", ("place_of_birth",)),
             ("what is the birthplace of {} ?", ("place_of_birth",)),
             ("where was {} 's husband 's father born ?", ("spouse", "parents", "place_of_birth")),
             ("the birthplace of the father of {} 's spouse ?", ("spouse", "parents", "place_of_birth"))]
ANSWERS = {"alice_smith": {("spouse", "nationality"): "france", ("place_of_birth",): "paris",
                           ("spouse", "parents", "place_of_birth"): "lyon"},
           "carol_white": {("spouse", "nationality"): "spain", ("place_of_birth",): "rome",
                           ("spouse", "parents", "place_of_birth"): "madrid"}}


def write_questions(path: Path, topic: str, pathquestion: bool = True) -> Path:
    lines = []
    for template, relations in TEMPLATES:
        answer = ANSWERS[topic][relations]
        if pathquestion:
            hops = [topic]
            for relation in relations:
                hops += [relation, "x"]
            hops[-1] = answer
            lines.append(f"{template.format(topic)}\t{answer}({answer}/)\t{'#'.join(hops)}#<end>#{answer}")
        else:
            lines.append(f"{template.format(topic)}\t{answer}|{answer.upper()}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    path = tmp_path / "kb.txt"
    path.write_text(TRIPLES, encoding="utf-8")
    return path


@pytest.mark.parametrize("pathquestion", [True, False])
def test_paths_learnt_on_one_entity_answer_for_another(kb: Path, tmp_path: Path, pathquestion: bool) -> None:
    train = read_kb_questions(write_questions(tmp_path / "train.txt", "alice_smith", pathquestion))
    test = read_kb_questions(write_questions(tmp_path / "test.txt", "carol_white"))
    system = KBQA.train(load_kb(kb), train)
    assert system.trained_on == len(TEMPLATES)
    report = hits_at_1(system, test)
    assert report == {"hits@1": 100.0, "questions": 6, "topic_entity_accuracy": 100.0, "path_accuracy": 100.0}
    answer = system.ask("where was carol_white 's husband 's father born ?")
    assert answer["answer"] == "madrid" and answer["topic_entity"] == "carol_white"
    assert answer["path"] == ["spouse", "parents", "place_of_birth"]
    rows = list(system.graph.query(answer["sparql"]))  # the SPARQL returned is the one that answers
    assert len(rows) == 1 and str(rows[0][0]).endswith("madrid")


def test_saved_directory_answers_the_same_and_the_cli(kb: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    train = write_questions(tmp_path / "train.txt", "alice_smith")
    test = write_questions(tmp_path / "test.txt", "carol_white")
    code, stdout, stderr = run_cli(monkeypatch, capsys, "kbqa", "train", "--kb", kb, "--train", train,
                                   "--out", tmp_path / "kbqa")
    assert code == 0, stderr
    assert json.loads(stdout)["triples"] == 10
    loaded = KBQA.load(tmp_path / "kbqa")
    assert loaded.ask("where was carol_white born ?")["answer"] == "rome"
    code, stdout, stderr = run_cli(monkeypatch, capsys, "kbqa", "eval", tmp_path / "kbqa", "--data", test)
    assert code == 0 and json.loads(stdout)["hits@1"] == 100.0, stderr
    code, stdout, _ = run_cli(monkeypatch, capsys, "kbqa", "ask", tmp_path / "kbqa", "what is the birthplace of "
                              "Carol White ?")
    line = json.loads(stdout)
    assert line["answer"] == "rome" and "SELECT DISTINCT" in line["sparql"]


def test_served_on_v1_qa_with_or_without_a_model(kb: Path, tmp_path: Path, tiny_bert_dir: Path) -> None:
    from conftest import ready_client
    from nlpforge.predictor import Predictor
    from nlpforge.qa import load_qa_system
    from nlpforge.serve.app import build_app, create_app

    KBQA.train(load_kb(kb), read_kb_questions(write_questions(tmp_path / "t.txt", "alice_smith"))).save(
        tmp_path / "kbqa", {})
    question = {"question": "which country is carol_white 's spouse from ?"}
    client = ready_client(create_app(Predictor.load(tiny_bert_dir), qa=load_qa_system(tmp_path / "kbqa")))
    try:
        body = client.post("/v1/qa", json=question).json()
        assert body["answer"] == "spain" and body["path"] == ["spouse", "nationality"]
        assert client.get("/v1/model").json()["qa"]["triples"] == 10
    finally:
        client.__exit__(None, None, None)
    # a knowledge base needs no model: `nlpforge serve --qa DIR` answers /v1/qa alone
    alone = ready_client(build_app(None, qa=str(tmp_path / "kbqa")))
    try:
        assert alone.post("/v1/qa", json=question).json()["answer"] == "spain"
        assert alone.get("/ready").json()["task"] is None and "path" not in alone.get("/v1/model").json()
        for route in ("/v1/predict", "/v1/embed", "/v1/generate"):
            response = alone.post(route, json={"inputs": ["x"]})
            assert response.status_code == 400 and "use /v1/qa" in response.json()["error"], route
    finally:
        alone.__exit__(None, None, None)
    with pytest.raises(ConfigError, match="nothing to serve"):
        build_app(None)


def test_serve_needs_a_model_or_a_qa_directory(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    code, _, stderr = run_cli(monkeypatch, capsys, "serve", "--port", "0")
    assert code == 2 and "nothing to serve: give a model directory (ARTIFACT), a QA directory (--qa)" in stderr


def test_bad_knowledge_bases_and_questions_name_the_line(tmp_path: Path) -> None:
    (tmp_path / "two.txt").write_text("a\tr\tb\nc\td\n", encoding="utf-8")
    with pytest.raises(InputDataError, match=r"two.txt:2: 2 column\(s\); a knowledge-base line is subject<TAB>"):
        load_kb(tmp_path / "two.txt")
    (tmp_path / "bars.txt").write_text("a ||| r ||| b\n", encoding="utf-8")
    assert len(load_kb(tmp_path / "bars.txt")) == 1
    (tmp_path / "q.txt").write_text("who ?\n", encoding="utf-8")
    with pytest.raises(InputDataError, match=r"q.txt:1: 1 column\(s\); a question line is question<TAB>answer"):
        read_kb_questions(tmp_path / "q.txt")
    (tmp_path / "gb.txt").write_bytes("甲\t关系\t乙\n".encode("gb18030"))
    with pytest.raises(InputDataError, match=r"gb.txt:1: cannot decode as utf-8"):
        load_kb(tmp_path / "gb.txt")
    assert pathquestion_answers("x_(film)(x_(film)/y/)") == ["x_(film)", "y"]
