"""Token-per-line tagging files (CoNLL-2003, MSRA NER): one token and its tag per line.

Columns are split on tabs when the line holds a tab (``char\\ttag`` files; a token may then hold
inner spaces), else on runs of whitespace (CoNLL-2003: ``token POS chunk ner``); fields are stripped,
and a blank token is an error (a tokenizer would drop it and shift the tags). A blank line ends a
sentence; ``-DOCSTART-`` lines (document boundaries) are skipped. Tags must be IOB-shaped: ``O``
or ``B-``, ``I-``, ``E-``, ``S-`` followed by a type (IOB1, IOB2 and BIOES all pass); whether an
``I-`` may follow ``O`` is left to the tagging scheme.
"""

from __future__ import annotations

import re
from pathlib import Path

from nlpforge.data.examples import TaggedSentence
from nlpforge.data.text import read_text
from nlpforge.errors import InputDataError

TAG_PATTERN = re.compile(r"O|[BIES]-\S+")


def read_conll(
    path: str | Path,
    token_column: int = 0,
    tag_column: int = -1,
    encoding: str = "utf-8",
) -> list[TaggedSentence]:
    """The sentences of a CoNLL-style file, each with its tokens, tags and first line number.

    Args:
        path: the file.
        token_column: the token's 0-based column (negative counts from the end).
        tag_column: the tag's column; the last one by default (CoNLL-2003's NER tags).
        encoding: the file's text encoding.

    Raises:
        InputDataError: naming ``file:line``, for a missing, undecodable or empty file, a line with
            too few columns, an empty token or a tag that is not ``O`` / ``B-X`` / ``I-X`` /
            ``E-X`` / ``S-X``.
    """
    path = Path(path)
    content = read_text(path, encoding)
    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    first_line = 0
    valid_tags: set[str] = set()  # tags already checked against TAG_PATTERN (MSRA has 2M lines)
    # split on "\n" only: str.splitlines would also split on \x1c, \x85, \u2028, ... (valid tokens)
    for number, raw in enumerate(content.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.startswith("-DOCSTART-"):
            if tokens:
                sentences.append(TaggedSentence(tokens=tokens, tags=tags, line=first_line))
                tokens, tags = [], []
            continue
        fields = [field.strip() for field in line.split("\t")] if "\t" in line else line.split()
        count = len(fields)
        if not (-count <= token_column < count and -count <= tag_column < count) or (
            token_column % count == tag_column % count
        ):
            raise InputDataError(
                f"{path}:{number}: {count} column(s), too few for token column {token_column} and tag "
                f"column {tag_column}; write one token and its tag per line (a blank line between sentences)"
            )
        token, tag = fields[token_column], fields[tag_column]
        if not token:
            raise InputDataError(
                f"{path}:{number}: empty or blank token; give every line a visible token, or remove the line"
            )
        if tag not in valid_tags:
            if not TAG_PATTERN.fullmatch(tag):
                raise InputDataError(
                    f"{path}:{number}: malformed tag {tag!r} in column {tag_column}; tags are O or B-/I-/E-/S- "
                    "and a type (e.g. B-PER); check the tag column"
                )
            valid_tags.add(tag)
        if not tokens:
            first_line = number
        tokens.append(token)
        tags.append(tag)
    if tokens:
        sentences.append(TaggedSentence(tokens=tokens, tags=tags, line=first_line))
    if not sentences:
        raise InputDataError(
            f"{path}: no sentences in the file; write one token and its tag per line, a blank line between sentences"
        )
    return sentences
