"""``nlpforge qa ...``: document question answering (index, ask, eval), added to the main app in cli.py.

Only light modules are imported here; retrieval and the reader load inside the commands.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from nlpforge.cli_options import command_group

qa_app = command_group(
    "qa", "Question answering over your documents: index files, then ask (retrieve, then read).")


class Retriever(str, Enum):
    bm25 = "bm25"
    dense = "dense"
    hybrid = "hybrid"


TopK = Annotated[int, typer.Option(min=1, help="Passages retrieved and read per question.")]
RetrieverOverride = Annotated[Retriever | None, typer.Option(
    help="Retrieve with this instead of the index's own (a hybrid index holds bm25 and dense).")]
NullThreshold = Annotated[float | None, typer.Option(
    help="Answer \"\" from a passage whose no-answer score beats its best span's by more than this (a reader "
         "trained on unanswerable questions; default: the reader's own setting); no answer from every passage "
         "-> answer \"\".")]
RankWeight = Annotated[float, typer.Option(min=0.0, help="Reader-score points an answer loses per retrieval rank "
                                                         "of its passage (0: the reader's score alone).")]


@qa_app.command("index")
def index(
    documents: Annotated[list[str], typer.Argument(help=".txt / .md files (a document each), .jsonl files "
                                                        '({"text", "title", "id"} a line) or folders of them.')],
    out: Annotated[Path, typer.Option(help="The index directory to write.")],
    retriever: Annotated[Retriever, typer.Option(help="bm25 (words; Chinese segmented with jieba), dense "
                                                      "(--encoder embeddings + faiss) or hybrid (both, fused "
                                                      "by reciprocal rank).")] = Retriever.bm25,
    encoder: Annotated[str | None, typer.Option(help="Sentence-embedding checkpoint for dense and hybrid "
                                                     "(e.g. multilingual-e5-small).")] = None,
    passage_chars: Annotated[int, typer.Option(min=20, help="Longest passage in characters (paragraphs are "
                                                            "kept whole when they fit).")] = 600,
    max_length: Annotated[int, typer.Option(min=8, help="Tokens of a passage the encoder embeds.")] = 256,
    encoding: Annotated[str, typer.Option(help="Encoding of the document files.")] = "utf-8",
) -> None:
    """Cut documents into passages and index them; prints a JSON summary."""
    from nlpforge.qa.index import build_index

    built = build_index(documents, out, retriever.value, encoder, passage_chars, max_length, encoding,
                        progress=sys.stderr.isatty())
    typer.echo(json.dumps({"index": str(built.directory), **built.record}, indent=2, ensure_ascii=False))


@qa_app.command("ask")
def ask(
    index_dir: Annotated[Path, typer.Argument(metavar="INDEX", help="A directory written by `nlpforge qa index`.")],
    question: Annotated[list[str], typer.Argument(help="One or more questions.")],
    reader: Annotated[str, typer.Option(help="span_qa checkpoint or ONNX export that reads the passages.")],
    top_k: TopK = 5,
    retriever: RetrieverOverride = None,
    rank_weight: RankWeight = 1.0,
    null_threshold: NullThreshold = None,
) -> None:
    """Answer questions from the index: JSON lines of answer, score and evidence (document, offsets)."""
    qa = _document_qa(index_dir, reader, top_k, retriever, rank_weight, null_threshold)
    _print_answers(question, qa.ask_many(question))


@qa_app.command("eval")
def evaluate(
    index_dir: Annotated[Path, typer.Argument(metavar="INDEX", help="A directory written by `nlpforge qa index`.")],
    reader: Annotated[str, typer.Option(help="span_qa checkpoint or ONNX export that reads the passages.")],
    data: Annotated[Path, typer.Option(help="SQuAD-layout JSON (CMRC 2018 too): its questions are answered "
                                            "from the index, its answers score them.")],
    top_k: TopK = 5,
    retriever: RetrieverOverride = None,
    articles: Annotated[str | None, typer.Option(help="START:STOP: only these articles of --data.")] = None,
    limit: Annotated[int, typer.Option(min=0, help="Only the first N questions (0: all).")] = 0,
    rank_weight: RankWeight = 1.0,
    null_threshold: NullThreshold = None,
) -> None:
    """EM / F1 of answers from the index, recall@1/5/20 of each retriever, questions per second (JSON)."""
    from nlpforge.data.options import article_range
    from nlpforge.data.squad import read_squad
    from nlpforge.qa.answer import evaluate_open

    examples = read_squad(data, article_range(articles))
    examples = [e for e in examples if e.answers][: limit or None]
    qa = _document_qa(index_dir, reader, top_k, retriever, rank_weight, null_threshold)
    report = evaluate_open(qa, examples, progress=sys.stderr.isatty())
    typer.echo(json.dumps({"index": str(index_dir), "reader": reader, "data": str(data), **report}, indent=2,
                          ensure_ascii=False))


def _print_answers(questions: list[str], answers: list[dict]) -> None:
    """One JSON line per question: the question and its answer's fields."""
    for text, answer in zip(questions, answers, strict=True):
        typer.echo(json.dumps({"question": text, **answer}, ensure_ascii=False))


def _document_qa(index_dir: Path, reader: str, top_k: int, retriever: Retriever | None, rank_weight: float,
                 null_threshold: float | None):
    from nlpforge.predictor import Predictor
    from nlpforge.qa.answer import DocumentQA
    from nlpforge.qa.index import QAIndex

    predictor = Predictor.load(reader).with_null_threshold(null_threshold)
    return DocumentQA(QAIndex.load(index_dir), predictor, top_k, retriever.value if retriever else None, rank_weight)


kbqa_app = command_group(
    "kbqa", "Question answering over a knowledge base of triples: entity linking, relation paths, SPARQL.")


@kbqa_app.command("train")
def kbqa_train(
    kb: Annotated[Path, typer.Option(help="Triples: subject<TAB>relation<TAB>object lines, subject ||| relation ||| "
                                          "object lines, or N-Triples / Turtle (.nt, .ttl).")],
    train: Annotated[Path, typer.Option(help="Questions: question<TAB>answer (alternatives separated by |) or "
                                             "PathQuestion lines (question<TAB>answer(alt/)<TAB>topic#r1#e1#...).")],
    out: Annotated[Path, typer.Option(help="The KBQA directory to write.")],
    max_hops: Annotated[int, typer.Option(min=1, max=3, help="Longest relation path (hops).")] = 3,
    encoding: Annotated[str, typer.Option(help="Encoding of the text files.")] = "utf-8",
) -> None:
    """Learn to map questions to relation paths of the knowledge base; prints a JSON summary."""
    from nlpforge.qa.kbqa import KBQA, load_kb, read_kb_questions

    graph = load_kb(kb, encoding)
    questions = read_kb_questions(train, encoding)
    system = KBQA.train(graph, questions, max_hops)
    record = {"kb": str(kb), "train": str(train), "questions": len(questions), "trained_on": system.trained_on}
    directory = system.save(out, record)
    typer.echo(json.dumps({"out": str(directory), **record, "triples": len(graph),
                           "relations": system.scorer.relations}, indent=2, ensure_ascii=False))


@kbqa_app.command("ask")
def kbqa_ask(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="A directory written by `nlpforge kbqa train`.")],
    question: Annotated[list[str], typer.Argument(help="One or more questions.")],
) -> None:
    """JSON lines: answer, answers, topic entity, relation path, the SPARQL that found them, score."""
    from nlpforge.qa.kbqa import KBQA

    _print_answers(question, KBQA.load(directory).ask_many(question))


@kbqa_app.command("eval")
def kbqa_eval(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="A directory written by `nlpforge kbqa train`.")],
    data: Annotated[Path, typer.Option(help="Questions in the format of --train.")],
    encoding: Annotated[str, typer.Option(help="Encoding of the question file.")] = "utf-8",
) -> None:
    """JSON: hits@1 (percent of questions whose top answer is a gold one), and entity / path accuracy."""
    from nlpforge.qa.kbqa import KBQA, hits_at_1, read_kb_questions

    report = hits_at_1(KBQA.load(directory), read_kb_questions(data, encoding))
    typer.echo(json.dumps({"kbqa": str(directory), "data": str(data), **report}, indent=2, ensure_ascii=False))


cqa_app = command_group(
    "cqa", "Community QA: answer with the answer of the most similar FAQ question.")


@cqa_app.command("index")
def cqa_index(
    faq: Annotated[Path, typer.Argument(help="question<TAB>answer lines (a header line question<TAB>answer is "
                                             "skipped).")],
    out: Annotated[Path, typer.Option(help="The index directory to write.")],
    retriever: Annotated[Retriever, typer.Option(help="bm25, dense (--encoder) or hybrid (both).")] = Retriever.bm25,
    encoder: Annotated[str | None, typer.Option(help="Sentence-embedding checkpoint for dense and hybrid.")] = None,
    encoding: Annotated[str, typer.Option(help="Encoding of the FAQ file.")] = "utf-8",
) -> None:
    """Index the FAQ's questions (answers kept beside them); prints a JSON summary."""
    from nlpforge.qa.cqa import build_faq_index

    built = build_faq_index(faq, out, retriever.value, encoder, encoding=encoding, progress=sys.stderr.isatty())
    typer.echo(json.dumps({"index": str(built.directory), **built.record}, indent=2, ensure_ascii=False))


@cqa_app.command("ask")
def cqa_ask(
    index_dir: Annotated[Path, typer.Argument(metavar="INDEX", help="A directory written by `nlpforge cqa index`.")],
    question: Annotated[list[str], typer.Argument(help="One or more questions.")],
    reranker: Annotated[str | None, typer.Option(help="classify checkpoint trained on question pairs (e.g. "
                                                       "AFQMC) that re-ranks the candidates.")] = None,
    candidates: Annotated[int, typer.Option(min=1, help="FAQ questions retrieved per question.")] = 20,
    rank_weight: Annotated[float | None, typer.Option(
        min=0.0, help="With --reranker: log-probability points a candidate loses per retrieval rank (0: the "
                      "re-ranker alone; default 0.02, chosen on AFQMC train).")] = None,
) -> None:
    """JSON lines: answer, matched question, score, probability, retrieval rank, source line, alternatives."""
    from nlpforge.predictor import Predictor
    from nlpforge.qa.cqa import RANK_WEIGHT, CommunityQA
    from nlpforge.qa.index import QAIndex

    qa = CommunityQA(QAIndex.load(index_dir), Predictor.load(reranker) if reranker else None, candidates,
                     RANK_WEIGHT if rank_weight is None else rank_weight)
    _print_answers(question, qa.ask_many(question))


@cqa_app.command("eval")
def cqa_eval(
    reranker: Annotated[str, typer.Option(help="classify checkpoint trained on question pairs.")],
    data: Annotated[Path, typer.Option(help="question<TAB>question<TAB>label lines (AFQMC's layout).")],
    encoding: Annotated[str, typer.Option(help="Encoding of the pair file.")] = "utf-8",
) -> None:
    """JSON: the re-ranker's accuracy on labelled pairs, and P@1 / MRR over pairs grouped by their first question."""
    from nlpforge.predictor import Predictor
    from nlpforge.qa.cqa import evaluate_pairs, read_pairs

    report = evaluate_pairs(Predictor.load(reranker), read_pairs(data, encoding))
    typer.echo(json.dumps({"reranker": reranker, "data": str(data), **report}, indent=2, ensure_ascii=False))
