"""Community QA: the FAQ index, answers of the most similar question, re-ranking by a pair classifier,
P@1 / MRR over grouped pairs, `nlpforge cqa` and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from nlpforge.errors import ConfigError, InputDataError
from nlpforge.qa import load_qa_system
from nlpforge.qa.answer import DocumentQA
from nlpforge.qa.cqa import CommunityQA, build_faq_index, evaluate_pairs, fused_score, read_faq
from nlpforge.qa.index import QAIndex

pytestmark = pytest.mark.usefixtures("one_thread")

FAQ = "question\tanswer\nba be bi bo\tanswer one\nca ce ci co\tanswer two\nda de di do\tanswer three\n"


class StubClassifier:
    """A pair classifier whose 'same' probability is given per pair (0 for the others)."""

    path = "stub"
    task = "classify"

    def __init__(self, same: dict[tuple[str, str], float]) -> None:
        self.same, self.labels = same, ["0", "1"]

    def predict(self, inputs):
        out = []
        for record in inputs:
            p = self.same.get((record["text"], record["text_pair"]), 0.0)
            out.append({"label": "1" if p >= 0.5 else "0", "score": max(p, 1 - p), "scores": {"0": 1 - p, "1": p}})
        return out

    def parse(self, record, where):
        return record


def test_faq_answers_come_from_the_most_similar_question(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "faq.tsv").write_text(FAQ, encoding="utf-8")
    assert [q for _, q, _ in read_faq(tmp_path / "faq.tsv")] == ["ba be bi bo", "ca ce ci co", "da de di do"]
    built = build_faq_index(tmp_path / "faq.tsv", tmp_path / "index", "bm25", progress=False)
    assert built.record["kind"] == "faq" and built.record["passages"] == 3
    qa = CommunityQA(QAIndex.load(tmp_path / "index"))
    answer = qa.ask("ca ce ci")
    assert answer["answer"] == "answer two" and answer["matched_question"] == "ca ce ci co"
    assert answer["source"].endswith("faq.tsv:3")
    # a re-ranker overrides retrieval's order
    stub = StubClassifier({("ba be ce", "ba be bi bo"): 0.2, ("ba be ce", "ca ce ci co"): 0.9})
    reranked = CommunityQA(QAIndex.load(tmp_path / "index"), stub, candidates=3)
    assert qa.ask("ba be ce")["answer"] == "answer one"  # retrieval alone: the most shared words
    assert reranked.ask("ba be ce")["answer"] == "answer two"
    assert isinstance(load_qa_system(tmp_path / "index"), CommunityQA)
    with pytest.raises(ConfigError, match="is an FAQ index; ask it with `nlpforge cqa ask`"):
        DocumentQA(QAIndex.load(tmp_path / "index"), type("R", (), {"task": "span_qa", "path": "r"})())

    code, stdout, stderr = run_cli(monkeypatch, capsys, "cqa", "ask", tmp_path / "index", "da de")
    assert code == 0 and json.loads(stdout)["answer"] == "answer three", stderr


def test_rank_weight_trades_the_classifier_against_retrieval_order(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "faq.tsv").write_text(FAQ, encoding="utf-8")
    build_faq_index(tmp_path / "faq.tsv", tmp_path / "index", "bm25", progress=False)
    index = QAIndex.load(tmp_path / "index")
    # retrieval puts "ba be bi bo" first (rank 0), "ca ce ci co" second (rank 1)
    stub = StubClassifier({("ba be ce", "ba be bi bo"): 0.5, ("ba be ce", "ca ce ci co"): 0.8})
    entries = CommunityQA(index, stub, candidates=3).candidates_of(["ba be ce"])[0]
    assert [e["passage"].text for e in entries[:2]] == ["ba be bi bo", "ca ce ci co"]
    assert [e["rank"] for e in entries] == [0, 1] and entries[1]["probability"] == 0.8  # "da .." shares no word
    # log 0.8 - w > log 0.5  <=>  w < log 1.6 = 0.47
    assert CommunityQA(index, stub, 3, rank_weight=0.0).ask("ba be ce")["answer"] == "answer two"
    assert CommunityQA(index, stub, 3, rank_weight=0.4).ask("ba be ce")["answer"] == "answer two"
    top = CommunityQA(index, stub, 3, rank_weight=0.5).ask("ba be ce")
    assert top["answer"] == "answer one" and top["retrieval_rank"] == 0 and top["probability"] == 0.5
    assert top["score"] == pytest.approx(fused_score(0.5, 0, 0.5), abs=1e-4)
    assert fused_score(0.5, 1, 0.5) == pytest.approx(-1.1931, abs=1e-4)
    assert fused_score(0.0, 2, 0.1) == pytest.approx(-27.631 - 0.2, abs=1e-3)  # floored, not -inf
    with pytest.raises(ConfigError, match="rank_weight must be >= 0"):
        CommunityQA(index, stub, 3, rank_weight=-1.0)
    code, _, stderr = run_cli(monkeypatch, capsys, "cqa", "ask", tmp_path / "index", "da de", "--rank-weight", "-1")
    assert code != 0 and "rank-weight" in stderr


def test_pair_metrics_accuracy_p_at_1_and_mrr() -> None:
    pairs = [("q1", "a", "1"), ("q1", "b", "0"), ("q1", "c", "0"), ("q2", "d", "0"), ("q2", "e", "1"),
             ("q3", "f", "0")]
    same = {("q1", "a"): 0.9, ("q1", "b"): 0.2, ("q1", "c"): 0.6, ("q2", "d"): 0.7, ("q2", "e"): 0.4,
            ("q3", "f"): 0.1}
    report = evaluate_pairs(StubClassifier(same), pairs)
    # wrong: (q1, c) and (q2, d), (q2, e) -> 3 of 6 right; q1 ranks its positive first, q2 second; q3 has none
    assert report == {"accuracy": 50.0, "pairs": 6, "groups": 2, "p@1": 50.0, "mrr": 75.0}


def test_bad_faq_lines_name_the_line(tmp_path: Path) -> None:
    (tmp_path / "faq.tsv").write_text("a\tb\nc\td\te\n", encoding="utf-8")
    with pytest.raises(InputDataError, match=r"faq.tsv:2: 3 column\(s\); an FAQ line is question<TAB>answer"):
        read_faq(tmp_path / "faq.tsv")
