"""Document QA: retrieve passages, read each with a span_qa reader, aggregate, answer with evidence.

For a question the index returns its ``top_k`` passages; the reader (any span_qa artifact behind a
``Predictor``: checkpoint, ONNX, INT8) extracts the best span of each; spans of the same text
(after the metric's normalisation) pool, keeping the best score (start + end logit, minus
RANK_WEIGHT per retrieval rank) and the passage it came from; the answer is the best pooled span.
``evidence`` names the document, the passage and the answer's character offsets in the document's
text, so a caller can show it in place. ``evaluate_open`` measures a whole SQuAD-layout file: EM /
F1 (SQuAD v1.1 words or CMRC characters, as the span_qa task does), recall@k of each retriever (a
gold answer's text occurs in one of the first k passages) and questions per second end to end.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from nlpforge.data.examples import QAExample
from nlpforge.errors import ConfigError, InputDataError
from nlpforge.predictor import Predictor
from nlpforge.qa.documents import Passage
from nlpforge.qa.index import QAIndex
from nlpforge.tasks.span_qa import cmrc_em_f1, cmrc_normalize, is_chinese, normalize_answer, squad_em_f1

RECALL_AT = (1, 5, 20)
# Reader-score points a candidate loses per retrieval rank (rank_answers): 1.0 was best for BM25 and
# hybrid on 600 questions of the training articles (benchmarks/results/qa_open_tune.json: EM +4.3 / +5.5).
RANK_WEIGHT = 1.0


def evidence(passage: Passage, start: int, end: int, retrieval_score: float) -> dict[str, Any]:
    """Where an answer is: its document, passage and character offsets in the document's text."""
    return {"document": passage.document, "title": passage.title, "passage": passage.id,
            "start": passage.start + start, "end": passage.start + end, "passage_text": passage.text,
            "retrieval_score": round(retrieval_score, 4)}


class DocumentQA:
    """An index and a reader: ``ask(question)`` -> answer, score, evidence."""

    def __init__(self, index: QAIndex, reader: Predictor, top_k: int = 5, retriever: str | None = None,
                 rank_weight: float = RANK_WEIGHT) -> None:
        if reader.task != "span_qa":
            raise ConfigError(f"{reader.path}: is a {reader.task or 'bare encoder'} model; the reader must be a "
                              "span_qa model (`nlpforge train --task span_qa`)")
        if top_k < 1:
            raise ConfigError(f"--top-k must be >= 1, got {top_k}")
        if index.kind != "documents":
            raise ConfigError(f"{index.directory}: is an FAQ index; ask it with `nlpforge cqa ask`")
        self.index, self.reader, self.top_k, self.retriever = index, reader, top_k, retriever
        self.rank_weight = rank_weight

    def ask(self, question: str) -> dict[str, Any]:
        return self.ask_many([question])[0]

    def check_question(self, question: str, where: str) -> None:
        """Raise InputDataError (naming ``where``) for a question the reader cannot take."""
        if not question.strip():
            raise InputDataError(f"{where}: is empty; ask a question")
        self.reader.parse({"question": question, "context": "."}, where)

    def describe(self) -> dict[str, Any]:
        """What answers questions, for the server's /v1/model."""
        return {"kind": "documents", "index": str(self.index.directory), "retriever": self.retriever or
                self.index.retriever, "passages": len(self.index.passages), "top_k": self.top_k,
                "reader": self.reader.path}

    def ask_many(self, questions: Sequence[str]) -> list[dict[str, Any]]:
        """One answer per question (reading every question's passages in shared batches)."""
        return [rank_answers(candidates, self.rank_weight) for candidates in self.read_candidates(questions)]

    def read_candidates(self, questions: Sequence[str]) -> list[list[Candidate]]:
        """Per question, the reader's best span in each of its ``top_k`` passages (empty spans dropped)."""
        retrieved = [self.index.search(question, self.top_k, self.retriever) for question in questions]
        inputs, owners = [], []
        for q, (question, hits) in enumerate(zip(questions, retrieved, strict=True)):
            for h, (passage, _) in enumerate(hits):
                inputs.append(self.reader.parse({"question": question, "context": passage.text}, f"question {q}"))
                owners.append((q, h))
        read = self.reader.predict_parsed(inputs) if inputs else []
        normalize = cmrc_normalize if is_chinese([p.text for hits in retrieved for p, _ in hits] or ["x"]) \
            else normalize_answer
        candidates: list[list[Candidate]] = [[] for _ in questions]
        for (q, h), span in zip(owners, read, strict=True):
            if span["answer"]:
                passage, retrieval_score = retrieved[q][h]
                candidates[q].append(Candidate(span["answer"], normalize(span["answer"]) or span["answer"],
                                               span["score"], h, evidence(passage, span["start"], span["end"],
                                                                          retrieval_score)))
        return candidates


@dataclass(frozen=True)
class Candidate:
    """One passage's best span: its text, the text as the metric compares it, the reader's score
    (start + end logit) and the passage's 0-based retrieval rank."""

    answer: str
    key: str
    reader_score: float
    rank: int
    evidence: dict[str, Any]

    def score(self, rank_weight: float) -> float:
        return self.reader_score - rank_weight * self.rank


def rank_answers(candidates: Sequence[Candidate], rank_weight: float = RANK_WEIGHT) -> dict[str, Any]:
    """The answer among one question's candidates: spans of the same ``key`` pool, keeping their best
    score (reader score - ``rank_weight`` x retrieval rank) and its evidence; the best pool answers,
    the next three are alternatives."""
    best: dict[str, tuple[float, Candidate]] = {}
    for candidate in candidates:
        score = candidate.score(rank_weight)
        if candidate.key not in best or score > best[candidate.key][0]:
            best[candidate.key] = (score, candidate)
    ranked = sorted(best.values(), key=lambda pair: pair[0], reverse=True)
    if not ranked:
        return {"answer": "", "score": None, "evidence": None, "alternatives": []}
    (score, top), rest = ranked[0], ranked[1:4]
    return {"answer": top.answer, "score": round(score, 4), "evidence": top.evidence,
            "alternatives": [{"answer": c.answer, "score": round(s, 4)} for s, c in rest]}


def retrieval_recall(index: QAIndex, examples: Sequence[QAExample], retriever: str,
                     ks: Sequence[int] = RECALL_AT) -> dict[str, float]:
    """recall@k in percent: questions with a gold answer's text inside one of their first k passages."""
    found = dict.fromkeys(ks, 0)
    for example in examples:
        passages = [p.text for p, _ in index.search(example.question, max(ks), retriever)]
        golds = [a.text for a in example.answers]
        first = next((rank for rank, text in enumerate(passages) if any(g in text for g in golds)), None)
        for k in ks:
            found[k] += first is not None and first < k
    return {f"recall@{k}": round(100.0 * found[k] / max(len(examples), 1), 2) for k in ks}


def evaluate_open(qa: DocumentQA, examples: Sequence[QAExample], batch_questions: int = 16,
                  retrievers: Sequence[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """EM / F1 of ``qa`` answering ``examples`` from its index, recall@k per retriever, questions/s."""
    start = time.perf_counter()
    predicted: list[str] = []
    with tqdm(total=len(examples), desc="qa eval", unit="question", disable=not progress) as bar:
        for first in range(0, len(examples), batch_questions):
            chunk = examples[first:first + batch_questions]
            predicted += [a["answer"] for a in qa.ask_many([e.question for e in chunk])]
            bar.update(len(chunk))
    seconds = time.perf_counter() - start
    references = [[a.text for a in e.answers] for e in examples]
    chinese = is_chinese([e.context for e in examples])
    scores = (cmrc_em_f1 if chinese else squad_em_f1)(predicted, references)
    retrievers = retrievers or (("bm25", "dense", "hybrid") if qa.index.retriever == "hybrid"
                                else (qa.index.retriever,))
    return {"exact_match": round(scores["exact_match"], 2), "f1": round(scores["f1"], 2),
            "questions": len(examples), "top_k": qa.top_k, "retriever": qa.retriever or qa.index.retriever,
            "rank_weight": qa.rank_weight,
            "convention": "cmrc2018 (characters)" if chinese else "squad v1.1 (words)",
            "questions_per_s": round(len(examples) / seconds, 2),
            "retrieval": {name: retrieval_recall(qa.index, examples, name) for name in retrievers}}
