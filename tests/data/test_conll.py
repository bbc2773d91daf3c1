"""CoNLL-style token-per-line readers: CoNLL-2003 columns, char-tab-tag files and every error path."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import shared_path
from nlpforge.data.conll import read_conll
from nlpforge.data.examples import TaggedSentence
from nlpforge.errors import InputDataError

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

Peter NNP B-NP B-PER
Blackburn NNP B-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC
"""


def write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8", newline="")
    return path


def error_of(path: Path, **kwargs) -> str:
    with pytest.raises(InputDataError) as caught:
        read_conll(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


def test_conll2003_columns(tmp_path):
    path = write(tmp_path, "valid.txt", CONLL)
    assert read_conll(path) == [
        TaggedSentence(tokens=["EU", "rejects", "German"], tags=["B-ORG", "O", "B-MISC"], line=3),
        TaggedSentence(tokens=["Peter", "Blackburn"], tags=["B-PER", "I-PER"], line=7),
        TaggedSentence(tokens=["BRUSSELS"], tags=["B-LOC"], line=12),
    ]


def test_other_tag_column(tmp_path):
    path = write(tmp_path, "valid.txt", CONLL)
    chunks = read_conll(path, tag_column=2)
    assert chunks[0].tags == ["B-NP", "B-VP", "B-NP"]


def test_char_tab_tag_file_with_crlf_and_no_final_newline(tmp_path):
    path = write(tmp_path, "train.bio", "中\tB-ORG \n共\tI-ORG\n的\tO\n\n\n我\tO\r\n们\tO")
    assert read_conll(path) == [
        TaggedSentence(tokens=["中", "共", "的"], tags=["B-ORG", "I-ORG", "O"], line=1),
        TaggedSentence(tokens=["我", "们"], tags=["O", "O"], line=6),
    ]


def test_tab_split_keeps_inner_spaces(tmp_path):
    path = write(tmp_path, "train.tsv", "New York\tB-LOC\nis\tO\n")
    [sentence] = read_conll(path)
    assert sentence.tokens == ["New York", "is"]


def test_bioes_tags_pass(tmp_path):
    path = write(tmp_path, "train.txt", "New B-LOC\nYork E-LOC\nis O\nbig S-MISC\n")
    [sentence] = read_conll(path)
    assert sentence.tags == ["B-LOC", "E-LOC", "O", "S-MISC"]


def test_missing_file(tmp_path):
    assert "file not found" in error_of(tmp_path / "nope.txt")


@pytest.mark.parametrize("content", ["", "\n\n", "-DOCSTART- -X- -X- O\n\n"])
def test_empty_file(tmp_path, content):
    path = write(tmp_path, "empty.txt", content)
    assert "no sentences" in error_of(path)


def test_malformed_tag(tmp_path):
    path = write(tmp_path, "train.txt", "EU B-ORG\nrejects PER\n")
    message = error_of(path)
    assert message.startswith(f"{path}:2: malformed tag 'PER'")
    path = write(tmp_path, "lower.txt", "EU b-org\n")
    assert error_of(path).startswith(f"{path}:1: malformed tag 'b-org'")


def test_wrong_tag_column_is_reported(tmp_path):
    path = write(tmp_path, "valid.txt", CONLL)
    assert error_of(path, tag_column=1).startswith(f"{path}:3: malformed tag 'NNP'")


def test_too_few_columns(tmp_path):
    path = write(tmp_path, "train.txt", "EU B-ORG\nrejects\n")
    message = error_of(path)
    assert message.startswith(f"{path}:2: 1 column(s), too few")
    path = write(tmp_path, "valid.txt", CONLL)
    assert error_of(path, tag_column=5).startswith(f"{path}:3: 4 column(s), too few")


@pytest.mark.parametrize("token", ["", " ", "\u3000"])
def test_blank_token(tmp_path, token):
    path = write(tmp_path, "train.bio", f"中\tO\n{token}\tO\n")
    assert error_of(path).startswith(f"{path}:2: empty or blank token")


def test_wrong_encoding(tmp_path):
    path = tmp_path / "gb.bio"
    path.write_bytes("中\tO\n".encode("gb18030"))
    assert "--encoding gb18030" in error_of(path)
    assert read_conll(path, encoding="gb18030")[0].tokens == ["中"]


@pytest.mark.integration
def test_conll2003_valid():
    sentences = read_conll(shared_path("data", "conll2003", "valid.txt"))
    assert len(sentences) == 3250
    assert sum(len(s.tokens) for s in sentences) == 51362
    assert sentences[0].line == 3 and sentences[0].tokens[0] == "CRICKET"
    assert {tag for s in sentences for tag in s.tags} == {
        "O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"
    }


@pytest.mark.integration
def test_msra_test():
    sentences = read_conll(shared_path("data", "msra_ner", "test.bio"))
    assert sum(len(s.tokens) for s in sentences) == 172601
    assert all(len(token) == 1 for s in sentences for token in s.tokens)
