"""How to read the data files: one ``DataOptions`` shared by every task and command (stored in
nlpforge.json, so that eval and compress read files the way training did)."""

from __future__ import annotations

from dataclasses import dataclass

from nlpforge.errors import ConfigError
from nlpforge.settings import setting


def column(value: str | int | None) -> str | int | None:
    """A column given on the command line: digits select by index, anything else by header name."""
    return int(value) if isinstance(value, str) and value.isdigit() else value


def article_range(value: str | list[int] | tuple[int, int] | None) -> tuple[int, int] | None:
    """``START:STOP`` (e.g. ``0:38``) -> (0, 38)."""
    if value is None or isinstance(value, (list, tuple)):
        return tuple(value) if value is not None else None
    start, _, stop = value.partition(":")
    if not (start.isdigit() and stop.isdigit()):
        raise ConfigError(f"--articles {value!r}: expected START:STOP, e.g. 0:38")
    return int(start), int(stop)


@dataclass
class DataOptions:
    """How to read the data files (columns, encoding, CoNLL columns, SQuAD windows)."""

    text_column: str | int = setting("text", "Text column: header name or 0-based index.", parse=column)
    text_pair_column: str | int | None = setting(None, "Second text column (sentence pairs).", parse=column)
    label_column: str | int | None = setting("label", "Label column: header name or 0-based index (multilabel: "
                                             "the field holding a list of labels).", parse=column)
    encoding: str = setting("utf-8", "File encoding, e.g. gb18030.")
    token_column: int = setting(0, "CoNLL token column.")
    tag_column: int = setting(-1, "CoNLL tag column (-1: the last).")
    articles: tuple[int, int] | None = setting(None, "SQuAD JSON: keep articles START:STOP, e.g. 0:38.",
                                               parse=article_range)
    doc_stride: int = setting(0, "span_qa: tokens of overlap between context windows (0: a third of "
                                 "--max-length).")
    max_answer_length: int = setting(0, "span_qa: longest answer in tokens (0: 30; 100 for Chinese).")
    n_best: int = setting(20, "span_qa: candidate spans pooled per question.")
    null_threshold: float | None = setting(None, "span_qa with unanswerable questions (SQuAD 2.0): answer \"\" when "
                                                 "the no-answer score beats the best span's by more than this "
                                                 "(default: always answer; 0 when scoring SQuAD 2.0 data).")
    label_separator: str = setting("|", "multilabel TSV/CSV: the separator between the labels of one example.")
    text_prefix: str | None = setting(None, "classify: put this in front of every text before tokenizing, e.g. "
                                            "'query: ' for E5 encoders (recorded in the checkpoint: predict and "
                                            "serve add it too). Default: what the base checkpoint was trained "
                                            "with, else none.")
