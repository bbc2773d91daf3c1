"""Document QA: passages with offsets back into their files, BM25 / dense / hybrid retrieval, the
index directory, answers with evidence, the `nlpforge qa` commands and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli, save_tiny_checkpoint
from nlpforge.data.squad import read_squad
from nlpforge.errors import CheckpointError, ConfigError, InputDataError
from nlpforge.predictor import Predictor
from nlpforge.qa.answer import DocumentQA, evaluate_open
from nlpforge.qa.documents import Document, read_documents, split_passages
from nlpforge.qa.index import QAIndex, build_index
from nlpforge.qa.retrieval import Hit, bm25_terms, reciprocal_rank_fusion

pytestmark = pytest.mark.usefixtures("one_thread")

ARTICLE = ("a b c d e f g h.\n\n"
           "ba be bi bo bu. ca ce ci co cu.\n\n"
           "da de di do du da de di do du da de di do du da de di do du. fa fe fi fo fu fa fe fi fo fu.\n")


def test_passages_point_back_into_their_document() -> None:
    document = Document("doc.txt", ARTICLE)
    passages = split_passages(document, max_chars=40)
    assert [p.id for p in passages] == list(range(len(passages)))
    for passage in passages:
        assert ARTICLE[passage.start:passage.end] == passage.text
        assert len(passage.text) <= 40 and passage.text == passage.text.strip()
    # short paragraphs are packed together, a long one is cut at its sentence end
    assert passages[0].text == "a b c d e f g h."
    assert any(p.text.startswith("fa fe") for p in passages)
    whole = split_passages(document, max_chars=1000)
    assert len(whole) == 1 and whole[0].text == ARTICLE.strip()


def test_chinese_passages_cut_at_sentence_ends() -> None:
    text = "北京是中国的首都。上海是最大的城市！广州在南方？" * 3
    passages = split_passages(Document("zh.txt", text), max_chars=20)
    assert all(p.text.endswith(("。", "！", "？")) and len(p.text) <= 20 for p in passages)
    assert "".join(p.text for p in passages) == text
    assert "北京" in bm25_terms("北京是中国的首都") and bm25_terms("BERT模型")[0] == "bert"


def test_documents_errors_name_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "notes.jsonl").write_text('{"text": "a b"}\n{"title": "x"}\n', encoding="utf-8")
    with pytest.raises(InputDataError, match=r"notes.jsonl:2: needs a \"text\" string"):
        list(read_documents([tmp_path / "notes.jsonl"]))
    (tmp_path / "gb.txt").write_bytes("第一行\n第二行".encode("gb18030"))
    with pytest.raises(InputDataError, match=r"gb.txt:1: cannot decode as utf-8"):
        list(read_documents([tmp_path / "gb.txt"]))
    (tmp_path / "table.csv").write_text("a,b\n", encoding="utf-8")
    with pytest.raises(InputDataError, match=r"table.csv: not a document this index reads"):
        list(read_documents([tmp_path / "table.csv"]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputDataError, match=r"empty: holds no .txt, .md, .jsonl files"):
        list(read_documents([tmp_path / "empty"]))
    (tmp_path / "blank.txt").write_text("  \n", encoding="utf-8")
    with pytest.raises(InputDataError, match="no text to index"):
        build_index([tmp_path / "blank.txt"], tmp_path / "index")
    assert not (tmp_path / "index").exists()


def write_corpus(folder: Path) -> Path:
    folder.mkdir()
    (folder / "animals.md").write_text("ba be bi bo.\n\nca ce ci co.\n", encoding="utf-8")
    records = [{"text": "da de di do du.", "title": "d"}, {"text": "fa fe fi fo fu.", "id": "f"}]
    (folder / "more.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return folder


def test_bm25_dense_and_hybrid_find_the_passage(tiny_bert_dir: Path, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "docs")
    built = build_index([corpus], tmp_path / "index", "hybrid", str(tiny_bert_dir), passage_chars=20, progress=False)
    assert built.record["passages"] == 4 and built.record["documents"] == 3
    index = QAIndex.load(tmp_path / "index")
    assert [p.document.endswith(("more.jsonl:1", "more.jsonl:f")) for p in index.passages[2:]] == [True, True]
    for retriever in ("bm25", "dense", "hybrid"):
        top, _ = index.search("fa fe fi fo fu.", 2, retriever)[0]
        assert top.text == "fa fe fi fo fu.", retriever
    assert index.search("zz", 3, "bm25") == []  # no known word
    bm25_only = build_index([corpus], tmp_path / "bm25", "bm25", progress=False)
    with pytest.raises(ConfigError, match="was built for bm25 retrieval"):
        bm25_only.search("ba", 1, "dense")
    with pytest.raises(ConfigError, match="--retriever dense embeds passages: give --encoder"):
        build_index([corpus], tmp_path / "dense", "dense")


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion([[Hit(1, 9.0), Hit(2, 5.0)], [Hit(2, 0.9), Hit(3, 0.8)]], 3)
    assert [hit.passage for hit in fused] == [2, 1, 3]


def test_answers_come_with_evidence_in_the_source(tiny_vocab: Path, tmp_path: Path, monkeypatch,
                                                  capsys) -> None:
    corpus = write_corpus(tmp_path / "docs")
    reader = save_tiny_checkpoint(tmp_path / "reader", "BertForQuestionAnswering", tiny_vocab)
    build_index([corpus], tmp_path / "index", "bm25", passage_chars=20, progress=False)
    qa = DocumentQA(QAIndex.load(tmp_path / "index"), Predictor.load(reader), top_k=2)
    answer = qa.ask("ca ce ci")
    where = answer["evidence"]
    source = (corpus / "animals.md").read_text(encoding="utf-8")
    assert where["document"].endswith("animals.md") and answer["answer"]
    assert source[where["start"]:where["end"]] == answer["answer"]

    code, stdout, stderr = run_cli(monkeypatch, capsys, "qa", "ask", tmp_path / "index", "ca ce ci", "fa fe",
                                   "--reader", reader, "--top-k", "2")
    assert code == 0, stderr
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert [line["question"] for line in lines] == ["ca ce ci", "fa fe"] and lines[0]["answer"] == answer["answer"]
    # a threshold every null score passes: no passage answers, so the question gets "" (and no evidence)
    code, stdout, stderr = run_cli(monkeypatch, capsys, "qa", "ask", tmp_path / "index", "ca ce ci",
                                   "--reader", reader, "--top-k", "2", "--null-threshold", "-1e9")
    assert code == 0, stderr
    assert json.loads(stdout) | {"question": None} == {"question": None, "answer": "", "score": None,
                                                       "evidence": None, "alternatives": []}
    lenient = DocumentQA(QAIndex.load(tmp_path / "index"), Predictor.load(reader).with_data(null_threshold=1e9), 2)
    assert lenient.ask("ca ce ci")["answer"] == answer["answer"]

    squad = {"data": [{"title": "t", "paragraphs": [{"context": "ca ce ci co.", "qas": [
        {"id": "1", "question": "ca ce", "answers": [{"text": "ci", "answer_start": 6}]}]}]}]}
    (tmp_path / "squad.json").write_text(json.dumps(squad), encoding="utf-8")
    report = evaluate_open(qa, read_squad(tmp_path / "squad.json"), progress=False)
    assert report["retrieval"]["bm25"]["recall@1"] == 100.0 and 0 <= report["f1"] <= 100
    code, stdout, stderr = run_cli(monkeypatch, capsys, "qa", "eval", tmp_path / "index", "--reader", reader,
                                   "--data", tmp_path / "squad.json")
    assert code == 0, stderr
    assert json.loads(stdout)["retrieval"]["bm25"]["recall@1"] == 100.0


def test_reader_must_be_a_span_qa_model_and_questions_fit(tiny_bert_dir: Path, tiny_vocab: Path,
                                                          tmp_path: Path) -> None:
    build_index([write_corpus(tmp_path / "docs")], tmp_path / "index", "bm25", progress=False)
    index = QAIndex.load(tmp_path / "index")
    with pytest.raises(ConfigError, match="the reader must be a span_qa model"):
        DocumentQA(index, Predictor.load(tiny_bert_dir))
    reader = Predictor.load(save_tiny_checkpoint(tmp_path / "reader", "BertForQuestionAnswering", tiny_vocab))
    with pytest.raises(InputDataError, match=r"question 0.question: \d+ tokens; a question may take at most"):
        DocumentQA(index, reader).ask(" ".join(["ba"] * 200))
    with pytest.raises(CheckpointError, match="is not a QA index"):
        QAIndex.load(tmp_path / "docs")


def test_the_server_answers_on_v1_qa(tiny_vocab: Path, tmp_path: Path) -> None:
    from conftest import ready_client
    from nlpforge.qa import load_qa_system
    from nlpforge.serve.app import build_app, create_app

    build_index([write_corpus(tmp_path / "docs")], tmp_path / "index", "bm25", passage_chars=20, progress=False)
    reader = Predictor.load(save_tiny_checkpoint(tmp_path / "reader", "BertForQuestionAnswering", tiny_vocab))
    qa = load_qa_system(tmp_path / "index", reader, top_k=2)
    client = ready_client(create_app(reader, qa=qa))
    try:
        response = client.post("/v1/qa", json={"question": "ca ce ci"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["answer"] == qa.ask("ca ce ci")["answer"] and body["evidence"]["document"].endswith("animals.md")
        assert client.get("/v1/model").json()["qa"]["passages"] == 4
        too_long = " ".join(["ba"] * 200)
        for payload, field in (({"question": ""}, "question"), ({"question": 3}, "question"),
                               ({"question": "a", "top": 1}, "top"), ({"question": too_long}, "question")):
            response = client.post("/v1/qa", json=payload)
            assert response.status_code == 422 and response.json()["field"] == field, (payload, response.text)
    finally:
        client.__exit__(None, None, None)
    plain = ready_client(create_app(reader))
    try:
        response = plain.post("/v1/qa", json={"question": "ca ce ci"})
        assert response.status_code == 400 and "--qa INDEX" in response.json()["error"]
    finally:
        plain.__exit__(None, None, None)
    # serve --null-threshold: the reader abstains on /v1/predict and on /v1/qa alike
    abstaining = ready_client(build_app(tmp_path / "reader", qa=str(tmp_path / "index"), null_threshold=-1e9))
    try:
        predicted = abstaining.post("/v1/predict", json={"inputs": [{"question": "ca", "context": "ca ce ci"}]})
        assert predicted.json()["outputs"][0]["answer"] == ""
        assert abstaining.post("/v1/qa", json={"question": "ca ce ci"}).json()["answer"] == ""
    finally:
        abstaining.__exit__(None, None, None)


def test_rank_answers_pools_spans_and_charges_retrieval_rank():
    from nlpforge.qa.answer import Candidate, rank_answers

    def candidate(answer: str, score: float, rank: int) -> Candidate:
        return Candidate(answer, answer.lower(), score, rank, {"passage": rank})

    candidates = [candidate("Paris", 5.0, 0), candidate("London", 6.0, 3), candidate("paris", 5.5, 1)]
    # without a rank cost the reader's best span wins; "Paris" and "paris" pool, keeping the better
    unweighted = rank_answers(candidates, 0.0)
    assert unweighted["answer"] == "London"
    assert [a["answer"] for a in unweighted["alternatives"]] == ["paris"]
    # one point per rank: London 6 - 3 = 3 loses to paris 5.5 - 1 = 4.5 and Paris 5 - 0 = 5
    weighted = rank_answers(candidates, 1.0)
    assert (weighted["answer"], weighted["score"], weighted["evidence"]) == ("Paris", 5.0, {"passage": 0})
    assert rank_answers([], 1.0) == {"answer": "", "score": None, "evidence": None, "alternatives": []}


def test_the_qa_commands_default_to_the_tuned_rank_weight() -> None:
    import inspect

    from nlpforge.cli_qa import ask, evaluate
    from nlpforge.qa.answer import RANK_WEIGHT

    for command in (ask, evaluate):
        assert inspect.signature(command).parameters["rank_weight"].default == RANK_WEIGHT
