"""Plain text files: one example per line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nlpforge.errors import InputDataError


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """The whole file decoded; a decoding failure names the line and suggests ``--encoding``."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{path}: file not found")
    raw = path.read_bytes()
    try:
        return raw.decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise InputDataError(
            f"{path}:{line}: cannot decode as {encoding} (byte {error.start}); pass the file's "
            "encoding, e.g. --encoding gb18030 for GB-encoded Chinese text"
        ) from None
    except LookupError:
        raise InputDataError(f"unknown encoding {encoding!r}") from None


def read_lines(path: str | Path, encoding: str = "utf-8") -> list[str]:
    """Non-empty lines of a text file (trailing newline and ``\\r`` stripped).

    A blank line inside the file is an error (it would silently shift the line-to-output order).
    """
    lines = read_text(path, encoding).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InputDataError(f"{path}: the file is empty; put one text per line")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise InputDataError(f"{path}:{number}: empty line; every line must hold one text")
    return lines


def input_records(lines: list[str], source: str) -> list[tuple[Any, str]]:
    """(record, where) of each input line: a line starting with '{' is a JSON object (``{"text", ...}``),
    any other line the text itself; ``where`` is ``source:line`` for error messages."""
    records: list[tuple[Any, str]] = []
    for number, line in enumerate(lines, start=1):
        where = f"{source}:{number}"
        if not line.lstrip().startswith("{"):
            records.append((line, where))
            continue
        try:
            records.append((json.loads(line), where))
        except json.JSONDecodeError as error:
            raise InputDataError(f"{where}: not valid JSON ({error.msg})") from None
    return records


def json_objects(path: str | Path, text: str, expected: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-empty line of a JSON-lines ``text``; a line that is not a JSON
    object raises InputDataError naming ``path``, the line and the ``expected`` shape."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputDataError(f"{path}:{number}: not valid JSON ({error.msg}); each line must be {expected}") \
                from None
        if not isinstance(record, dict):
            raise InputDataError(f"{path}:{number}: each line must be {expected}")
        yield number, record
