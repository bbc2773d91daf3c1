"""The streaming pre-training corpus: sentence splitting, the three formats, the train/held-out cut,
block packing, tokenization into blocks and the up-front checks of bad files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from nlpforge.data.corpus import (
    CorpusFile,
    corpus_files,
    heldout_start,
    iter_documents,
    iter_token_blocks,
    pack_blocks,
    split_sentences,
)
from nlpforge.errors import ConfigError, InputDataError


def write(path: Path, content: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode(encoding))
    return path


def documents(path: Path, part: str = "all", **kwargs) -> list[list[str]]:
    return list(iter_documents(corpus_files([path]), part=part, **kwargs))


def error_of(paths: list, encoding: str | None = None) -> str:
    with pytest.raises(InputDataError) as caught:
        corpus_files(paths, encoding)
    message = str(caught.value)
    assert "\n" not in message
    return message


# ---- sentences ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("却说李、郭二贼欲弑献帝。张济谏曰：“不可。今日若便杀之，恐众人不服。”二人从其言！",
     ["却说李、郭二贼欲弑献帝。", "张济谏曰：“不可。", "今日若便杀之，恐众人不服。”", "二人从其言！"]),
    ("真的吗？是的；好……再见", ["真的吗？", "是的；", "好……", "再见"]),
    ("他说「走吧。」她问（为何？）然后", ["他说「走吧。」", "她问（为何？）", "然后"]),
    ("它长1.5米。", ["它长1.5米。"]),
    ("Pi is 3.14 today. It was e.g. fine! Really?  Yes", ["Pi is 3.14 today.", "It was e.g. fine!", "Really?", "Yes"]),
    ("Mr. Smith met Dr. Jones. Then J. K. Rowling left.", ["Mr. Smith met Dr. Jones.", "Then J. K. Rowling left."]),
    ('He said "go." She went (quietly.) Done', ['He said "go."', "She went (quietly.)", "Done"]),
    ("Wait... what?! Ok", ["Wait...", "what?!", "Ok"]),
    ("中文句子。English one. 再来", ["中文句子。", "English one.", "再来"]),
    ("   ", []),
    ("no end mark", ["no end mark"]),
])
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


# ---- formats -----------------------------------------------------------------------------------


def test_plain_text_blank_lines_separate_documents(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", "First one. Second one.\r\nA new paragraph\n\n\n  第二篇。还是第二篇\n\nlast\n")
    assert documents(path) == [["First one.", "Second one.", "A new paragraph"], ["第二篇。", "还是第二篇"], ["last"]]


def test_jsonl_one_document_per_line(tmp_path: Path) -> None:
    records = [{"text": "One. Two.\nThree", "id": 1}, {"text": ""}, {"body": "x", "text": "四。五"}, {"text": None}]
    path = write(tmp_path / "a.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n\n")
    assert documents(path) == [["One.", "Two.", "Three"], ["四。", "五"]]
    other = write(tmp_path / "b.json", json.dumps({"content": "Hello there. Bye"}) + "\n")
    assert documents(other, text_field="content") == [["Hello there.", "Bye"]]


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(InputDataError, match=r"a\.jsonl:2: no 'text' field \(fields: 'body'\); .*--text-field"):
        documents(path)
    broken = write(tmp_path / "b.jsonl", '{"text": "ok"}\n{"text": \n')
    with pytest.raises(InputDataError, match=r"b\.jsonl:2: not valid JSON"):
        documents(broken)
    array = write(tmp_path / "c.json", '[{"text": "a"}]\n')
    assert "JSON array" in error_of([array])


WIKI = """<doc id="13" url="https://zh.wikipedia.org/wiki?curid=13" title="数学">
数学

数学是研究数量的学科。它很古老！

它有许多分支。
</doc>
<doc id="18" url="u" title="A &amp; B">
A & B
A and B are letters. They are short.
</doc>
<doc id="19" title="Untitled">
Body line without a title line
</doc>
"""


def test_wikiextractor_documents_drop_the_title_line(tmp_path: Path) -> None:
    path = write(tmp_path / "wiki_00", WIKI)
    assert corpus_files([path])[0].format == "wiki"
    assert documents(path) == [["数学是研究数量的学科。", "它很古老！", "它有许多分支。"],
                               ["A and B are letters.", "They are short."], ["Body line without a title line"]]


def test_directory_and_glob_expansion(tmp_path: Path) -> None:
    write(tmp_path / "c" / "b.txt", "b\n")
    write(tmp_path / "c" / "a.jsonl", '{"text": "a"}\n')
    write(tmp_path / "c" / "sub" / "wiki_01", "<doc id=\"1\" title=\"t\">\nw\n</doc>\n")
    write(tmp_path / "c" / "skip.csv", "x\n")
    write(tmp_path / "c" / ".hidden.txt", "h\n")
    names = [f.path.name for f in corpus_files([tmp_path / "c"])]
    assert names == ["a.jsonl", "b.txt", "wiki_01"]
    assert [f.format for f in corpus_files([tmp_path / "c"])] == ["jsonl", "text", "wiki"]
    assert [f.path.name for f in corpus_files([str(tmp_path / "c" / "*.txt")])] == ["b.txt"]
    assert [d for f in corpus_files([tmp_path / "c"]) for d in iter_documents([f], part="all")] == [["a"], ["b"], ["w"]]
    assert "no file matches" in error_of([str(tmp_path / "c" / "*.md")])
    no_text_files = write(tmp_path / "d" / "x.csv", "x\n").parent
    assert "no *.txt" in error_of([no_text_files])


# ---- train / held-out --------------------------------------------------------------------------


def random_corpus(path: Path, rng: random.Random, count: int) -> list[str]:
    """``count`` distinct lines of random length (no sentence ends inside), a few blank lines between."""
    lines, out = [], []
    for i in range(count):
        line = f"line{i} " + "词" * rng.randint(0, 60) + "x" * rng.randint(0, 40)
        lines.append(line)
        out.append(line)
        if rng.random() < 0.2:
            out.append("")
    write(path, "\n".join(out) + ("\n" if rng.random() < 0.5 else ""))
    return lines


@pytest.mark.parametrize("seed", range(4))
def test_train_and_heldout_hold_every_line_once_and_heldout_is_the_tail(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "corpus.txt"
    lines = random_corpus(path, rng, 300)
    size = path.stat().st_size
    for share in (0.0, 0.05, rng.random(), 0.5, 1.0):
        train = [s for d in documents(path, "train", heldout_share=share) for s in d]
        heldout = [s for d in documents(path, "heldout", heldout_share=share) for s in d]
        assert train + heldout == lines
        boundary = heldout_start(path, share)
        cut = int(size * (1 - share))
        raw = path.read_bytes()
        # the boundary is the first line start at or after the cut (a line starts at p when raw[p - 1] is b"\n")
        assert boundary in (0, size) or raw[boundary - 1:boundary] == b"\n"
        assert boundary >= cut and (cut == 0 or b"\n" not in raw[cut - 1:boundary - 1])
        if share == 0.05:
            assert 0 < len(heldout) < 0.12 * len(lines)
            assert sum(len(s.encode()) + 1 for s in heldout) <= 0.05 * size + 200


def test_heldout_of_jsonl_and_wiki_files_is_the_tail(tmp_path: Path) -> None:
    records = [{"text": f"Document number {i}."} for i in range(200)]
    path = write(tmp_path / "a.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    train, heldout = documents(path, "train", heldout_share=0.1), documents(path, "heldout", heldout_share=0.1)
    assert train + heldout == [[r["text"]] for r in records]
    assert 15 <= len(heldout) <= 25
    wiki = write(tmp_path / "wiki_00", "".join(f'<doc id="{i}" title="T{i}">\nT{i}\nLine {i} a. Line {i} b.\n</doc>\n'
                                               for i in range(100)))
    train, heldout = documents(wiki, "train", heldout_share=0.3), documents(wiki, "heldout", heldout_share=0.3)
    every = [s for d in documents(wiki) for s in d]
    assert [s for d in train + heldout for s in d] == every
    assert [s for d in heldout for s in d] == every[len(every) - sum(map(len, heldout)):]


def test_long_document_comes_in_pieces(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", "".join(f"Sentence {i}.\n" for i in range(25)))
    pieces = documents(path, max_sentences=10)
    assert [len(p) for p in pieces] == [10, 10, 5]
    assert [s for p in pieces for s in p] == [f"Sentence {i}." for i in range(25)]


def test_bad_part_and_share() -> None:
    with pytest.raises(ConfigError, match="part"):
        list(iter_documents([], part="dev"))
    with pytest.raises(ConfigError, match="share"):
        list(iter_documents([], heldout_share=1.5))


# ---- bad input ---------------------------------------------------------------------------------


def test_bad_files_are_refused_up_front(tmp_path: Path) -> None:
    assert error_of([tmp_path / "missing.txt"]).startswith(f"{tmp_path / 'missing.txt'}: file not found")
    empty = write(tmp_path / "empty.txt", "")
    assert error_of([empty]) == f"{empty}: the file is empty; remove it from --corpus or fill it with text"
    blank = write(tmp_path / "blank.txt", "\n  \n\n")
    assert "only blank lines" in error_of([blank])
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)) * 10)
    assert "binary file" in error_of([binary])
    gz = tmp_path / "c.txt.gz"
    gz.write_bytes(b"\x1f\x8b\x08\x00rest")
    assert "gunzip" in error_of([gz])
    utf16 = write(tmp_path / "u16.txt", "\ufeffhello\n", "utf-16-le")
    assert "UTF-16" in error_of([utf16])
    latin = write(tmp_path / "latin.txt", "caf\xe9 cr\xe8me br\xfbl\xe9e\n" * 20, "latin-1")
    message = error_of([latin])
    assert message.startswith(f"{latin}:1: not UTF-8 text") and "--encoding" in message
    assert corpus_files([latin], "latin-1")[0].encoding == "latin-1"


def test_encodings(tmp_path: Path) -> None:
    text = "却说李、郭二贼欲弑献帝。张济谏曰：不可。\n\n第二篇。\n"
    gb = write(tmp_path / "gb.txt", text, "gb18030")
    assert corpus_files([gb])[0].encoding == "gb18030"  # auto-detected: decodes cleanly and reads as Chinese
    assert documents(gb) == [["却说李、郭二贼欲弑献帝。", "张济谏曰：不可。"], ["第二篇。"]]
    message = error_of([gb], "utf-8")
    assert message.startswith(f"{gb}:1: cannot decode as utf-8") and "--encoding gb18030" in message
    bom = write(tmp_path / "bom.txt", "\ufeffHello there. Bye\n")
    assert corpus_files(bom)[0].encoding == "utf-8-sig"  # one path alone is fine too
    assert corpus_files([bom], "utf-8-sig")[0].encoding == "utf-8-sig"
    assert documents(bom) == [["Hello there.", "Bye"]]
    with pytest.raises(ConfigError, match="unknown encoding"):
        corpus_files([bom], "no-such-codec")
    with pytest.raises(ConfigError, match="UTF-8 first"):
        corpus_files([bom], "utf-16")


def test_bad_bytes_after_the_checked_head_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "late.txt"
    path.write_bytes(("ascii line\n" * 7000).encode() + "坏".encode("gb18030") + b"\n")
    corpus_files([path])  # the first 64 KiB are fine
    with pytest.raises(InputDataError, match=r"late\.txt:7001: cannot decode as utf-8.*--encoding"):
        documents(path)


# ---- blocks ------------------------------------------------------------------------------------


def test_pack_blocks_is_exact() -> None:
    rng = random.Random(0)
    sequences = [[rng.randrange(1000) for _ in range(rng.randint(0, 40))] for _ in range(200)]
    for separator in (None, -1):
        stream: list[int] = []
        for ids in (s for s in sequences if s):
            if separator is not None and stream:
                stream.append(separator)
            stream.extend(ids)
        for size in (1, 7, 64, 1000):
            blocks = list(pack_blocks(iter(sequences), size, separator))
            assert all(len(block) == size for block in blocks)
            assert len(blocks) == len(stream) // size
            assert [i for block in blocks for i in block] == stream[:len(blocks) * size]
    assert list(pack_blocks([[1, 2], [3]], 2, separator_id=9)) == [[1, 2], [9, 3]]
    assert list(pack_blocks([[1, 2, 3, 4, 5]], 2)) == [[1, 2], [3, 4]]  # the short tail is dropped
    with pytest.raises(ConfigError):
        list(pack_blocks([[1]], 0))


def word_tokenizer(separator: str | None = "[SEP]"):
    """A fast tokenizer with one id per whitespace-separated word (and [SEP] when asked)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "[SEP]", *(f"w{i}" for i in range(50))]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]",
                                   **({"sep_token": separator} if separator else {}))


def test_iter_token_blocks_separates_documents() -> None:
    tokenizer = word_tokenizer()
    docs = [["w0 w1", "w2"], [], ["w3 w4 w5"], ["w6"], ["w7 w8 w9 w10 w11"]]
    for batch_lines in (1, 2, 1000):
        blocks = list(iter_token_blocks(tokenizer, iter(docs), block_size=4, batch_lines=batch_lines))
        # w0 w1 w2 [SEP] w3 w4 w5 [SEP] w6 [SEP] w7 w8 w9 w10 w11 -> ids 2 3 4 1 5 6 7 1 8 1 9 10 11 12 13
        assert blocks == [[2, 3, 4, 1], [5, 6, 7, 1], [8, 1, 9, 10]]
    plain = word_tokenizer(separator=None)
    assert list(iter_token_blocks(plain, docs, block_size=5)) == [[2, 3, 4, 5, 6], [7, 8, 9, 10, 11]]
    # a tokenizers.Tokenizer works too, and truncation set on it does not cut sentences
    backend = tokenizer.backend_tokenizer
    backend.enable_truncation(2)
    assert list(iter_token_blocks(backend, [["w0 w1 w2 w3"]], block_size=4)) == [[2, 3, 4, 5]]
    assert backend.truncation is not None  # the caller's tokenizer is left as it was


def test_corpus_file_without_format_is_detected(tmp_path: Path) -> None:
    path = write(tmp_path / "x.jsonl", '{"text": "A b. C d."}\n')
    assert list(iter_documents([CorpusFile(path, "utf-8")], part="all")) == [["A b.", "C d."]]
