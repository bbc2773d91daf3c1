"""Documents -> passages with character offsets back into their source, for retrieval and reading.

Sources: ``.txt`` and ``.md`` files (one document each), ``.jsonl`` files (one document a line:
``{"text": ..., "title": ..., "id": ...}``, title and id optional), and folders (their files of
those kinds, recursively, in sorted order). A document is cut into passages of at most
``max_chars`` characters: paragraphs (blank-line separated) are kept whole where they fit and
packed together while they fit; a longer paragraph is cut at sentence ends (。！？.!? and line
breaks), and a sentence longer than ``max_chars`` at ``max_chars``. ``Passage.start`` / ``end`` are
character offsets into the document's text as decoded (a UTF-8 BOM is not counted), so
``text[start:end] == passage.text`` holds for the source file's own text, and answers found in a
passage map back to the file.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nlpforge.data.text import json_objects, read_text
from nlpforge.errors import InputDataError

DOCUMENT_SUFFIXES = (".txt", ".md", ".jsonl")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"(?<=[。！？!?])|(?<=[.](?=\s))|\n")


@dataclass(frozen=True)
class Document:
    """One source document: ``name`` is the file (``FILE:LINE`` for a line of a JSONL file)."""

    name: str
    text: str
    title: str = ""


@dataclass(frozen=True)
class Passage:
    """A retrievable piece of a document: ``document_text[start:end] == text``."""

    id: int
    document: str
    title: str
    start: int
    end: int
    text: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def document_files(paths: Sequence[str | Path]) -> list[Path]:
    """The document files named by ``paths`` (files, or folders searched recursively)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DOCUMENT_SUFFIXES)
            if not found:
                raise InputDataError(f"{path}: holds no {', '.join(DOCUMENT_SUFFIXES)} files to index")
            files += found
        elif path.is_file():
            if path.suffix.lower() not in DOCUMENT_SUFFIXES:
                raise InputDataError(f"{path}: not a document this index reads; give {', '.join(DOCUMENT_SUFFIXES)} "
                                     "files or folders of them")
            files.append(path)
        else:
            raise InputDataError(f"{path}: no such file or folder")
    return files


def read_documents(paths: Sequence[str | Path], encoding: str = "utf-8") -> Iterator[Document]:
    """The documents of ``paths`` in order; an undecodable file or bad JSONL line names the file and line."""
    for path in document_files(paths):
        text = read_text(path, encoding)
        if path.suffix.lower() != ".jsonl":
            if text.strip():
                yield Document(str(path), text, path.stem)
            continue
        for number, record in json_objects(path, text, '{"text": ..., "title": ...}'):
            if not isinstance(record.get("text"), str):
                raise InputDataError(f'{path}:{number}: needs a "text" string; each line must be an object like '
                                     '{"text": ..., "title": ...}')
            title = record.get("title", "")
            name = f"{path}:{number}" if record.get("id") is None else f"{path}:{record['id']}"
            if record["text"].strip():
                yield Document(name, record["text"], title if isinstance(title, str) else str(title))


def _pieces(text: str, start: int, end: int, max_chars: int) -> Iterator[tuple[int, int]]:
    """(start, end) pieces of text[start:end], each at most ``max_chars``, cut at sentence ends if possible."""
    cuts = [start] + [start + m.end() for m in _SENTENCE_END.finditer(text[start:end]) if 0 < m.end() < end - start]
    cuts.append(end)
    piece_start = start
    for previous, cut in itertools.pairwise(cuts):
        if cut - piece_start > max_chars and previous > piece_start:
            yield piece_start, previous
            piece_start = previous
        while cut - piece_start > max_chars:  # one sentence longer than a passage
            yield piece_start, piece_start + max_chars
            piece_start += max_chars
    if piece_start < end:
        yield piece_start, end


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def split_passages(document: Document, max_chars: int = 600, first_id: int = 0) -> list[Passage]:
    """``document`` cut into passages of at most ``max_chars`` characters (whitespace-trimmed, non-empty)."""
    if max_chars < 20:
        raise InputDataError(f"passage size must be at least 20 characters, got {max_chars}")
    text = document.text
    paragraphs, position = [], 0
    for match in _PARAGRAPH_BREAK.finditer(text):
        paragraphs.append((position, match.start()))
        position = match.end()
    paragraphs.append((position, len(text)))
    spans: list[tuple[int, int]] = []
    for para_start, para_end in paragraphs:
        para_start, para_end = _strip(text, para_start, para_end)
        if para_start == para_end:
            continue
        for piece in _pieces(text, para_start, para_end, max_chars):
            if spans and piece[1] - spans[-1][0] <= max_chars:  # pack short paragraphs together
                spans[-1] = (spans[-1][0], piece[1])
            else:
                spans.append(piece)
    passages = []
    for start, end in spans:
        start, end = _strip(text, start, end)
        if start < end:
            passages.append(Passage(first_id + len(passages), document.name, document.title, start, end,
                                    text[start:end]))
    return passages
