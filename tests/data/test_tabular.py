"""TSV / CSV / JSON Lines classification readers: formats, header detection and every error path."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import shared_path
from nlpforge.data.examples import TextExample
from nlpforge.data.tabular import check_labels, label_names_of, read_text_examples
from nlpforge.errors import ConfigError, InputDataError


def write(tmp_path: Path, name: str, content: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode(encoding))
    return path


def error_of(path: Path, **kwargs) -> str:
    """The one-line message read_text_examples raises for ``path``."""
    with pytest.raises(InputDataError) as caught:
        read_text_examples(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


# ---- formats -----------------------------------------------------------------------------------


def test_tsv_with_header_keeps_quotes_literally(tmp_path):
    path = write(tmp_path, "train.tsv", 'text\tlabel\nsaid "hi there\t1\n`` ok \'\' \t0\n')
    assert read_text_examples(path) == [
        TextExample(text='said "hi there', text_pair=None, label="1", line=2),
        TextExample(text="`` ok ''", text_pair=None, label="0", line=3),
    ]


def test_tsv_by_name_in_any_order_and_pairs(tmp_path):
    path = write(tmp_path, "dev.tsv", "qid\tlabel\ttext_a\ttext_b\n0\t1\tfirst\tsecond\n")
    [example] = read_text_examples(path, text_column="text_a", text_pair_column="text_b")
    assert example == TextExample(text="first", text_pair="second", label="1", line=2)


def test_headerless_file_by_index(tmp_path):
    path = write(tmp_path, "dev.txt", "a one\tb one\t0\na two\tb two\t1\n")
    examples = read_text_examples(path, text_column=0, text_pair_column=1, label_column=2)
    assert [(e.text, e.text_pair, e.label, e.line) for e in examples] == [
        ("a one", "b one", "0", 1),
        ("a two", "b two", "1", 2),
    ]


def test_negative_index_counts_from_the_end(tmp_path):
    path = write(tmp_path, "dev.tsv", "x\ty\tnews_car\n")
    [example] = read_text_examples(path, text_column=1, label_column=-1)
    assert (example.text, example.label) == ("y", "news_car")


def test_int_columns_detect_a_header_of_common_words(tmp_path):
    path = write(tmp_path, "train.tsv", "Label\tTEXT_A\n1\tgood\n0\tbad\n")
    examples = read_text_examples(path, text_column=1, label_column=0)
    assert [(e.text, e.label, e.line) for e in examples] == [("good", "1", 2), ("bad", "0", 3)]


def test_int_columns_first_row_is_data_unless_header_words(tmp_path):
    path = write(tmp_path, "train.tsv", "text is here\tlabel\nsecond\tx\n")
    assert len(read_text_examples(path, text_column=0, label_column=1)) == 2
    assert len(read_text_examples(path, text_column=0, label_column=1, header=True)) == 1


def test_header_false_reads_first_row_as_data(tmp_path):
    path = write(tmp_path, "train.tsv", "text\tlabel\n")
    [example] = read_text_examples(path, text_column=0, label_column=1, header=False)
    assert (example.text, example.label) == ("text", "label")


def test_unlabelled_and_blank_lines_and_crlf(tmp_path):
    path = write(tmp_path, "test.tsv", "text\r\none\r\n\r\n  \r\ntwo\r\n\r\n")
    examples = read_text_examples(path, label_column=None)
    assert [(e.text, e.label, e.line) for e in examples] == [("one", None, 2), ("two", None, 5)]


def test_csv_with_quoted_fields(tmp_path):
    path = write(tmp_path, "train.csv", 'text,label\n"a, b ""quoted""",pos\n"two\nlines",neg\nlast,pos\n')
    examples = read_text_examples(path)
    assert [(e.text, e.label, e.line) for e in examples] == [
        ('a, b "quoted"', "pos", 2),
        ("two\nlines", "neg", 3),
        ("last", "pos", 5),
    ]


def test_delimiter_overrides_the_extension(tmp_path):
    path = write(tmp_path, "train.txt", "text|label\nhello|1\n")
    [example] = read_text_examples(path, delimiter="|")
    assert (example.text, example.label) == ("hello", "1")


def test_json_lines(tmp_path):
    path = write(
        tmp_path,
        "dev.jsonl",
        '{"sentence": "好的", "label": 1, "x": null}\n\n{"sentence": "line\u2028sep", "label": "0"}\n',
    )
    examples = read_text_examples(path, text_column="sentence")
    assert examples == [
        TextExample(text="好的", text_pair=None, label="1", line=1),
        TextExample(text="line\u2028sep", text_pair=None, label="0", line=3),
    ]


def test_json_extension_is_json_lines_too(tmp_path):
    path = write(tmp_path, "dev.json", '{"a": "x", "b": "y", "label_desc": "news_car"}\n')
    [example] = read_text_examples(path, text_column="a", text_pair_column="b", label_column="label_desc")
    assert example == TextExample(text="x", text_pair="y", label="news_car", line=1)


def test_other_encoding_and_bom(tmp_path):
    path = write(tmp_path, "gb.tsv", "text\tlabel\n很好\t1\n", encoding="gb18030")
    assert read_text_examples(path, encoding="gb18030")[0].text == "很好"
    path = write(tmp_path, "bom.tsv", "\ufefftext\tlabel\nfine\t1\n")
    assert read_text_examples(path)[0].text == "fine"


# ---- errors ------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    message = error_of(tmp_path / "nope.tsv")
    assert "file not found" in message


def test_wrong_encoding_suggests_one(tmp_path):
    path = write(tmp_path, "gb.tsv", "text\tlabel\n很好\t1\n", encoding="gb18030")
    message = error_of(path)
    assert message.startswith(f"{path}:2:")
    assert "--encoding gb18030" in message


@pytest.mark.parametrize("content", ["", "\n\n", "  \n"])
def test_empty_file(tmp_path, content):
    path = write(tmp_path, "empty.tsv", content)
    assert "empty" in error_of(path)
    path = write(tmp_path, "empty.jsonl", content)
    assert "empty" in error_of(path)


def test_header_without_data_rows(tmp_path):
    path = write(tmp_path, "header.tsv", "text\tlabel\n")
    assert error_of(path).startswith(f"{path}:1: a header but no data rows")


def test_missing_named_column_lists_the_header(tmp_path):
    path = write(tmp_path, "dev.tsv", "qid\tlabel\ttext_a\n0\t1\tgood\n")
    message = error_of(path)
    assert message.startswith(f"{path}:1: no column 'text' in the header (columns: qid, label, text_a)")
    assert "--text-column" in message and "index" in message


def test_headerless_file_read_by_name_suggests_indices(tmp_path):
    path = write(tmp_path, "dev.txt", "a one\tb one\t0\n")
    message = error_of(path)
    assert message.startswith(f"{path}:1: no column 'text'")
    assert "--text-column 0" in message


def test_names_with_header_false(tmp_path):
    path = write(tmp_path, "dev.tsv", "text\tlabel\ngood\t1\n")
    message = error_of(path, header=False)
    assert message.startswith(f"{path}:1:") and "index" in message


def test_ragged_row_names_expected_and_found(tmp_path):
    path = write(tmp_path, "dev.txt", "a\tb\t0\na only\t1\n")
    message = error_of(path, text_column=0, text_pair_column=1, label_column=2)
    assert message.startswith(f"{path}:2: expected at least 3 tab-separated fields")
    assert "found 2" in message and "--label-column" in message


def test_ragged_row_with_header(tmp_path):
    path = write(tmp_path, "dev.tsv", "text\tlabel\nno label here\n")
    assert error_of(path).startswith(f"{path}:2: expected at least 2 tab-separated fields")


def test_extra_field_with_header(tmp_path):
    path = write(tmp_path, "dev.tsv", "text\tlabel\ntab\tinside\t1\n")
    message = error_of(path)
    assert message.startswith(f"{path}:2: 3 tab-separated fields but the header has 2")


def test_empty_text(tmp_path):
    path = write(tmp_path, "dev.tsv", "text\tlabel\ngood\t1\n  \t0\n")
    assert error_of(path).startswith(f"{path}:3: empty text in column 'text'")


def test_empty_text_pair(tmp_path):
    path = write(tmp_path, "dev.txt", "a\tb\t1\nc\t\t0\n")
    message = error_of(path, text_column=0, text_pair_column=1, label_column=2)
    assert message.startswith(f"{path}:2: empty text in column 1")


def test_missing_label(tmp_path):
    path = write(tmp_path, "dev.tsv", "text\tlabel\ngood\t \n")
    assert error_of(path).startswith(f"{path}:2: missing label in column 'label'")


def test_same_column_twice(tmp_path):
    path = write(tmp_path, "dev.txt", "a\t1\n")
    assert "both read column 0" in error_of(path, text_column=0, label_column=0)


def test_bad_csv_quoting(tmp_path):
    path = write(tmp_path, "dev.csv", 'text,label\nok,1\n"bad"x,0\n')
    assert error_of(path).startswith(f"{path}:3: cannot split the line")


def test_json_lines_errors(tmp_path):
    path = write(tmp_path, "a.jsonl", '{"text": "ok", "label": 1}\n{"text": "bad", \n')
    assert error_of(path).startswith(f"{path}:2: not valid JSON")
    path = write(tmp_path, "b.jsonl", '{"text": "ok", "label": 1}\n["text", 1]\n')
    assert error_of(path).startswith(f"{path}:2: expected a JSON object, found list")
    path = write(tmp_path, "c.jsonl", '{"text": "ok", "label": 1}\n{"sentence": "x", "label": 1}\n')
    message = error_of(path)
    assert message.startswith(f"{path}:2: no field 'text' (fields: sentence, label)")
    path = write(tmp_path, "d.jsonl", '{"text": "ok", "label": null}\n')
    assert error_of(path).startswith(f"{path}:1: missing label in column 'label'")
    path = write(tmp_path, "e.jsonl", '{"text": ["a"], "label": 1}\n')
    assert error_of(path).startswith(f"{path}:1: field 'text' is a JSON list")
    path = write(tmp_path, "f.jsonl", '{"text": "", "label": 1}\n')
    assert error_of(path).startswith(f"{path}:1: empty text")


def test_json_lines_with_int_column(tmp_path):
    path = write(tmp_path, "a.jsonl", '{"text": "ok", "label": 1}\n')
    message = error_of(path, text_column=0)
    assert "--text-column" in message and "field name" in message


def test_column_of_wrong_type(tmp_path):
    path = write(tmp_path, "a.tsv", "text\tlabel\nx\t1\n")
    with pytest.raises(ConfigError, match="label_column"):
        read_text_examples(path, label_column=True)


# ---- labels ------------------------------------------------------------------------------------


def test_label_names_of():
    def examples(*labels):
        return [TextExample(text="t", text_pair=None, label=label, line=1) for label in labels]

    assert label_names_of(examples("10", "2", "1", "2", None)) == ["1", "2", "10"]
    assert label_names_of(examples("neg", "pos", "Neutral")) == ["Neutral", "neg", "pos"]
    assert label_names_of(examples("1", "x", "10", "2")) == ["1", "10", "2", "x"]
    assert label_names_of(examples(None)) == []


def test_check_labels(tmp_path):
    path = tmp_path / "dev.tsv"
    good = TextExample(text="t", text_pair=None, label="1", line=2)
    unlabelled = TextExample(text="t", text_pair=None, label=None, line=3)
    bad = TextExample(text="t", text_pair=None, label="2", line=4)
    check_labels([good, unlabelled], ["0", "1"], path)
    with pytest.raises(InputDataError) as caught:
        check_labels([good, bad, TextExample("t", None, "3", 5)], ["0", "1"], path)
    assert str(caught.value) == f"{path}:4: unknown label '2'; the model knows: 0, 1"


# ---- the real datasets -------------------------------------------------------------------------


@pytest.mark.integration
def test_sst2_dev():
    examples = read_text_examples(shared_path("data", "sst2", "dev.tsv"))
    assert len(examples) == 872
    assert label_names_of(examples) == ["0", "1"]
    assert examples[0].line == 2 and examples[0].text.startswith("it 's a charming")


@pytest.mark.integration
def test_chnsenticorp_dev():
    examples = read_text_examples(shared_path("data", "chnsenticorp", "dev.tsv"), text_column="text_a")
    assert len(examples) == 1200
    assert label_names_of(examples) == ["0", "1"]


@pytest.mark.integration
def test_afqmc_dev():
    path = shared_path("data", "afqmc", "dev.txt")
    examples = read_text_examples(path, text_column=0, text_pair_column=1, label_column=2)
    assert len(examples) == 4316
    assert all(e.text_pair for e in examples)
    assert label_names_of(examples) == ["0", "1"]


@pytest.mark.integration
def test_tnews_dev():
    examples = read_text_examples(shared_path("data", "tnews", "dev.tsv"), text_column=0, label_column=1)
    assert len(examples) == 10000
    assert len(label_names_of(examples)) == 15
    assert all(label.startswith("news_") for label in label_names_of(examples))
