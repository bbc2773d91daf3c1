"""Tokenizer training: each kind trains on a small generated corpus in seconds, saves in Hugging Face
layout that AutoTokenizer loads, and tokenizes as its family does; the CLI prints a JSON summary."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from conftest import run_cli
from nlpforge.errors import ConfigError, InputDataError
from nlpforge.tokenizer_training import train_tokenizer

HANZI = "天地玄黄宇宙洪荒日月盈昃辰宿列张寒来暑往秋收冬藏闰余成岁律吕调阳云腾致雨露结为霜金生丽水玉出昆冈"
WORDS = ["the", "model", "reads", "text", "token", "train", "layer", "small", "fast", "data", "word", "piece"]


def write_corpus(directory: Path, seed: int = 0) -> list[Path]:
    """A plain-text file (mixed Chinese/English, blank lines between documents) and a JSON-lines file."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)

    def sentence() -> str:
        if rng.random() < 0.5:
            return "".join(rng.choice(HANZI) for _ in range(rng.randint(4, 12))) + rng.choice("。！？")
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))).capitalize() + "."

    lines = []
    for _ in range(150):
        lines.extend(" ".join(sentence() for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 3)))
        lines.append("")
    text = directory / "mixed.txt"
    text.write_text("\n".join(lines), encoding="utf-8")
    records = directory / "more.jsonl"
    records.write_text("".join(json.dumps({"text": sentence() + sentence()}, ensure_ascii=False) + "\n"
                               for _ in range(100)), encoding="utf-8")
    return [text, records]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    """One tokenizer of each kind, trained once for the module."""
    root = tmp_path_factory.mktemp("tokenizers")
    files = write_corpus(root / "corpus")
    sizes = {"wordpiece": 200, "bpe": 400, "unigram": 200}
    return {kind: (root / kind, train_tokenizer(files, kind, size, root / kind, min_frequency=2))
            for kind, size in sizes.items()}


def test_summary_and_layout(trained: dict) -> None:
    for kind, (out, summary) in trained.items():
        assert summary["kind"] == kind and summary["out"] == str(out)
        assert [Path(f).name for f in summary["files"]] == ["mixed.txt", "more.jsonl"]
        assert summary["sentences"] > 500 and summary["seconds"] >= 0
        assert (out / "tokenizer.json").is_file()
        config = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
        assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
        assert not list(out.parent.glob(f".{out.name}.*"))  # no temporary directory left behind
    assert trained["bpe"][1]["vocab_size"] == 400
    assert trained["unigram"][1]["vocab_size"] == 200


def test_wordpiece_is_bert_style(trained: dict) -> None:
    tokenizer = AutoTokenizer.from_pretrained(trained["wordpiece"][0])
    assert tokenizer.convert_ids_to_tokens(list(range(5))) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert (tokenizer.pad_token, tokenizer.mask_token, tokenizer.cls_token, tokenizer.sep_token) == \
        ("[PAD]", "[MASK]", "[CLS]", "[SEP]")
    assert tokenizer.tokenize("天地玄黄宇宙") == list("天地玄黄宇宙")  # Chinese: one character per token
    assert tokenizer.tokenize("玄黄model") == ["玄", "黄", "model"]
    encoded = tokenizer("天地", "model")
    assert tokenizer.convert_ids_to_tokens(encoded["input_ids"]) == ["[CLS]", "天", "地", "[SEP]", "model", "[SEP]"]
    assert encoded["token_type_ids"] == [0, 0, 0, 0, 1, 1]
    assert any(token.startswith("##") for token in tokenizer.get_vocab())
    assert tokenizer.decode(tokenizer("the model reads")["input_ids"], skip_special_tokens=True) == "the model reads"


def test_bpe_round_trips_any_text(trained: dict) -> None:
    tokenizer = AutoTokenizer.from_pretrained(trained["bpe"][0])
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|endoftext|>", "<pad>")
    texts = ["the model reads text.", "天地玄黄，宇宙洪荒。", "  unseen   words\tand émojis 🙂 ×\n",
             "Mixed 中文 and English!"]
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids) == text
    assert tokenizer.tokenize("small model") == ["small", "Ġmodel"]  # merges learned, the space kept in the token


def test_unigram_is_sentencepiece_style(trained: dict) -> None:
    tokenizer = AutoTokenizer.from_pretrained(trained["unigram"][0])
    assert tokenizer.convert_ids_to_tokens(list(range(5))) == ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]
    encoded = tokenizer("the model", "天地")["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(encoded)
    assert tokens[0] == "<s>" and tokens[-1] == "</s>" and tokens.count("</s>") == 3
    assert all(t.startswith("▁") or t in ("<s>", "</s>") or t in HANZI or t.isalpha() for t in tokens)
    text = "the model reads 天地玄黄"
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text


def test_replaces_a_tokenizer_directory_but_not_other_files(tmp_path: Path, trained: dict) -> None:
    files = write_corpus(tmp_path / "corpus", seed=1)
    out = tmp_path / "tok"
    train_tokenizer(files, "wordpiece", 150, out)
    train_tokenizer(files, "bpe", 300, out)  # replaces the wordpiece tokenizer
    assert AutoTokenizer.from_pretrained(out).eos_token == "<|endoftext|>"
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(ConfigError, match="holds other files than a tokenizer's"):
        train_tokenizer(files, "bpe", 300, model_dir)
    assert (model_dir / "model.safetensors").read_bytes() == b"weights"


def test_bad_settings(tmp_path: Path) -> None:
    files = write_corpus(tmp_path / "corpus")
    with pytest.raises(ConfigError, match="--kind 'sentencepiece'"):
        train_tokenizer(files, "sentencepiece", 100, tmp_path / "o")
    with pytest.raises(ConfigError, match="at least 258"):
        train_tokenizer(files, "bpe", 100, tmp_path / "o")
    with pytest.raises(ConfigError, match="distinct characters"):
        train_tokenizer(files, "unigram", 20, tmp_path / "o")
    blank = tmp_path / "blank.jsonl"
    blank.write_text('{"text": ""}\n', encoding="utf-8")
    with pytest.raises(InputDataError, match="no text to train on"):
        train_tokenizer([blank], "wordpiece", 50, tmp_path / "o")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n{"body": "x"}\n', encoding="utf-8")
    with pytest.raises(InputDataError, match=r"broken\.jsonl:2: no 'text' field"):  # raised inside the trainer
        train_tokenizer([broken], "wordpiece", 50, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_cli_trains_and_prints_json(tmp_path: Path, monkeypatch, capsys) -> None:
    files = write_corpus(tmp_path / "corpus")
    out = tmp_path / "tok"
    code, stdout, stderr = run_cli(monkeypatch, capsys, "tokenizer", "train", "--corpus", tmp_path / "corpus",
                                   "--kind", "wordpiece", "--vocab-size", "150", "--out", out, "--lowercase")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["kind"] == "wordpiece" and summary["lowercase"] is True
    assert sorted(Path(f).name for f in summary["files"]) == sorted(f.name for f in files)
    assert AutoTokenizer.from_pretrained(out).tokenize("THE Model") == ["the", "model"]

    code, stdout, stderr = run_cli(monkeypatch, capsys, "tokenizer", "train", "--corpus", tmp_path / "none.txt",
                                   "--kind", "bpe", "--vocab-size", "300", "--out", tmp_path / "o")
    assert code == 2 and stdout == ""
    assert stderr.strip() == (f"error: {tmp_path / 'none.txt'}: file not found; pass an existing corpus file, "
                              "directory or glob pattern")
    code, _, stderr = run_cli(monkeypatch, capsys, "tokenizer", "train", "--corpus", files[0], "--kind", "bpe",
                              "--vocab-size", "300", "--out", tmp_path / "o", "--encoding", "utf-16")
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "UTF-8 first" in stderr
