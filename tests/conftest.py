"""Shared fixtures: tiny random Hugging Face models (hidden 32, 2 layers, vocab 99) and paths."""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64)
# ALBERT: 16-wide factorised embeddings projected to hidden 32, one layer shared by both depths.
TINY_ALBERT = dict(TINY, embedding_size=16, initializer_range=0.2)
# HF class name -> (config class, config kwargs). initializer_range is raised so that random
# models give varied outputs instead of near-constant ones.
HF_TINY = {
    "BertModel": (transformers.BertConfig, dict(TINY, initializer_range=0.2)),
    "BertForMaskedLM": (transformers.BertConfig, dict(TINY, initializer_range=0.2)),
    "RobertaModel": (transformers.RobertaConfig, dict(TINY, initializer_range=0.2, type_vocab_size=1)),
    "RobertaForMaskedLM": (transformers.RobertaConfig, dict(TINY, initializer_range=0.2, type_vocab_size=1)),
    "XLMRobertaModel": (transformers.XLMRobertaConfig, dict(TINY, initializer_range=0.2, type_vocab_size=1)),
    "DistilBertModel": (transformers.DistilBertConfig,
                        dict(vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37,
                             max_position_embeddings=64, initializer_range=0.2)),
    "DistilBertForMaskedLM": (transformers.DistilBertConfig,
                              dict(vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37,
                                   max_position_embeddings=64, initializer_range=0.2)),
    "AlbertModel": (transformers.AlbertConfig, TINY_ALBERT),
    "AlbertForMaskedLM": (transformers.AlbertConfig, TINY_ALBERT),
    **{f"{family}For{task}": (config_cls, dict(kwargs, num_labels=2 if task == "QuestionAnswering" else 3))
       for family, (config_cls, kwargs) in (
           ("Bert", (transformers.BertConfig, dict(TINY, initializer_range=0.2))),
           ("XLMRoberta", (transformers.XLMRobertaConfig, dict(TINY, initializer_range=0.2, type_vocab_size=1))),
           ("DistilBert", (transformers.DistilBertConfig,
                           dict(vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37,
                                max_position_embeddings=64, initializer_range=0.2))),
           ("Albert", (transformers.AlbertConfig, TINY_ALBERT)))
       for task in ("SequenceClassification", "TokenClassification", "QuestionAnswering")},
    "GPT2LMHeadModel": (transformers.GPT2Config,
                        dict(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                             initializer_range=0.2, bos_token_id=98, eos_token_id=98, pad_token_id=98)),
}
ENCODER_CLASSES = [name for name in HF_TINY if name != "GPT2LMHeadModel"]
TASK_CLASSES = [name for name in HF_TINY if name.split("For")[-1] in
                ("SequenceClassification", "TokenClassification", "QuestionAnswering")]


def tiny_hf_model(name: str, seed: int = 0, attn_implementation: str = "eager") -> torch.nn.Module:
    """A random tiny transformers model of class ``name`` in eval mode."""
    config_cls, kwargs = HF_TINY[name]
    torch.manual_seed(seed)
    config = config_cls(**kwargs)
    config._attn_implementation = attn_implementation
    return getattr(transformers, name)(config).eval()


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Torch on one thread for a test module: tiny models step far faster on one thread than on two
    busy cores (no waiting between threads). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_vocab(tmp_path: Path) -> Path:
    """A 99-entry WordPiece vocab.txt (special tokens first, then a-z words)."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words += [chr(ord("a") + i) for i in range(26)]
    words += [f"{a}{b}" for a in "abcdefgh" for b in "aeiouyrst"][: 99 - len(words)]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(words) + "\n", encoding="utf-8")
    return path


def tiny_tokenizer(vocab_file: Path) -> transformers.PreTrainedTokenizerBase:
    """A fast WordPiece tokenizer over vocab.txt (transformers 5 wants the vocabulary as a dict)."""
    words = vocab_file.read_text(encoding="utf-8").split()
    tokenizer = transformers.BertTokenizerFast(vocab={word: i for i, word in enumerate(words)})
    assert tokenizer("a b")["input_ids"] == [2, 5, 6, 3]  # [CLS] a b [SEP]: no word falls to [UNK]
    return tokenizer


def save_tiny_checkpoint(out: Path, architecture: str, vocab_file: Path) -> Path:
    """A tiny random HF ``architecture`` with the WordPiece tokenizer of ``vocab_file``, saved to ``out``."""
    tiny_hf_model(architecture).save_pretrained(out)
    tiny_tokenizer(vocab_file).save_pretrained(out)
    return out


@pytest.fixture
def tiny_bert_dir(tmp_path: Path, tiny_vocab: Path) -> Path:
    """A saved tiny BertModel checkpoint directory with a WordPiece tokenizer."""
    return save_tiny_checkpoint(tmp_path / "tiny-bert", "BertModel", tiny_vocab)


@pytest.fixture
def tiny_mlm_dir(tmp_path: Path, tiny_vocab: Path) -> Path:
    """The same with a masked-LM head (BertForMaskedLM)."""
    return save_tiny_checkpoint(tmp_path / "tiny-mlm", "BertForMaskedLM", tiny_vocab)


def save_letter_model(directory: Path) -> Path:
    """A tiny random BertModel with a letters-only WordPiece tokenizer (one token per letter), saved."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz"]
    tiny_hf_model("BertModel").save_pretrained(directory)
    transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}).save_pretrained(directory)
    return directory


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the test (with the path named) when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


LETTERS = "abcdefghijklmnopqrstuvwxyz"


def write_classification(path: Path, count: int, seed: int) -> None:
    """label 1 iff the sentence contains the word 'z' (a rule a tiny model learns in a few epochs)."""
    rng = random.Random(seed)
    rows = ["text\tlabel"]
    for i in range(count):
        words = [rng.choice(LETTERS[:20]) for _ in range(rng.randint(3, 8))]
        if i % 2:
            words[rng.randrange(len(words))] = "z"
        rows.append(f"{' '.join(words)}\t{i % 2}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def ready_client(app: Any) -> Any:
    """A started ``TestClient`` over ``app`` once /ready answers 200 (the caller exits it)."""
    from fastapi.testclient import TestClient

    client = TestClient(app)
    client.__enter__()
    deadline = time.monotonic() + 30
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, "server never became ready"
        time.sleep(0.02)
    return client


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    """Run ``nlpforge ARGS`` in-process as the console script does; returns (exit code, stdout, stderr)."""
    from nlpforge.cli import main

    monkeypatch.setattr(sys, "argv", ["nlpforge", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


WORDS = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n"]


def write_conll(path: Path, count: int, seed: int) -> None:
    """'z' words are B-PER, a 'y' after a 'z' is I-PER; everything else O."""
    rng = random.Random(seed)
    lines = ["-DOCSTART- -X- O O", ""]
    for _ in range(count):
        tokens = [rng.choice(WORDS) for _ in range(rng.randint(3, 7))]
        tags = ["O"] * len(tokens)
        at = rng.randrange(len(tokens) - 1)
        tokens[at], tags[at] = "z", "B-PER"
        if rng.random() < 0.5:
            tokens[at + 1], tags[at + 1] = "y", "I-PER"
        lines += [f"{t} X X {g}" for t, g in zip(tokens, tags, strict=True)] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")


def write_squad(path: Path, count: int, seed: int, unanswerable_every: int = 0) -> None:
    """The answer is the 'z y' inside a 30-word context: longer than one window at max_length 24.
    ``unanswerable_every`` n > 0: every n-th context has no 'z y' and its question is unanswerable
    (SQuAD 2.0's ``is_impossible``)."""
    rng = random.Random(seed)
    paragraphs = []
    for i in range(count):
        words = [rng.choice(WORDS) for _ in range(30)]
        if unanswerable_every and i % unanswerable_every == 0:
            paragraphs.append({"context": " ".join(words), "qas": [{"id": f"q{i}", "question": "x",
                                                                     "is_impossible": True, "answers": []}]})
            continue
        at = rng.randrange(29)
        words[at], words[at + 1] = "z", "y"
        context = " ".join(words)
        start = len(" ".join(words[:at])) + (1 if at else 0)
        paragraphs.append({"context": context, "qas": [{"id": f"q{i}", "question": "x",
                                                        "answers": [{"text": "z y", "answer_start": start}]}]})
    version = "v2.0" if unanswerable_every else "1.1"
    path.write_text(json.dumps({"version": version, "data": [{"title": "t", "paragraphs": paragraphs}]}))
