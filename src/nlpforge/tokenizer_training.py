"""Train a tokenizer on raw corpora with the ``tokenizers`` library; save it in Hugging Face layout.

    summary = train_tokenizer(["corpus_zh/"], kind="wordpiece", vocab_size=21128, out="tok-zh")
    transformers.AutoTokenizer.from_pretrained("tok-zh")

Kinds:

- ``wordpiece`` (BERT): BertNormalizer with handle_chinese_chars (every CJK character becomes a word
  of its own, so Chinese is split into single characters), BertPreTokenizer, WordPiece with ``##``
  continuations; specials [PAD] [UNK] [CLS] [SEP] [MASK]; ``[CLS] A [SEP]`` / ``[CLS] A [SEP] B [SEP]``.
- ``bpe`` (GPT-2): byte-level BPE (ByteLevel pre-tokenizer and decoder; every byte is in the
  vocabulary, so any text round-trips exactly); specials ``<|endoftext|>`` (bos, eos, unk) and
  ``<pad>``; no tokens are added around a text.
- ``unigram`` (SentencePiece / XLM-R): NFKC, whitespace split + Metaspace ``▁``, Unigram LM;
  specials <pad> <unk> <s> </s> <mask>; ``<s> A </s>`` / ``<s> A </s></s> B </s>``. The vocabulary
  holds every character of the corpus, so ``vocab_size`` must exceed their number; the Unigram
  trainer has no minimum frequency (``min_frequency`` is not used).

The trainer reads **all** text of the given files (``iter_documents(part="all")``): the held-out
tail that the pre-training recipe evaluates on is in the tokenizer's training text too, which only
means the tokenizer has seen its words, as a tokenizer trained on a whole dump would.

The output directory holds ``tokenizer.json`` and ``tokenizer_config.json`` (class
PreTrainedTokenizerFast, which transformers 4 and 5 both load); it is written beside ``out`` and
renamed into place. An existing ``out`` is replaced when it holds nothing but tokenizer files.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from nlpforge.data.corpus import CorpusFile, corpus_files, iter_documents
from nlpforge.errors import ConfigError, InputDataError

KINDS = ("wordpiece", "bpe", "unigram")
SPECIAL_TOKENS = {
    "wordpiece": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
    "bpe": ["<|endoftext|>", "<pad>"],
    "unigram": ["<pad>", "<unk>", "<s>", "</s>", "<mask>"],
}
# The special-token roles transformers reads from tokenizer_config.json.
ROLES = {
    "wordpiece": dict(unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                      mask_token="[MASK]"),
    "bpe": dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>", pad_token="<pad>"),
    "unigram": dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>", cls_token="<s>",
                    sep_token="</s>", mask_token="<mask>"),
}
# Files a tokenizer directory may hold (this writer's and other writers'); an existing --out that holds
# anything else (a model's weights, say) is refused rather than replaced.
TOKENIZER_FILES = frozenset({"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                             "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "sentencepiece.bpe.model",
                             "spiece.model", "tokenizer.model", "chat_template.jinja"})
BYTE_ALPHABET = 256
BATCH_BYTES = 1 << 20  # the trainer reads the corpus in batches of sentences of about 1 MiB


def train_tokenizer(corpus: Sequence[str | Path], kind: str, vocab_size: int, out: str | Path, min_frequency: int = 2,
                    encoding: str | None = None, lowercase: bool = False, *, text_field: str = "text",
                    show_progress: bool = False) -> dict[str, Any]:
    """Train a ``kind`` tokenizer of ``vocab_size`` tokens on the corpus files and save it to ``out``.

    ``corpus``: files, directories or glob patterns (see ``corpus_files``). Returns a summary:
    kind, vocab_size (as trained: below the request when a small corpus has too few merges; for
    wordpiece above it when the corpus has more distinct characters, since every character seen is
    kept), files, sentences, characters, seconds, out. A bad line of a corpus file raises
    ``InputDataError`` naming it, from inside the trainer.
    """
    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}")
    smallest = len(SPECIAL_TOKENS[kind]) + (BYTE_ALPHABET if kind == "bpe" else 1)
    if vocab_size < smallest:
        raise ConfigError(f"--vocab-size {vocab_size}: a {kind} vocabulary needs at least {smallest} tokens"
                          + (" (256 bytes + 2 special tokens)" if kind == "bpe" else ""))
    if min_frequency < 1:
        raise ConfigError(f"--min-frequency {min_frequency}: expected at least 1")
    out = Path(out).expanduser()
    _check_out(out)
    files = corpus_files(corpus, encoding)
    start = time.perf_counter()

    tokenizer, trainer = _build(kind, vocab_size, min_frequency, lowercase, show_progress)
    stats = {"sentences": 0, "characters": 0}
    chars: set[str] = set()
    total_bytes = sum(Path(f.path).stat().st_size for f in files)
    batches = _batches(files, text_field, stats, chars if kind == "unigram" else None)
    try:
        tokenizer.train_from_iterator(batches, trainer, length=max(1, -(-total_bytes // BATCH_BYTES)))
    except Exception as error:  # the Rust trainer raises plain Exceptions
        if stats["sentences"] and "not large enough to contain all chars" in str(error):
            raise ConfigError(f"--vocab-size {vocab_size}: the corpus has {len(chars):,} distinct characters and a "
                              f"unigram vocabulary keeps all of them; pass --vocab-size above "
                              f"{len(chars) + len(SPECIAL_TOKENS[kind])}") from None
        raise
    if stats["sentences"] == 0:
        raise InputDataError(f"{', '.join(str(f.path) for f in files)}: no text to train on "
                             "(every document is empty)")
    _add_post_processor(tokenizer, kind)

    from transformers import PreTrainedTokenizerFast

    # BERT models take segment ids; GPT-2 and XLM-R models take none.
    inputs = ["input_ids", "token_type_ids", "attention_mask"] if kind == "wordpiece" else ["input_ids",
                                                                                            "attention_mask"]
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_input_names=inputs, **ROLES[kind])
    _save_atomically(fast, out)
    return {"kind": kind, "vocab_size": tokenizer.get_vocab_size(), "requested_vocab_size": vocab_size,
            "min_frequency": None if kind == "unigram" else min_frequency, "lowercase": lowercase,
            "files": [str(f.path) for f in files], "encodings": sorted({f.encoding for f in files}),
            "sentences": stats["sentences"], "characters": stats["characters"],
            "seconds": round(time.perf_counter() - start, 2), "out": str(out)}


def _build(kind: str, vocab_size: int, min_frequency: int, lowercase: bool, show_progress: bool) -> tuple[Any, Any]:
    """(tokenizers.Tokenizer, trainer) for ``kind``: the pipeline before training."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    specials = SPECIAL_TOKENS[kind]
    if kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
        # strip_accents=None follows lowercase (uncased BERT strips accents, cased keeps them).
        tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                          strip_accents=None, lowercase=lowercase)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=specials, continuing_subword_prefix="##",
                                            show_progress=show_progress)
    elif kind == "bpe":
        tokenizer = Tokenizer(models.BPE())
        if lowercase:
            tokenizer.normalizer = normalizers.Lowercase()
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=show_progress)
    else:
        tokenizer = Tokenizer(models.Unigram())
        steps = [normalizers.NFKC(), *([normalizers.Lowercase()] if lowercase else [])]
        tokenizer.normalizer = normalizers.Sequence(steps)
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
        tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>",
                                          max_piece_length=16, show_progress=show_progress)
    return tokenizer, trainer


def _add_post_processor(tokenizer: Any, kind: str) -> None:
    from tokenizers import processors

    if kind == "bpe":  # GPT-2: nothing added around a text
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
        return
    if kind == "wordpiece":
        single, pair, specials = "[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1", ("[CLS]", "[SEP]")
    else:  # XLM-R's templates
        single, pair, specials = "<s> $A </s>", "<s> $A </s> </s> $B </s>", ("<s>", "</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(token, tokenizer.token_to_id(token)) for token in specials])


def _batches(files: Sequence[CorpusFile], text_field: str, stats: dict[str, int],
             chars: set[str] | None) -> Iterator[list[str]]:
    """Sentences of every file (all of each), in batches of about ``BATCH_BYTES`` bytes of UTF-8."""
    batch: list[str] = []
    size = 0
    for document in iter_documents(files, part="all", text_field=text_field):
        for sentence in document:
            batch.append(sentence)
            size += len(sentence.encode("utf-8"))
            stats["sentences"] += 1
            stats["characters"] += len(sentence)
            if chars is not None:
                chars.update(sentence)
            if size >= BATCH_BYTES:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; pass a directory for the tokenizer")
    if out.is_dir():
        others = sorted(p.name for p in out.iterdir() if p.name not in TOKENIZER_FILES)
        if others:
            raise ConfigError(f"--out {out}: holds other files than a tokenizer's (e.g. {others[0]}); pass a new or "
                              "empty directory (a tokenizer directory there is replaced)")


def _save_atomically(fast: Any, out: Path) -> None:
    """``save_pretrained`` into a sibling temporary directory, then rename it to ``out`` (an old
    tokenizer directory is moved aside first and removed after)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        fast.save_pretrained(str(tmp))
        config_path = tmp / "tokenizer_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["tokenizer_class"] = "PreTrainedTokenizerFast"  # transformers 5 writes "TokenizersBackend", unknown to 4
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        _check_out(out)  # again: the directory may have changed during training
        if not out.exists():
            os.replace(tmp, out)
            return
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        try:
            os.replace(tmp, out)
        except OSError:
            os.replace(old, out)  # put the old tokenizer back
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
