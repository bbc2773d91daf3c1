"""Extractive question answering in the SQuAD v1.1 JSON layout (also CMRC 2018).

``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
"answers": [{"text", "answer_start"}]}]}]}]}``; CMRC 2018 adds ``id`` fields to articles and
paragraphs (ignored here) and marks extra annotator answers that are not spans of the context with
``"answer_start": -1``.

Answer offsets are checked: where ``context[start:start + len(text)]`` is not the answer text (CMRC
has starts off by one or two), the occurrence of the text nearest to ``start`` is used instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nlpforge.data.examples import Answer, QAExample
from nlpforge.data.text import read_text
from nlpforge.errors import InputDataError


def read_squad(
    path: str | Path,
    articles: tuple[int, int] | None = None,
    encoding: str = "utf-8",
) -> list[QAExample]:
    """The questions of a SQuAD-layout JSON file, one QAExample per question, in file order.

    Args:
        path: the JSON file.
        articles: ``(start, stop)`` keeps only the articles ``data[start:stop]``; the SQuAD
            benchmark trains on articles ``(0, 38)`` of dev-v1.1.json and reports on ``(38, 48)``.
        encoding: the file's text encoding.

    Each answer satisfies ``context[start:start + len(text)] == text``, except answers given with
    ``answer_start`` -1 whose text does not occur in the context: those are kept with start -1 as
    references for scoring only. Every question with answers has at least one span answer.

    Raises:
        InputDataError: naming the file, and the key and question id where known, for a missing,
            undecodable or malformed file, a missing or mistyped key, an empty or duplicate
            question id, or an answer whose text does not occur in its context.
    """
    path = Path(path)
    content = read_text(path, encoding)
    if not content.strip():
        raise InputDataError(f"{path}: the file is empty; expected SQuAD-layout JSON")
    try:
        document = json.loads(content)
    except json.JSONDecodeError as error:
        raise InputDataError(
            f"{path}:{error.lineno}: not valid JSON ({error.msg}, column {error.colno}); expected SQuAD-layout JSON"
        ) from None
    if not isinstance(document, dict):
        raise InputDataError(f'{path}: expected a JSON object with a "data" list, found {type(document).__name__}')
    data = _get(path, document, "data", list, "the top level")
    if articles is not None:
        start, stop = articles
        if not 0 <= start < stop <= len(data):
            raise InputDataError(
                f"{path}: articles={tuple(articles)} is out of range; the file has {len(data)} articles "
                f"(give 0 <= start < stop <= {len(data)})"
            )
    else:
        start, stop = 0, len(data)

    examples: list[QAExample] = []
    seen: set[str] = set()
    for a in range(start, stop):
        article = _expect(path, data[a], dict, f"data[{a}]")
        title = article.get("title", "")
        title = title if isinstance(title, str) else str(title)
        paragraphs = _get(path, article, "paragraphs", list, f"data[{a}]")
        for p, paragraph in enumerate(paragraphs):
            where = f"data[{a}].paragraphs[{p}]"
            paragraph = _expect(path, paragraph, dict, where)
            context = _get(path, paragraph, "context", str, where)
            for q, qa in enumerate(_get(path, paragraph, "qas", list, where)):
                examples.append(_question(path, qa, context, title, f"{where}.qas[{q}]", seen))
    if not examples:
        raise InputDataError(f"{path}: no questions in articles {start}..{stop}; expected SQuAD-layout JSON")
    return examples


def _question(path: Path, qa: Any, context: str, title: str, where: str, seen: set[str]) -> QAExample:
    qa = _expect(path, qa, dict, where)
    qid = _get(path, qa, "id", (str, int), where)
    qid = str(qid).strip()
    if not qid:
        raise InputDataError(f'{path}: {where}: empty "id"; give every question a unique id')
    if qid in seen:
        raise InputDataError(f'{path}: {where}: duplicate question id {qid!r}; question ids must be unique')
    seen.add(qid)
    where = f"{where} (question id {qid!r})"
    question = _get(path, qa, "question", str, where)
    answers = []
    for n, raw in enumerate(_get(path, qa, "answers", list, where)):
        answer_where = f"{where}.answers[{n}]"
        raw = _expect(path, raw, dict, answer_where)
        text = _get(path, raw, "text", str, answer_where)
        start = _get(path, raw, "answer_start", int, answer_where)
        if not text.strip():
            raise InputDataError(f"{path}: {answer_where}: empty answer text; give the answer's text or remove it")
        answers.append(_locate(path, text, start, context, answer_where))
    if answers and all(answer.start < 0 for answer in answers):
        raise InputDataError(
            f"{path}: {where}: no answer is a span of the context; give at least one answer that occurs in it"
        )
    return QAExample(id=qid, question=question, context=context, answers=answers, title=title)


def _locate(path: Path, text: str, start: int, context: str, where: str) -> Answer:
    """The answer at ``start``, or at the occurrence of its text nearest to ``start``."""
    if start >= 0 and context[start : start + len(text)] == text:
        return Answer(text=text, start=start)
    occurrences = []
    found = context.find(text)
    while found >= 0:
        occurrences.append(found)
        found = context.find(text, found + 1)
    if occurrences:
        return Answer(text=text, start=min(occurrences, key=lambda offset: (abs(offset - start), offset)))
    if start == -1:  # CMRC's marker for a reference answer that is not a span of the context
        return Answer(text=text, start=-1)
    raise InputDataError(
        f"{path}: {where}: answer text {_shorten(text)!r} does not occur in the context "
        f"(answer_start {start}); fix the answer text or its context"
    )


def _get(path: Path, mapping: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``mapping[key]``, checked to be of type ``kind``."""
    if key not in mapping:
        raise InputDataError(f"{path}: {where}: missing key {key!r}; expected SQuAD-layout JSON")
    value = mapping[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        names = " or ".join(_JSON_TYPES[t] for t in (kind if isinstance(kind, tuple) else (kind,)))
        raise InputDataError(
            f"{path}: {where}: key {key!r} holds a JSON {_json_type(value)}, expected {names}; "
            "expected SQuAD-layout JSON"
        )
    return value


def _expect(path: Path, value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind):
        raise InputDataError(
            f"{path}: {where}: expected a JSON {_JSON_TYPES[kind]}, found {_json_type(value)}; "
            "expected SQuAD-layout JSON"
        )
    return value


_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "integer", float: "number", bool: "boolean"}


def _json_type(value: Any) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
