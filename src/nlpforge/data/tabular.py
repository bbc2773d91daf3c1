"""Classification data in columns: TSV, CSV and JSON Lines files of texts (or text pairs) and labels.

The format follows the file's extension: ``.jsonl`` / ``.json`` are JSON Lines (one object per
line, columns are field names); ``.csv`` is comma-separated with standard CSV quoting; anything
else (``.tsv``, ``.txt``, ...) is tab-separated with *no* quoting, so that quote characters in
texts are kept literally (ChnSentiCorp and TNEWS texts contain ``"``). ``delimiter`` overrides the
separator (the quoting still follows the extension).

Columns are chosen by name (needs a header row) or by 0-based index (negative counts from the
end). Blank lines are skipped; texts and labels are stripped of surrounding whitespace.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from pathlib import Path

from nlpforge.data.examples import TextExample
from nlpforge.data.text import read_text
from nlpforge.errors import ConfigError, InputDataError

# With columns given by index and header=None, a first row whose chosen cells all are one of
# these words (case-insensitive) is taken for a header; any other first row is data.
HEADER_WORDS = frozenset(
    {"text", "label", "sentence", "text_a", "text_b", "qid", "sentence1", "sentence2", "question", "label_name"}
)

# argument name -> the CLI flag that sets it (for the "what to do" half of error messages)
_FLAGS = {"text_column": "--text-column", "text_pair_column": "--text-pair-column", "label_column": "--label-column"}
_DELIMITER_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe", " ": "space"}


def read_text_examples(
    path: str | Path,
    text_column: str | int = "text",
    text_pair_column: str | int | None = None,
    label_column: str | int | None = "label",
    header: bool | None = None,
    delimiter: str | None = None,
    encoding: str = "utf-8",
) -> list[TextExample]:
    """Texts (or text pairs) and their labels from a TSV, CSV or JSON Lines file.

    Args:
        path: the file; its extension picks the format (see the module docstring).
        text_column: the text's column: a header name, or a 0-based index for files without one.
        text_pair_column: the second text's column for pair tasks (AFQMC, NLI); ``None`` for
            single-text tasks.
        label_column: the label's column; ``None`` reads unlabelled texts (``label`` is ``None``).
        header: whether the first row is a header. ``None`` detects it: with any column given by
            name the first row must be a header; with columns given by index only, the first row
            is a header when each chosen cell is a common header word (``text``, ``label``,
            ``sentence``, ``text_a``, ``text_b``, ``qid``, ...; see ``HEADER_WORDS``).
        delimiter: the field separator, overriding the extension's (tab, or comma for ``.csv``).
        encoding: the file's text encoding (e.g. ``gb18030`` for GB-encoded Chinese files).

    Raises:
        InputDataError: naming ``file:line`` and what to do, for a missing, undecodable or empty
            file, a missing column, a row with too few fields, an empty text or a missing label.
    """
    path = Path(path)
    columns = {"text_column": text_column, "text_pair_column": text_pair_column, "label_column": label_column}
    columns = {name: column for name, column in columns.items() if column is not None}
    for name, column in columns.items():
        if isinstance(column, bool) or not isinstance(column, (str, int)):
            raise ConfigError(f"{name} must be a column name or a 0-based index, not {column!r}")
    content = read_text(path, encoding)
    if not content.strip():
        raise InputDataError(f"{path}: the file is empty; put one example per line")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return _read_json_lines(path, content, columns)
    if delimiter is None:
        delimiter = "," if suffix == ".csv" else "\t"
    quoting = csv.QUOTE_MINIMAL if suffix == ".csv" else csv.QUOTE_NONE
    rows = _read_rows(path, content, delimiter, quoting)
    if not rows:
        raise InputDataError(f"{path}: the file holds only blank lines; put one example per line")
    return _examples_from_rows(path, rows, columns, header, delimiter)


def check_labels(examples: list[TextExample], label_names: list[str], path: str | Path) -> None:
    """Raise for the first example whose label is not one of ``label_names`` (unlabelled ones pass)."""
    known = set(label_names)
    for example in examples:
        if example.label is not None and example.label not in known:
            raise InputDataError(
                f"{path}:{example.line}: unknown label {example.label!r}; the model knows: {', '.join(label_names)}"
            )


def label_names_of(examples: Iterable[TextExample]) -> list[str]:
    """The distinct labels, sorted: numerically when all are integers (``"2" < "10"``), else as text."""
    labels = {example.label for example in examples if example.label is not None}
    if labels and all(re.fullmatch(r"[+-]?\d+", label) for label in labels):
        return sorted(labels, key=lambda label: (int(label), label))
    return sorted(labels)


def _read_rows(path: Path, content: str, delimiter: str, quoting: int) -> list[tuple[int, list[str]]]:
    """(first line number, fields) of every non-blank row."""
    # newline="" keeps "\r\n" inside quoted CSV fields and splits lines only on \n, \r\n and \r
    # (str.splitlines would also split on \u2028 and friends, which occur inside texts).
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    rows = []
    line = 1  # the line where the next row starts
    try:
        for fields in reader:
            if any(field.strip() for field in fields):
                rows.append((line, fields))
            line = reader.line_num + 1
    except csv.Error as error:
        raise InputDataError(
            f"{path}:{line}: cannot split the line into fields ({error}); check the quoting of this row"
        ) from None
    return rows


def _examples_from_rows(
    path: Path,
    rows: list[tuple[int, list[str]]],
    columns: dict[str, str | int],
    header: bool | None,
    delimiter: str,
) -> list[TextExample]:
    named = {name: column for name, column in columns.items() if isinstance(column, str)}
    first_line, first = rows[0]
    if header is None:
        header = bool(named) or all(
            -len(first) <= column < len(first) and first[column].strip().lower() in HEADER_WORDS
            for column in columns.values()
        )
    if named and not header:
        name, column = next(iter(named.items()))
        raise InputDataError(
            f"{path}:{first_line}: {name} {column!r} is a column name, but the file is read without a header; "
            f"give columns by 0-based index (e.g. {_FLAGS[name]} 0) or read the first row as a header"
        )
    indices = {name: column for name, column in columns.items() if isinstance(column, int)}
    width = None  # with a header, every row has exactly its number of fields
    if header:
        names = [cell.strip() for cell in first]
        for name, column in named.items():
            if column not in names:
                shown = ", ".join(_shorten(cell) for cell in names)
                raise InputDataError(
                    f"{path}:{first_line}: no column {column!r} in the header (columns: {shown}); pass "
                    f"{_FLAGS[name]} with one of these, or give columns by 0-based index (e.g. {_FLAGS[name]} 0) "
                    "for a file without a header"
                )
            indices[name] = names.index(column)
        width = len(names)
        rows = rows[1:]
        if not rows:
            raise InputDataError(f"{path}:{first_line}: a header but no data rows; put one example per line")
    _check_distinct(path, first_line, indices, columns)

    # the argument whose column needs the most fields (index 2 needs 3 fields, index -2 needs 2)
    widest = max(indices, key=lambda name: indices[name] + 1 if indices[name] >= 0 else -indices[name])
    needed = indices[widest] + 1 if indices[widest] >= 0 else -indices[widest]
    separator = _DELIMITER_NAMES.get(delimiter, repr(delimiter))
    examples = []
    for line, fields in rows:
        if len(fields) < needed:
            raise InputDataError(
                f"{path}:{line}: expected at least {needed} {separator}-separated fields (for "
                f"{_describe(columns[widest])}), found {len(fields)}; fix the row or check {_FLAGS[widest]}"
            )
        if width is not None and len(fields) > width:
            raise InputDataError(
                f"{path}:{line}: {len(fields)} {separator}-separated fields but the header has {width}; "
                f"is there a {separator} inside a text? remove it"
            )
        values = {name: fields[index].strip() for name, index in indices.items()}
        examples.append(_example(path, line, values, columns))
    return examples


def _read_json_lines(path: Path, content: str, columns: dict[str, str | int]) -> list[TextExample]:
    for name, column in columns.items():
        if isinstance(column, int):
            raise InputDataError(
                f"{path}: a JSON Lines file has named fields, not numbered columns; give {_FLAGS[name]} "
                f"a field name instead of {column}"
            )
    examples = []
    # split on "\n" only: JSON strings may hold \u2028, which str.splitlines treats as a line break
    for line, raw in enumerate(content.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as error:
            raise InputDataError(
                f"{path}:{line}: not valid JSON ({error.msg}, column {error.colno}); "
                "a JSON Lines file holds one JSON object per line"
            ) from None
        if not isinstance(record, dict):
            raise InputDataError(
                f"{path}:{line}: expected a JSON object, found {type(record).__name__}; "
                "a JSON Lines file holds one JSON object per line"
            )
        values: dict[str, str] = {}
        for name, field in columns.items():
            if field not in record:
                shown = ", ".join(_shorten(str(key)) for key in record)
                raise InputDataError(
                    f"{path}:{line}: no field {field!r} (fields: {shown}); pass {_FLAGS[name]} with one of these"
                )
            value = record[field]
            if value is None:
                value = ""
            elif isinstance(value, int) and not isinstance(value, bool) and name == "label_column":
                value = str(value)
            elif not isinstance(value, str):
                raise InputDataError(
                    f"{path}:{line}: field {field!r} is a JSON {type(value).__name__}, expected a string; "
                    "write it as a string"
                )
            values[name] = value.strip()
        examples.append(_example(path, line, values, columns))
    if not examples:
        raise InputDataError(f"{path}: the file holds only blank lines; put one JSON object per line")
    return examples


def _example(path: Path, line: int, values: dict[str, str], columns: dict[str, str | int]) -> TextExample:
    """A TextExample from the (stripped) cell values, rejecting empty texts and labels."""
    for name in ("text_column", "text_pair_column"):
        if name in values and not values[name]:
            raise InputDataError(
                f"{path}:{line}: empty text in {_describe(columns[name])}; fill it in or remove the line"
            )
    if "label_column" in values and not values["label_column"]:
        raise InputDataError(
            f"{path}:{line}: missing label in {_describe(columns['label_column'])}; label every line, "
            "or read the file without a label column"
        )
    return TextExample(
        text=values["text_column"],
        text_pair=values.get("text_pair_column"),
        label=values.get("label_column"),
        line=line,
    )


def _check_distinct(path: Path, line: int, indices: dict[str, int], columns: dict[str, str | int]) -> None:
    """Two arguments naming the same column is a mistake (a text used as its own label)."""
    names = list(indices)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            if indices[first] == indices[second]:
                raise InputDataError(
                    f"{path}:{line}: {first} and {second} both read {_describe(columns[first])}; "
                    f"pass {_FLAGS[first]} and {_FLAGS[second]} for different columns"
                )


def _describe(column: str | int) -> str:
    return f"column {column!r}" if isinstance(column, str) else f"column {column}"


def _shorten(cell: str, limit: int = 30) -> str:
    return cell if len(cell) <= limit else cell[: limit - 3] + "..."
