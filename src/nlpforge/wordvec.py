"""Static word vectors: word2vec (gensim) trained on plain-text corpora, saved in the word2vec
binary format, and evaluated on analogies and word-pair similarity.

    args = Word2VecArgs(corpus=["valid.txt"], out="vectors-en", arch="skipgram")
    summary = train_word2vec(args)                       # -> vectors-en/{vectors.bin, wordvec.json}
    evaluate_vectors("vectors-en", analogies="questions-words.txt", similarity=["wordsim353.tsv"])

The corpus is streamed (``WordCorpus`` reads the files anew on every pass, one token list per
line; WikiExtractor ``<doc ...>``/``</doc>`` lines are skipped). Chinese is segmented with jieba,
English split on whitespace. Segmentation runs once: the first pass writes the tokens to a file in
the output's temporary directory and the later passes (gensim makes epochs + 1) read that file.

The output directory holds ``vectors.bin`` (``KeyedVectors.save_word2vec_format(binary=True)``:
the original word2vec tool's binary format, which gensim and most toolkits load) and
``wordvec.json`` (settings, vocabulary size, corpus size, seconds). It is written beside its final
place and renamed in.

No heavy imports at module level: the CLI builds its flags from ``Word2VecArgs`` without gensim.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlpforge.errors import ConfigError, InputDataError
from nlpforge.settings import setting

ARCHS = ("cbow", "skipgram")
LOSSES = ("negative", "hierarchical")
LANGUAGES = ("auto", "zh", "en")
META_FILE = "wordvec.json"
VECTORS_FILE = "vectors.bin"
# A character of the CJK unified ideographs (basic, extension A, compatibility, extension B).
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df]")
_DOC_TAG = re.compile(r"^\s*(<doc(\s[^>]*)?>|</doc>)\s*$")  # WikiExtractor's article delimiters
_SNIFF_BYTES = 8192
_DETECT_LINES = 200  # per file, for --language auto
_CJK_SHARE = 0.3  # of the non-space characters: above it the corpus is Chinese


def _check_positive(config: object, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(config, name)}")


@dataclass
class Word2VecArgs:
    """Everything ``nlpforge word2vec`` reads."""

    corpus: list[str] = setting(help="Plain-text corpus file(s), one sentence or paragraph per line.")
    out: str = setting(help="Output directory: vectors.bin (word2vec binary format) and wordvec.json.")
    arch: str = setting("cbow", "cbow (predict a word from its window) or skipgram (the window from the word).",
                        choices=ARCHS)
    loss: str = setting("negative", "negative sampling, or hierarchical softmax (gensim hs=1, negative=0).",
                        choices=LOSSES)
    size: int = setting(100, "Vector dimensions.")
    window: int = setting(5, "Words on each side of the centre word.")
    min_count: int = setting(5, "Ignore words seen fewer times than this.")
    epochs: int = setting(5, "Passes over the corpus.")
    negative: int = setting(5, "Noise words per positive example (--loss negative).")
    workers: int = setting(2, "Training threads (1 with a fixed --seed gives the same vectors every run).")
    seed: int = setting(1, "Random seed (vector initialisation, sampling).")
    language: str = setting("auto", "zh: segment with jieba; en: split on whitespace; auto: zh when CJK "
                                    "characters dominate the first lines.", choices=LANGUAGES)
    lowercase: bool = setting(True, "Lower-case the tokens.")
    encoding: str = setting("utf-8", "Encoding of the corpus files, e.g. gb18030.")

    def __post_init__(self) -> None:
        if isinstance(self.corpus, (str, os.PathLike)):
            self.corpus = [self.corpus]
        self.corpus = [str(path) for path in self.corpus]
        if not self.corpus:
            raise ConfigError("--corpus: give at least one corpus file")
        if not self.out:
            raise ConfigError("--out: give the output directory")
        for name, allowed in (("arch", ARCHS), ("loss", LOSSES), ("language", LANGUAGES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"--{name} {getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        _check_positive(self, ("size", "window", "min_count", "epochs", "negative", "workers"))
        try:
            "".encode(self.encoding)
        except LookupError:
            raise ConfigError(f"--encoding {self.encoding!r}: unknown encoding") from None


# ----------------------------------------------------------------------------------------------
# The corpus


def check_corpus_file(path: str | os.PathLike[str], encoding: str = "utf-8") -> Path:
    """A corpus file must exist, hold bytes and look like text (no NUL bytes in its first 8 KiB)."""
    file = Path(path)
    if not file.exists():
        raise InputDataError(f"{file}: corpus file not found (given with --corpus)")
    if not file.is_file():
        raise InputDataError(f"{file}: is a directory, not a corpus file (given with --corpus)")
    if file.stat().st_size == 0:
        raise InputDataError(f"{file}: the corpus file is empty")
    with open(file, "rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if b"\x00" in head and not encoding.lower().replace("-", "").startswith(("utf16", "utf32")):
        raise InputDataError(f"{file}: is a binary file (NUL bytes), not plain text; word2vec reads text files, "
                             "one sentence or paragraph per line (UTF-16 text: convert it to UTF-8)")
    return file


def _decoded_lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line, decoded strictly: a bad byte names the file and line."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as error:
                raise InputDataError(
                    f"{path}:{number}: cannot decode as {encoding} (byte {error.start} of the line); pass the "
                    "file's encoding, e.g. --encoding gb18030 for GB-encoded Chinese text") from None
            if number == 1:
                line = line.removeprefix("\ufeff")
            yield number, line


def _text_lines(path: Path, encoding: str) -> Iterator[str]:
    """The lines that hold text: blank lines and WikiExtractor <doc>/</doc> lines are skipped."""
    for _, line in _decoded_lines(path, encoding):
        if line.strip() and not _DOC_TAG.match(line):
            yield line


def detect_language(paths: Sequence[str | os.PathLike[str]], encoding: str = "utf-8") -> str:
    """'zh' when CJK characters make up more than 30% of the non-space characters of the first lines
    of the files (200 per file), else 'en'."""
    cjk = total = 0
    for path in paths:
        for count, line in enumerate(_text_lines(Path(path), encoding)):
            if count >= _DETECT_LINES:
                break
            cjk += len(_CJK.findall(line))
            total += sum(1 for char in line if not char.isspace())
    return "zh" if total and cjk / total > _CJK_SHARE else "en"


class WordCorpus:
    """The token lists of a corpus, one per text line, read from the files anew on each iteration.

    Restartable (gensim iterates it once for the vocabulary and once per epoch) and never held in
    memory. ``language`` 'zh' segments with jieba (whitespace tokens dropped), 'en' splits on
    whitespace; ``lowercase`` lower-cases the tokens. Lines without tokens are skipped.
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]], language: str = "en", lowercase: bool = True,
                 encoding: str = "utf-8") -> None:
        if language not in ("zh", "en"):
            raise ConfigError(f"language {language!r}: choose zh or en (detect_language picks one)")
        self.paths = [Path(path) for path in paths]
        self.language, self.lowercase, self.encoding = language, lowercase, encoding
        self._jieba: Any = None
        if language == "zh":
            import jieba

            jieba.setLogLevel(logging.WARNING)  # not its "Building prefix dict ..." lines on stderr
            self._jieba = jieba

    def tokenize(self, line: str) -> list[str]:
        if self._jieba is not None:
            tokens = [token for token in self._jieba.lcut(line.strip()) if token.strip()]
        else:
            tokens = line.split()
        return [token.lower() for token in tokens] if self.lowercase else tokens

    def __iter__(self) -> Iterator[list[str]]:
        for path in self.paths:
            for line in _text_lines(path, self.encoding):
                tokens = self.tokenize(line)
                if tokens:
                    yield tokens


class TokenCache:
    """A corpus tokenized once: the first complete pass writes each token list as one line of
    ``path`` (space-separated); the later passes read that file back instead of segmenting again.
    A pass that stops early leaves no cache, and the next pass tokenizes anew."""

    def __init__(self, corpus: Iterable[list[str]], path: Path) -> None:
        self.corpus, self.path, self.complete = corpus, Path(path), False

    def __iter__(self) -> Iterator[list[str]]:
        if self.complete:
            with open(self.path, encoding="utf-8", newline="\n") as handle:
                for line in handle:
                    yield line.removesuffix("\n").split(" ")
            return
        partial = self.path.with_name(self.path.name + ".partial")
        with open(partial, "w", encoding="utf-8", newline="\n") as handle:
            for tokens in self.corpus:
                handle.write(" ".join(tokens) + "\n")
                yield tokens
        os.replace(partial, self.path)
        self.complete = True


# ----------------------------------------------------------------------------------------------
# Training


def train_word2vec(args: Word2VecArgs, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train word2vec on ``args.corpus`` and write ``args.out``; returns the summary in wordvec.json.

    ``progress`` receives one line per epoch (and one when the vocabulary is built).
    """
    files = [check_corpus_file(path, args.encoding) for path in args.corpus]
    out = Path(args.out)
    _check_out_dir(out)
    language = detect_language(files, args.encoding) if args.language == "auto" else args.language
    import gensim
    from gensim.models import Word2Vec
    from gensim.models.callbacks import CallbackAny2Vec

    class EpochLines(CallbackAny2Vec):  # type: ignore[misc]
        def __init__(self) -> None:
            self.epoch, self.start = 0, time.perf_counter()

        def on_epoch_end(self, model: Any) -> None:
            self.epoch += 1
            if progress is not None:
                progress(f"epoch {self.epoch}/{args.epochs} done ({time.perf_counter() - self.start:.1f} s)")

    def write(tmp: Path) -> dict[str, Any]:
        corpus = TokenCache(WordCorpus(files, language, args.lowercase, args.encoding), tmp / "tokens.cache")
        model = Word2Vec(vector_size=args.size, window=args.window, min_count=args.min_count,
                         sg=int(args.arch == "skipgram"), hs=int(args.loss == "hierarchical"),
                         negative=args.negative if args.loss == "negative" else 0, workers=args.workers,
                         seed=args.seed, epochs=args.epochs)
        start = time.perf_counter()
        with _quiet_gensim():
            model.build_vocab(corpus)
        vocab_seconds = time.perf_counter() - start
        where = ", ".join(str(file) for file in files)
        if model.corpus_total_words == 0:
            raise InputDataError(f"{where}: the corpus holds no words (only blank lines or <doc> tags)")
        if len(model.wv) == 0:
            raise ConfigError(f"no word occurs --min-count {args.min_count} times in {where} "
                              f"({model.corpus_total_words} tokens); lower --min-count")
        if progress is not None:
            progress(f"vocabulary: {len(model.wv)} words (min count {args.min_count}) from "
                     f"{model.corpus_total_words} tokens in {model.corpus_count} lines ({language}, "
                     f"{vocab_seconds:.1f} s)")
        start = time.perf_counter()
        with _quiet_gensim():
            model.train(corpus, total_examples=model.corpus_count, epochs=model.epochs, callbacks=[EpochLines()])
        train_seconds = time.perf_counter() - start
        (tmp / "tokens.cache").unlink(missing_ok=True)
        model.wv.save_word2vec_format(str(tmp / VECTORS_FILE), binary=True)
        settings = {k: v for k, v in dataclasses.asdict(args).items() if k != "out"}
        summary = {
            "stage": "word2vec", "vectors": VECTORS_FILE, "format": "word2vec-binary",
            "settings": {**settings, "language": language, "language_given": args.language},
            "vocab_size": len(model.wv), "vector_size": args.size, "corpus_lines": model.corpus_count,
            "corpus_tokens": model.corpus_total_words, "vocab_seconds": round(vocab_seconds, 2),
            "training_seconds": round(train_seconds, 2), "gensim": gensim.__version__,
        }
        (tmp / META_FILE).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return summary

    summary = _write_atomically(out, write)
    return {**summary, "out": str(out)}


@contextlib.contextmanager
def _quiet_gensim() -> Iterator[None]:
    """gensim warns at WARNING level about small corpora (few jobs per worker) through Python's
    last-resort handler; the summary reports what matters, so only its errors get through."""
    logger = logging.getLogger("gensim")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; pass a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / META_FILE).is_file():
        raise ConfigError(f"--out {out}: exists and is not a word-vector directory (no {META_FILE}); "
                          "pass a new directory")


def _write_atomically(out: Path, write: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """``write`` fills a temporary directory beside ``out``, which then takes its place: a new ``out``
    is one rename; an existing word-vector directory gets each file by a rename, wordvec.json last."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        result = write(tmp)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the vectors are shared like any output
        try:
            os.rename(tmp, out)  # out absent (or an empty directory): atomic
        except OSError:
            for name in sorted(os.listdir(tmp), key=lambda name: name == META_FILE):
                os.chmod(tmp / name, 0o666 & ~_umask())
                os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------------------------
# Loading and evaluation


def load_vectors(directory: str | os.PathLike[str]) -> Any:
    """The gensim ``KeyedVectors`` of a directory written by ``train_word2vec``."""
    path = Path(directory)
    if not path.exists():
        raise InputDataError(f"{path}: no such word-vector directory")
    if not path.is_dir() or not (path / META_FILE).is_file():
        raise ConfigError(f"{path}: is not a word-vector directory (no {META_FILE}); write one with "
                          "`nlpforge word2vec --out DIR`")
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        vectors = path / meta["vectors"]
        binary = meta.get("format", "word2vec-binary") == "word2vec-binary"
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{path / META_FILE}: not a valid {META_FILE} (no 'vectors' entry)") from None
    if not vectors.is_file():
        raise ConfigError(f"{path}: {meta['vectors']} is missing; the directory is incomplete, train it again")
    from gensim.models import KeyedVectors

    try:
        return KeyedVectors.load_word2vec_format(str(vectors), binary=binary)
    except (ValueError, EOFError, UnicodeDecodeError) as error:
        raise ConfigError(f"{vectors}: not a readable word2vec file ({error})") from None


def read_analogies(path: str | os.PathLike[str]) -> int:
    """Check a file in the Google analogy format (``: section`` lines, then ``a b c d`` lines) and
    return its number of questions."""
    from nlpforge.data.text import read_text

    questions, section = 0, False
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if line.startswith(": "):
            section = True
        elif len(line.split()) == 4:
            if not section:
                raise InputDataError(f"{path}:{number}: a question before any ': section' line; expected the "
                                     "Google analogy format (questions-words.txt)")
            questions += 1
    if not questions:
        raise InputDataError(f"{path}: no analogy questions (lines 'a b c d' after ': section' lines); expected "
                             "the Google analogy format (questions-words.txt)")
    return questions


def read_word_pairs(path: str | os.PathLike[str]) -> list[tuple[str, str, float]]:
    """(word, word, human score) of a word-similarity file.

    Reads the usual layouts: gensim's ``wordsim353.tsv``/``simlex999.txt`` (``#`` comment lines,
    then ``word1<TAB>word2<TAB>score``), the original WordSim-353 ``combined.tab``/``.csv`` (a header
    ``Word 1, Word 2, Human (mean)``), the original ``SimLex-999.txt`` (a header ``word1 word2 POS
    SimLex999 conc(w1) ...``: the score is the SimLex999 column) and space-separated ``w1 w2 score``
    files (MEN, RG-65). Without a header naming it, the score is the first numeric column after the
    two words.
    """
    from nlpforge.data.text import read_text

    rows: list[tuple[int, list[str]]] = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if "\t" in line:
            fields = [field.strip() for field in line.split("\t")]
        elif "," in line and len(line.split(",")) >= 3:
            fields = [field.strip() for field in line.split(",")]
        else:
            fields = line.split()
        rows.append((number, fields))
    if not rows:
        raise InputDataError(f"{path}: no word pairs; expected lines 'word1<TAB>word2<TAB>score'")
    header: list[str] | None = None
    if len(rows[0][1]) >= 3 and not any(_is_number(field) for field in rows[0][1][2:]):
        header = [field.lower() for field in rows.pop(0)[1]]
    column = None
    if header is not None:
        named = [i for i, name in enumerate(header) if i >= 2 and (
            name.replace("-", "") in ("simlex999", "score", "similarity", "sim", "relatedness")
            or name.startswith("human"))]
        column = named[0] if named else None
    if column is None and rows:
        width = min(len(fields) for _, fields in rows)
        numeric = [i for i in range(2, width) if all(_is_number(fields[i]) for _, fields in rows)]
        column = numeric[0] if numeric else None
    if column is None:
        raise InputDataError(f"{path}: no numeric score column after the two words; expected lines "
                             "'word1<TAB>word2<TAB>score'")
    pairs = []
    for number, fields in rows:
        if len(fields) <= column or not _is_number(fields[column]):
            raise InputDataError(f"{path}:{number}: expected two words and a score in column {column + 1}")
        pairs.append((fields[0], fields[1], float(fields[column])))
    return pairs


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def evaluate_analogies(vectors: Any, path: str | os.PathLike[str], restrict_vocab: int = 300_000) -> dict[str, Any]:
    """Analogy accuracy (3CosAdd, gensim ``evaluate_word_analogies``, case-insensitive).

    ``accuracy`` is in percent over the questions whose four words are among the ``restrict_vocab``
    most frequent; ``oov_ratio`` is the fraction of questions skipped for an unknown word.
    """
    questions = read_analogies(path)
    with _quiet_gensim():
        score, sections = vectors.evaluate_word_analogies(str(path), restrict_vocab=restrict_vocab,
                                                          case_insensitive=True)
    *parts, total = sections
    attempted = len(total["correct"]) + len(total["incorrect"])
    return {
        "file": str(path), "accuracy": round(100 * score, 2) if attempted else None,
        "correct": len(total["correct"]), "attempted": attempted, "questions": questions,
        "oov_ratio": round(1 - attempted / questions, 4),
        "sections": {part["section"]: {
            "accuracy": round(100 * len(part["correct"]) / (len(part["correct"]) + len(part["incorrect"])), 2)
            if part["correct"] or part["incorrect"] else None,
            "attempted": len(part["correct"]) + len(part["incorrect"])} for part in parts},
    }


def evaluate_similarity(vectors: Any, path: str | os.PathLike[str], restrict_vocab: int = 300_000
                        ) -> dict[str, Any]:
    """Spearman (and Pearson) correlation of cosine similarity with the human scores of a word-pair
    file (gensim ``evaluate_word_pairs`` on the pairs ``read_word_pairs`` reads, case-insensitive).

    ``oov_ratio`` is the fraction of pairs skipped for an unknown word; with every pair unknown the
    correlations are None.
    """
    pairs = read_word_pairs(path)
    with tempfile.TemporaryDirectory() as tmp:
        normalized = Path(tmp) / "pairs.tsv"
        normalized.write_text("".join(f"{a}\t{b}\t{score}\n" for a, b, score in pairs), encoding="utf-8")
        try:
            with _quiet_gensim():
                pearson, spearman, oov_percent = vectors.evaluate_word_pairs(
                    str(normalized), delimiter="\t", restrict_vocab=restrict_vocab, case_insensitive=True)
        except ValueError:  # gensim: no pair with both words known
            return {"file": str(path), "pairs": len(pairs), "evaluated": 0, "spearman": None, "pearson": None,
                    "oov_ratio": 1.0}
    oov_ratio = oov_percent / 100
    return {"file": str(path), "pairs": len(pairs), "evaluated": round(len(pairs) * (1 - oov_ratio)),
            "spearman": _rounded(spearman.statistic), "pearson": _rounded(pearson.statistic),
            "oov_ratio": round(oov_ratio, 4)}


def _rounded(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)


def evaluate_vectors(directory: str | os.PathLike[str], analogies: str | os.PathLike[str] | None = None,
                     similarity: Sequence[str | os.PathLike[str]] = (), restrict_vocab: int = 300_000
                     ) -> dict[str, Any]:
    """Analogy accuracy and per-file similarity Spearman of a word-vector directory."""
    from nlpforge.locate import require_file

    if analogies is None and not similarity:
        raise ConfigError("nothing to evaluate: give --analogies FILE and/or --similarity FILE")
    if analogies is not None:
        require_file(analogies, "--analogies")
    for path in similarity:
        require_file(path, "--similarity")
    vectors = load_vectors(directory)
    result: dict[str, Any] = {"vectors": str(directory), "vocab_size": len(vectors),
                              "vector_size": vectors.vector_size}
    if analogies is not None:
        result["analogies"] = evaluate_analogies(vectors, analogies, restrict_vocab)
    if similarity:
        result["similarity"] = [evaluate_similarity(vectors, path, restrict_vocab) for path in similarity]
    return result
