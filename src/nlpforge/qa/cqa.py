"""Community QA: answer a question with the answer of the most similar question already answered.

An FAQ file (``question<TAB>answer`` lines; a first line ``question<TAB>answer`` is a header) is
indexed like documents, one passage per FAQ question (BM25, dense or hybrid: ``qa/index.py``),
with the answers beside it (``answers.jsonl``). A question retrieves ``candidates`` FAQ questions;
a pair classifier (any ``classify`` checkpoint trained on question pairs, e.g. AFQMC:
``nlpforge train --task classify --text-column 0 --text-pair-column 1 --label-column 2``) scores
each (user question, FAQ question) pair, and the candidate of the best fused score answers:

    score = log P(same | question, candidate) - rank_weight x (the candidate's 0-based retrieval rank)

(rank_weight 0: the classifier alone; large: retrieval's order, the classifier breaking no ties).
Without a classifier the retrieval order decides. ``evaluate_pairs`` measures a classifier on labelled
pairs: accuracy, and P@1 / MRR over the groups of pairs that share their first question.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nlpforge.data.text import read_text
from nlpforge.errors import ConfigError, InputDataError
from nlpforge.qa.documents import Passage
from nlpforge.qa.index import QAIndex, index_passages

ANSWERS_FILE = "answers.jsonl"
POSITIVE_LABELS = ("1", "true", "yes", "similar", "same")
# log-probability points a candidate loses per retrieval rank; chosen on AFQMC train questions
# with a classifier that had not seen them (benchmarks/qa_cqa_afqmc.py: qa_cqa_afqmc_heldout.json)
RANK_WEIGHT = 0.02


def read_faq(path: str | Path, encoding: str = "utf-8") -> list[tuple[int, str, str]]:
    """(line number, question, answer) of every FAQ line; a bad line names the file and line."""
    path = Path(path)
    rows = []
    for number, line in enumerate(read_text(path, encoding).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
            raise InputDataError(f"{path}:{number}: {len(fields)} column(s); an FAQ line is question<TAB>answer, "
                                 "both non-empty")
        if number == 1 and [f.strip().lower() for f in fields] == ["question", "answer"]:
            continue
        rows.append((number, fields[0].strip(), fields[1].strip()))
    if not rows:
        raise InputDataError(f"{path}: holds no question<TAB>answer lines")
    return rows


def build_faq_index(faq: str | Path, out: str | Path, retriever: str = "hybrid", encoder: str | None = None,
                    max_length: int = 128, encoding: str = "utf-8", progress: bool = True) -> QAIndex:
    """Index the questions of ``faq`` (their answers stored beside them) into ``out``."""
    rows = read_faq(faq, encoding)
    passages = [Passage(i, f"{faq}:{number}", "", 0, len(question), question)
                for i, (number, question, _) in enumerate(rows)]

    def write_answers(tmp: Path) -> None:
        with (tmp / ANSWERS_FILE).open("w", encoding="utf-8") as file:
            for _, _, answer in rows:
                file.write(json.dumps(answer, ensure_ascii=False) + "\n")

    return index_passages(passages, out, retriever, encoder, max_length, {"kind": "faq", "sources": [str(faq)]},
                          write_answers, progress)


def positive_index(labels: Sequence[str] | None, path: str) -> int:
    """Which label of a pair classifier means "same question"."""
    if not labels or len(labels) != 2:
        raise ConfigError(f"{path}: the pair classifier must have two labels (different / same), has {labels}")
    for i, label in enumerate(labels):
        if label.strip().lower() in POSITIVE_LABELS:
            return i
    return 1


class CommunityQA:
    """An FAQ index and an optional pair classifier (a ``Predictor`` of a classify model)."""

    def __init__(self, index: QAIndex, classifier: Any | None = None, candidates: int = 20,
                 rank_weight: float = RANK_WEIGHT) -> None:
        if index.kind != "faq":
            raise ConfigError(f"{index.directory}: is a document index; community QA needs an FAQ index "
                              "(`nlpforge cqa index FAQ.tsv --out DIR`)")
        if classifier is not None and classifier.task != "classify":
            raise ConfigError(f"{classifier.path}: is a {classifier.task or 'bare encoder'} model; the re-ranker "
                              "must be a classify model trained on question pairs")
        if rank_weight < 0:
            raise ConfigError(f"rank_weight must be >= 0, got {rank_weight}")
        self.index, self.classifier, self.candidates, self.rank_weight = index, classifier, candidates, rank_weight
        self.positive = positive_index(classifier.labels, classifier.path) if classifier is not None else None
        self.answers = [json.loads(line) for line in
                        (index.directory / ANSWERS_FILE).read_text(encoding="utf-8").splitlines()]

    def match_scores(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """The classifier's probability that each (question, question) pair asks the same thing."""
        label = self.classifier.labels[self.positive]
        predicted = self.classifier.predict([{"text": a, "text_pair": b} for a, b in pairs])
        return [p["scores"][label] for p in predicted]

    def candidates_of(self, questions: Sequence[str]) -> list[list[dict[str, Any]]]:
        """Per question, its retrieved FAQ entries in retrieval order: ``passage``, ``retrieval_score``,
        ``rank`` (0-based) and, with a classifier, ``probability`` (that the pair asks the same thing)."""
        found = []
        for question in questions:
            hits = self.index.search(question, self.candidates)
            entries = [{"passage": passage, "retrieval_score": score, "rank": rank}
                       for rank, (passage, score) in enumerate(hits)]
            if self.classifier is not None and entries:
                probabilities = self.match_scores([(question, passage.text) for passage, _ in hits])
                for entry, probability in zip(entries, probabilities, strict=True):
                    entry["probability"] = probability
            found.append(entries)
        return found

    def ask_many(self, questions: Sequence[str]) -> list[dict[str, Any]]:
        return [self.answer_from(entries) for entries in self.candidates_of(questions)]

    def answer_from(self, entries: Sequence[dict[str, Any]], rank_weight: float | None = None) -> dict[str, Any]:
        """The answer of the best of one question's candidates (``candidates_of``): by the fused score
        with a classifier (``rank_weight``: this instance's by default), else by retrieval order."""
        if not entries:
            return {"answer": "", "matched_question": None, "score": None, "alternatives": []}
        weight = self.rank_weight if rank_weight is None else rank_weight
        if "probability" in entries[0]:
            scored = [(fused_score(e["probability"], e["rank"], weight), e) for e in entries]
            ranked = sorted(scored, key=lambda item: -item[0])  # stable: equal scores keep retrieval order
        else:
            ranked = [(e["retrieval_score"], e) for e in entries]
        (score, best), rest = ranked[0], ranked[1:4]
        answer = {"answer": self.answers[best["passage"].id], "matched_question": best["passage"].text,
                  "score": round(float(score), 4), "retrieval_score": round(best["retrieval_score"], 4),
                  "retrieval_rank": best["rank"], "source": best["passage"].document,
                  "alternatives": [{"question": e["passage"].text, "answer": self.answers[e["passage"].id],
                                    "score": round(float(s), 4)} for s, e in rest]}
        if "probability" in best:
            answer["probability"] = round(best["probability"], 4)
        return answer

    def ask(self, question: str) -> dict[str, Any]:
        return self.ask_many([question])[0]

    def check_question(self, question: str, where: str) -> None:
        if not question.strip():
            raise InputDataError(f"{where}: is empty; ask a question")
        if self.classifier is not None:
            self.classifier.parse({"text": question, "text_pair": "."}, where)

    def describe(self) -> dict[str, Any]:
        return {"kind": "faq", "index": str(self.index.directory), "questions": len(self.index.passages),
                "retriever": self.index.retriever, "reranker": self.classifier.path if self.classifier else None,
                "rank_weight": self.rank_weight if self.classifier else None}


def fused_score(probability: float, rank: int, rank_weight: float) -> float:
    """log P(same) - rank_weight x rank: the classifier's belief, discounted by how far down retrieval
    found the candidate (probabilities floored at 1e-12: a certain "different" is not minus infinity)."""
    return math.log(max(probability, 1e-12)) - rank_weight * rank


def evaluate_pairs(classifier: Any, pairs: Sequence[tuple[str, str, str]], batch: int = 256) -> dict[str, Any]:
    """Accuracy of ``classifier`` on labelled (question, question, label) pairs, and P@1 / MRR (percent)
    over the groups of pairs sharing their first question that hold a positive and a negative."""
    positive = positive_index(classifier.labels, classifier.path)
    label = classifier.labels[positive]
    scores: list[float] = []
    predicted: list[str] = []
    for first in range(0, len(pairs), batch):
        outputs = classifier.predict([{"text": a, "text_pair": b} for a, b, _ in pairs[first:first + batch]])
        scores += [o["scores"][label] for o in outputs]
        predicted += [o["label"] for o in outputs]
    accuracy = 100.0 * sum(p == gold for p, (_, _, gold) in zip(predicted, pairs, strict=True)) / max(len(pairs), 1)
    groups: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for (a, _, gold), score in zip(pairs, scores, strict=True):
        groups[a].append((score, gold == label))
    ranked = [sorted(group, key=lambda item: -item[0]) for group in groups.values()
              if any(same for _, same in group) and not all(same for _, same in group)]
    record: dict[str, Any] = {"accuracy": round(accuracy, 2), "pairs": len(pairs), "groups": len(ranked)}
    if ranked:
        record["p@1"] = round(100.0 * sum(group[0][1] for group in ranked) / len(ranked), 2)
        record["mrr"] = round(100.0 * sum(1.0 / next(r for r, (_, same) in enumerate(group, start=1) if same)
                                          for group in ranked) / len(ranked), 2)
    return record


def read_pairs(path: str | Path, encoding: str = "utf-8") -> list[tuple[str, str, str]]:
    """``question<TAB>question<TAB>label`` lines (AFQMC's layout)."""
    path = Path(path)
    pairs = []
    for number, line in enumerate(read_text(path, encoding).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise InputDataError(f"{path}:{number}: {len(fields)} column(s); a pair line is question<TAB>question"
                                 "<TAB>label")
        pairs.append((fields[0].strip(), fields[1].strip(), fields[2].strip()))
    if not pairs:
        raise InputDataError(f"{path}: holds no labelled pairs")
    return pairs
