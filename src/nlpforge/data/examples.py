"""The examples the readers return: plain dataclasses, each remembering where it came from.

``line`` is the 1-based line in the source file, so that a later error (an unknown label, a text
too long) can still name ``file:line``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TextExample:
    """One text (or text pair) to classify.

    ``label`` is kept as the string written in the file (``"1"``, ``"positive"``); ``None`` when
    the file was read without a label column. ``text_pair`` is ``None`` for single-text tasks.
    """

    text: str
    text_pair: str | None
    label: str | None
    line: int


@dataclass
class TaggedSentence:
    """One sentence of a token-per-line (CoNLL) file: tokens and their IOB/IOB2/BIOES tags.

    ``line`` is the line of the sentence's first token.
    """

    tokens: list[str]
    tags: list[str]
    line: int


@dataclass
class Answer:
    """An answer to a question: its text and its character offset into the context.

    ``context[start:start + len(text)] == text`` holds whenever ``start >= 0``. ``start == -1``
    marks a reference answer that is not a span of the context (CMRC 2018 dev has such extra
    annotator answers): usable to score a prediction, not to train on.
    """

    text: str
    start: int


@dataclass
class QAExample:
    """One extractive question-answering example (SQuAD v1.1 / CMRC 2018 layout).

    ``answers`` keeps the file's order; every question with answers has at least one span answer
    (``start >= 0``), and to train, use the first of those.
    """

    id: str
    question: str
    context: str
    answers: list[Answer]
    title: str = ""
