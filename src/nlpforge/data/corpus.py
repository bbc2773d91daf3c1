"""Raw-text corpora for pre-training, read as a stream: memory stays flat on corpora larger than RAM.

    files = corpus_files(["corpus/", "extra/*.jsonl"])           # checked up front, one-line errors
    docs = iter_documents(files, part="train")                   # lists of sentences, line by line
    blocks = iter_token_blocks(tokenizer, docs, block_size=512)  # exactly 512 token ids each

Formats, told apart per file (``CorpusFile.format``):

- ``text``: a blank line separates documents; every other line is a paragraph, split into sentences.
- ``jsonl`` (``*.jsonl`` / ``*.json``): one JSON object per line, the document's text under
  ``text_field``; each line of that text is a paragraph, split into sentences.
- ``wiki`` (WikiExtractor output, detected by a first line ``<doc ...>``): each ``<doc>`` ...
  ``</doc>`` is one document. The title line WikiExtractor writes right after ``<doc>`` is
  **dropped** when it equals the ``title`` attribute (it is a heading, not a sentence); blank lines
  inside a document separate paragraphs, not documents.

Train / held-out split: the held-out part is the last ``heldout_share`` of each file, cut by byte
offset at a line boundary (found by seeking, from the file size: no pass over the file). A line
belongs to the held-out part when it starts at or after byte ``size * (1 - heldout_share)``, so
the two parts hold every line exactly once; a document that spans the cut is split in two there.

Memory: one line and one document at a time. A document longer than ``max_sentences`` sentences
(a file without blank lines, say) is yielded in consecutive pieces of that many sentences.
"""

from __future__ import annotations

import codecs
import glob
import html
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from nlpforge.errors import ConfigError, InputDataError

HEAD_BYTES = 64 * 1024  # how much of each file corpus_files checks up front
SUFFIXES = (".txt", ".jsonl", ".json")  # the files a directory contributes (plus WikiExtractor's wiki_NN)
FORMATS = ("text", "jsonl", "wiki")
PARTS = ("train", "heldout", "all")
MAX_SENTENCES = 10_000  # a longer document is yielded in pieces, so that memory stays bounded
_WIKI_NAME = re.compile(r"^wiki_\d+$")
_DOC_OPEN = re.compile(r"^<doc\b([^>]*)>$")
_TITLE = re.compile(r'\btitle="([^"]*)"')
_ENCODING_HINT = ("pass the file's encoding with --encoding (e.g. --encoding gb18030 for GB-encoded Chinese, "
                  "--encoding big5, --encoding latin-1)")


@dataclass
class CorpusFile:
    """One corpus file, checked: it exists, holds text, and its head decodes with ``encoding``."""

    path: Path
    encoding: str
    format: str | None = None  # "text", "jsonl" or "wiki"; None: detected when read


def corpus_files(paths: Sequence[str | Path], encoding: str | None = None) -> list[CorpusFile]:
    """The corpus files that ``paths`` name, each checked up front.

    A directory contributes every ``*.txt``, ``*.jsonl`` and ``*.json`` file below it (and
    WikiExtractor's ``wiki_NN`` files), sorted; a glob pattern every file it matches, sorted.
    Each file must exist, hold something, not be binary, and its first 64 KiB must decode with
    ``encoding``; with ``encoding=None`` that is UTF-8 (with or without a BOM), or GB18030 when the
    head decodes cleanly as GB18030 and reads as Chinese. An error names the file and what to do.
    Later bytes are checked as they are read (an error then names the line).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise ConfigError("no corpus files given; pass --corpus FILE (a file, a directory or a glob pattern)")
    if encoding is not None:
        _check_encoding_name(encoding)
    found: list[Path] = []
    for given in paths:
        found.extend(_expand(Path(given).expanduser(), str(given)))
    unique = list(dict.fromkeys(path.resolve() for path in found))
    files = []
    for path in unique:
        file_encoding = _check_file(path, encoding)
        files.append(CorpusFile(path, file_encoding, detect_format(path, file_encoding)))
    return files


def _expand(path: Path, given: str) -> list[Path]:
    if path.is_dir():
        inside = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                        and (p.suffix.lower() in SUFFIXES or _WIKI_NAME.match(p.name)))
        if not inside:
            raise InputDataError(f"{path}: no {', '.join('*' + s for s in SUFFIXES)} files in this directory; "
                                 "pass the corpus files themselves with --corpus")
        return inside
    if path.exists():
        return [path]
    if glob.has_magic(given):
        matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
        if not matches:
            raise InputDataError(f"{given}: no file matches this pattern")
        return [p for m in matches for p in (_expand(m, str(m)) if m.is_dir() else [m])]
    raise InputDataError(f"{path}: file not found; pass an existing corpus file, directory or glob pattern")


def _check_encoding_name(encoding: str) -> None:
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(f"--encoding {encoding!r}: unknown encoding (e.g. utf-8, gb18030, big5, latin-1)") from None
    newline = "\n".encode(info.name)  # utf-8-sig: BOM + b"\n"; UTF-16/32: NUL bytes around it
    if not newline.endswith(b"\n") or b"\x00" in newline:  # the reader cuts lines (and the held-out part) on b"\n"
        raise ConfigError(f"--encoding {encoding}: lines are not plain b'\\n' bytes in it; convert the files to "
                          f"UTF-8 first (iconv -f {encoding} -t UTF-8 FILE > FILE.utf8)")


def _check_file(path: Path, encoding: str | None) -> str:
    """The file's encoding, after checking that it is a readable, non-empty text file."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError as error:
        raise InputDataError(f"{path}: cannot be read ({error.strerror or error})") from None
    if size == 0:
        raise InputDataError(f"{path}: the file is empty; remove it from --corpus or fill it with text")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputDataError(f"{path}: is UTF-16 text; convert it to UTF-8 first "
                             f"(iconv -f UTF-16 -t UTF-8 {path} > {path}.utf8)")
    if head.startswith(b"\x1f\x8b"):
        raise InputDataError(f"{path}: is gzip-compressed; decompress it first (gunzip -k {path})")
    if b"\x00" in head:
        raise InputDataError(f"{path}: is a binary file (NUL bytes in its first 64 KiB), not text; "
                             "remove it from --corpus")
    complete = size <= len(head)
    if encoding is None:
        if head.startswith(codecs.BOM_UTF8):
            encoding = "utf-8-sig"
        elif _decodes(head, "utf-8", complete) is not None:
            encoding = "utf-8"
        elif (text := _decodes(head, "gb18030", complete)) is not None and _reads_as_chinese(text):
            encoding = "gb18030"
        else:
            raise InputDataError(f"{path}:{_bad_line(head, 'utf-8', complete)}: not UTF-8 text: if it is text, "
                                 f"{_ENCODING_HINT}; if it is binary, remove it from --corpus")
    text = _decodes(head, encoding, complete)
    if text is None:
        raise InputDataError(f"{path}:{_bad_line(head, encoding, complete)}: cannot decode as {encoding}: "
                             f"{_ENCODING_HINT}")
    controls = sum(1 for char in text if ord(char) < 32 and char not in "\t\n\r\f\v")
    if controls > 0.01 * len(text):
        raise InputDataError(f"{path}: is a binary file (control bytes in its first 64 KiB), not text; "
                             "remove it from --corpus")
    if complete and not text.strip():
        raise InputDataError(f"{path}: holds only blank lines; remove it from --corpus or fill it with text")
    return encoding


def _decodes(head: bytes, encoding: str, complete: bool) -> str | None:
    """``head`` decoded (a character cut at the 64 KiB mark is fine), or None when it does not decode."""
    try:
        return codecs.getincrementaldecoder(encoding)("strict").decode(head, final=complete)
    except UnicodeDecodeError:
        return None


def _bad_line(head: bytes, encoding: str, complete: bool) -> int:
    """The line number of the first byte of ``head`` that does not decode."""
    try:
        codecs.getincrementaldecoder(encoding)("strict").decode(head, final=complete)
    except UnicodeDecodeError as error:
        return head[: error.start].count(b"\n") + 1
    return 1


def _reads_as_chinese(text: str) -> bool:
    """GB18030 decodes most byte soups; GB text has mostly GB2312 characters where Latin-1 has none."""
    wide = [char for char in text if ord(char) > 127]
    if not wide:
        return False
    common = 0
    for char in wide:
        try:
            char.encode("gb2312")
            common += 1
        except UnicodeEncodeError:
            pass
    return common >= 0.5 * len(wide)


def detect_format(path: Path, encoding: str) -> str:
    """``jsonl`` for *.jsonl / *.json, ``wiki`` when the first non-blank line is ``<doc ...>``, else ``text``."""
    with open(path, "rb") as handle:
        head = _decodes(handle.read(HEAD_BYTES), encoding, False) or ""
    first = next((line.strip() for line in head.splitlines() if line.strip()), "")
    if path.suffix.lower() in (".jsonl", ".json"):
        if first.startswith("["):
            raise InputDataError(f"{path}: is a JSON array; a JSON corpus must hold one object per line "
                                 "(JSON lines: jq -c '.[]' FILE > FILE.jsonl)")
        return "jsonl"
    return "wiki" if _DOC_OPEN.match(first) else "text"


def iter_documents(files: Sequence[CorpusFile], part: str = "train", heldout_share: float = 0.05,
                   text_field: str = "text", *, max_sentences: int = MAX_SENTENCES) -> Iterator[list[str]]:
    """Documents (lists of sentences) of ``files`` in order, read line by line.

    ``part``: ``"train"`` is the first (1 - heldout_share) of each file, ``"heldout"`` the last
    heldout_share of each file (see the module doc for the cut), ``"all"`` the whole files.
    A document longer than ``max_sentences`` comes in consecutive pieces of at most that many.
    """
    if part not in PARTS:
        raise ConfigError(f"part {part!r}: expected one of {', '.join(PARTS)}")
    if not 0.0 <= heldout_share <= 1.0:
        raise ConfigError(f"heldout share {heldout_share}: expected a fraction between 0 and 1")
    if max_sentences < 1:
        raise ConfigError(f"max_sentences {max_sentences}: expected at least 1")
    for file in files:
        fmt = file.format or detect_format(Path(file.path), file.encoding)
        lines = _Lines(file, part, heldout_share)
        if fmt == "jsonl":
            yield from _jsonl_documents(lines, text_field, max_sentences)
        elif fmt == "wiki":
            yield from _wiki_documents(lines, max_sentences)
        elif fmt == "text":
            yield from _text_documents(lines, max_sentences)
        else:
            raise ConfigError(f"{file.path}: unknown corpus format {fmt!r}; expected one of {', '.join(FORMATS)}")


def heldout_start(path: str | Path, heldout_share: float) -> int:
    """The byte offset where the held-out part of ``path`` begins: the start of the first line that
    starts at or after byte ``size * (1 - heldout_share)`` (the file size when there is none)."""
    size = Path(path).stat().st_size
    cut = min(size, max(0, int(size * (1.0 - heldout_share))))
    if cut == 0:
        return 0
    with open(path, "rb") as handle:
        handle.seek(cut - 1)
        handle.readline()  # the rest of the line holding byte cut - 1 (just b"\n" when a line starts at cut)
        return handle.tell()


class _Lines:
    """The decoded lines (without line endings) of one part of a file; ``where()`` names the current one."""

    def __init__(self, file: CorpusFile, part: str, heldout_share: float) -> None:
        self.path, self.encoding = Path(file.path), file.encoding
        self.start, self.end = 0, None
        if part != "all":
            boundary = heldout_start(self.path, heldout_share)
            self.start, self.end = (0, boundary) if part == "train" else (boundary, None)
        self.number, self.offset = 0, self.start  # the current line: its number in the part, its first byte

    def where(self) -> str:
        if self.start == 0:
            return f"{self.path}:{self.number}"
        return f"{self.path} (line at byte {self.offset})"

    def line_before(self) -> str | None:
        """The line that ends where this part starts (None at the file's start, or when over 64 KiB long)."""
        if self.start == 0:
            return None
        with open(self.path, "rb") as handle:
            begin = max(0, self.start - HEAD_BYTES)
            handle.seek(begin)
            chunk = handle.read(self.start - begin)
        at = chunk.rfind(b"\n", 0, len(chunk) - 1)
        if at < 0 and begin > 0:
            return None
        try:
            return chunk[at + 1:].decode(self.encoding).rstrip("\r\n")
        except UnicodeDecodeError:
            return None

    def __iter__(self) -> Iterator[str]:
        end, encoding = self.end, self.encoding
        with open(self.path, "rb") as handle:
            handle.seek(self.start)
            offset = self.start
            for raw in handle:
                if end is not None and offset >= end:
                    break
                self.number += 1
                self.offset = offset
                offset += len(raw)
                try:
                    line = raw.decode(encoding)
                except UnicodeDecodeError:
                    raise InputDataError(f"{self.where()}: cannot decode as {encoding}: {_ENCODING_HINT}") from None
                yield line.rstrip("\r\n")


def _pieces(document: list[str], limit: int) -> Iterator[list[str]]:
    for start in range(0, len(document), limit):
        yield document[start:start + limit]


def _text_documents(lines: _Lines, limit: int) -> Iterator[list[str]]:
    document: list[str] = []
    for line in lines:
        line = line.strip()
        if not line:
            if document:
                yield document
                document = []
            continue
        document.extend(split_sentences(line))
        if len(document) >= limit:
            yield from _pieces(document, limit)
            document = []
    if document:
        yield document


def _wiki_documents(lines: _Lines, limit: int) -> Iterator[list[str]]:
    # Lines outside <doc> ... </doc> (the held-out part may begin inside a document) make a document too;
    # when the part begins right after a <doc> line, its title line is dropped as it would be in one pass.
    document: list[str] = []
    title = _title_of((lines.line_before() or "").strip())
    for line in lines:
        line = line.strip()
        opening = _DOC_OPEN.match(line) if line.startswith("<doc") else None
        if opening or line == "</doc>":
            if document:
                yield document
            document = []
            title = _title_of(line)
            continue
        if not line:
            continue
        if title is not None:
            is_title, title = line == title, None
            if is_title:
                continue  # WikiExtractor's heading line repeats the title attribute
        document.extend(split_sentences(line))
        if len(document) >= limit:
            yield from _pieces(document, limit)
            document = []
    if document:
        yield document


def _title_of(line: str) -> str | None:
    """The title attribute of a ``<doc ...>`` line (None for any other line)."""
    opening = _DOC_OPEN.match(line)
    found = _TITLE.search(opening.group(1)) if opening else None
    return html.unescape(found.group(1)).strip() if found else None


def _jsonl_documents(lines: _Lines, text_field: str, limit: int) -> Iterator[list[str]]:
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputDataError(f"{lines.where()}: not valid JSON ({error.msg}); a JSON corpus holds one object "
                                 "per line") from None
        if not isinstance(record, dict):
            raise InputDataError(f"{lines.where()}: expected a JSON object with a {text_field!r} field, "
                                 f"got {type(record).__name__}")
        if text_field not in record:
            fields = ", ".join(map(repr, list(record)[:8])) or "none"
            raise InputDataError(f"{lines.where()}: no {text_field!r} field (fields: {fields}); pass the field "
                                 "that holds the text with --text-field")
        text = record[text_field]
        if text is None:
            continue
        if not isinstance(text, str):
            raise InputDataError(f"{lines.where()}: field {text_field!r} holds {type(text).__name__}, "
                                 "expected a string")
        yield from _pieces([sentence for paragraph in text.splitlines() for sentence in split_sentences(paragraph)],
                           limit)


# Sentence ends: Chinese 。！？；… (any run of them) and the closing quotes/brackets after them, with
# no space needed; English . ! ? (a run of them) and closing quotes/brackets, when whitespace follows
# (so 3.14, "a.b" and "e.g.," stay whole).
_BREAK = re.compile(r"[。！？；…]+[”’」』）)]*|[.!?]+[\"'”’)\]]*(?=\s)")
_WORD_BEFORE = re.compile(r"[\w.]+$")
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "e.g", "i.e", "cf", "al",
                            "fig", "approx", "no", "vol", "pp", "gen", "col", "lt", "sgt", "capt", "rev", "mt"})
_ACRONYM = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]$|^[A-Z]$")  # U.S. / e.g. / initials such as "J."


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, stripped, without empties.

    Splits after Chinese 。！？；… and any closing ”’」』） right after them; after English . ! ?
    (and closing quotes/brackets) followed by whitespace, except after common abbreviations
    (Mr., Dr., e.g., i.e., vs., No., ...) and single-letter initials or acronyms (J., U.S.).
    Decimals such as 3.14 never split (no whitespace after the point).
    """
    sentences: list[str] = []
    start = 0
    for match in _BREAK.finditer(text):
        if match.group().startswith(".") and match.end() - match.start() == 1 and _abbreviation_before(
                text, match.start()):
            continue
        sentence = text[start:match.end()].strip()
        if sentence:
            sentences.append(sentence)
        start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def _abbreviation_before(text: str, dot: int) -> bool:
    word = _WORD_BEFORE.search(text, max(0, dot - 24), dot)
    if word is None:
        return False
    token = word.group().lstrip(".")
    return token.lower() in _ABBREVIATIONS or bool(_ACRONYM.match(token))


def pack_blocks(token_ids: Iterable[list[int]], block_size: int,
                separator_id: int | None = None) -> Iterator[list[int]]:
    """Blocks of exactly ``block_size`` ids from the concatenated sequences, in order.

    ``separator_id`` goes between consecutive non-empty sequences (not before the first, not after
    the last); empty sequences are skipped. The tail shorter than a block is dropped. Holds at most
    one block plus one sequence.
    """
    if block_size < 1:
        raise ConfigError(f"block size {block_size}: expected at least 1")
    buffer: list[int] = []
    started = False
    for ids in token_ids:
        if not len(ids):
            continue
        if separator_id is not None and started:
            buffer.append(separator_id)
        started = True
        buffer.extend(ids)
        if len(buffer) >= block_size:
            full = len(buffer) - len(buffer) % block_size
            for at in range(0, full, block_size):
                yield buffer[at:at + block_size]
            del buffer[:full]


def iter_token_blocks(tokenizer: object, documents: Iterable[list[str]], block_size: int,
                      batch_lines: int = 1000) -> Iterator[list[int]]:
    """Blocks of ``block_size`` token ids from ``documents``, tokenized ``batch_lines`` sentences at a time.

    ``tokenizer`` is a Hugging Face fast tokenizer (or a ``tokenizers.Tokenizer``). Sentences are
    tokenized without special tokens, each on its own (so with byte-level BPE a sentence's first
    word has no leading-space marker, as at the start of a text); the tokenizer's separator token
    (sep, else eos; none when it has neither) goes between documents, and the ids are packed with
    ``pack_blocks``. Memory: one batch of sentences and one block.
    """
    if batch_lines < 1:
        raise ConfigError(f"batch_lines {batch_lines}: expected at least 1")
    separator = getattr(tokenizer, "sep_token_id", None)
    if separator is None:
        separator = getattr(tokenizer, "eos_token_id", None)
    encode = _batch_encoder(tokenizer)
    return pack_blocks(_sentence_ids(encode, documents, batch_lines, separator), block_size)


def _batch_encoder(tokenizer: object) -> Callable[[list[str]], list[list[int]]]:
    """A function list[str] -> list[list[int]] without special tokens, truncation or padding."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None and hasattr(tokenizer, "encode_batch"):
        backend = tokenizer  # a tokenizers.Tokenizer
    if backend is None:
        return lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    if backend.truncation is not None or backend.padding is not None:
        backend = type(backend).from_str(backend.to_str())  # a copy: the caller's tokenizer is left as it is
        backend.no_truncation()
        backend.no_padding()
    encode_batch = getattr(backend, "encode_batch_fast", backend.encode_batch)  # _fast: no offsets
    return lambda texts: [encoding.ids for encoding in encode_batch(texts, add_special_tokens=False)]


def _sentence_ids(encode: Callable[[list[str]], list[list[int]]], documents: Iterable[list[str]], batch_lines: int,
                  separator: int | None) -> Iterator[list[int]]:
    """Token ids per sentence; a document's first sentence (after the first document) starts with the separator."""
    batch: list[str] = []
    opens: list[bool] = []  # whether the sentence starts a new document after another one
    seen_document = False

    def flush() -> Iterator[list[int]]:
        for ids, opens_document in zip(encode(batch), opens, strict=True):
            yield [separator, *ids] if opens_document else ids
        batch.clear()
        opens.clear()

    for document in documents:
        first = True
        for sentence in document:
            batch.append(sentence)
            opens.append(first and seen_document and separator is not None)
            first = False
            if len(batch) >= batch_lines:
                yield from flush()
        seen_document = seen_document or not first
    if batch:
        yield from flush()
