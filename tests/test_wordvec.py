"""Static word vectors: the streamed corpus, word2vec training and its directory, analogy and
word-pair evaluation (the usual file layouts), the CLI round trip and the one-line errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from nlpforge.errors import ConfigError, InputDataError
from nlpforge.wordvec import (
    META_FILE,
    VECTORS_FILE,
    TokenCache,
    Word2VecArgs,
    WordCorpus,
    detect_language,
    evaluate_analogies,
    evaluate_similarity,
    load_vectors,
    read_word_pairs,
    train_word2vec,
)

# Two topics: the words of one topic share their context words, so they end up close together.
TOPICS = {
    "animals": (["cat", "dog", "horse", "cow", "pig", "sheep"], ["farm", "barn", "feed", "field"]),
    "fruits": (["apple", "banana", "cherry", "grape", "pear", "plum"], ["tree", "sweet", "eat", "juice"]),
}
SIMILAR = [("cat", "dog"), ("horse", "cow"), ("pig", "sheep"), ("apple", "pear"), ("banana", "grape"),
           ("cherry", "plum")]
DISSIMILAR = [("cat", "apple"), ("dog", "pear"), ("horse", "banana"), ("cow", "grape"), ("pig", "plum"),
              ("sheep", "cherry")]


def write_corpus(path: Path, lines: int = 400, seed: int = 0) -> Path:
    rng = random.Random(seed)
    text = []
    for _ in range(lines):
        members, context = TOPICS[rng.choice(sorted(TOPICS))]
        text.append(" ".join(rng.choice(members + context) for _ in range(8)).capitalize())
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return path


def args(corpus: Path | list[Path], out: Path, **overrides: object) -> Word2VecArgs:
    settings = dict(size=16, window=3, min_count=2, epochs=30, workers=1, seed=3)  # 30: a 3,200-token corpus
    return Word2VecArgs(corpus=corpus if isinstance(corpus, list) else [corpus], out=str(out),
                        **{**settings, **overrides})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("wordvec")
    corpus = write_corpus(root / "corpus.txt")
    summary = train_word2vec(args(corpus, root / "vectors", arch="skipgram"))
    return root / "vectors", summary


def test_trained_directory_loads_with_gensim(trained: tuple[Path, dict]) -> None:
    from gensim.models import KeyedVectors

    out, summary = trained
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == []  # no temp dir left
    vectors = KeyedVectors.load_word2vec_format(str(out / VECTORS_FILE), binary=True)
    meta = json.loads((out / META_FILE).read_text(encoding="utf-8"))
    assert len(vectors) == meta["vocab_size"] == summary["vocab_size"] == 20  # 12 topic words + 8 context words
    assert vectors.vector_size == 16 and "cat" in vectors and "Cat" not in vectors  # lower-cased
    assert meta["corpus_lines"] == 400 and meta["corpus_tokens"] == 3200
    assert meta["settings"]["arch"] == "skipgram" and meta["settings"]["language"] == "en"
    assert meta["training_seconds"] >= 0 and meta["gensim"]
    similar = np.mean([vectors.similarity(a, b) for a, b in SIMILAR])
    dissimilar = np.mean([vectors.similarity(a, b) for a, b in DISSIMILAR])
    assert similar > dissimilar + 0.3


def test_same_seed_one_worker_gives_the_same_vectors(trained: tuple[Path, dict], tmp_path: Path) -> None:
    out, summary = trained
    again = train_word2vec(args([Path(p) for p in summary["settings"]["corpus"]], tmp_path / "again",
                                arch="skipgram"))
    assert again["vocab_size"] == summary["vocab_size"]
    assert np.array_equal(load_vectors(out).vectors, load_vectors(tmp_path / "again").vectors)


@pytest.mark.parametrize(("arch", "loss"), [("cbow", "negative"), ("cbow", "hierarchical")])
def test_other_settings_train(tmp_path: Path, arch: str, loss: str) -> None:
    corpus = write_corpus(tmp_path / "corpus.txt", lines=200)
    lines: list[str] = []
    summary = train_word2vec(args(corpus, tmp_path / "out", arch=arch, loss=loss, epochs=3), progress=lines.append)
    assert (summary["settings"]["arch"], summary["settings"]["loss"]) == (arch, loss)
    assert lines[0].startswith("vocabulary: 20 words") and lines[-1].startswith("epoch 3/3 done")
    assert len(load_vectors(tmp_path / "out")) == 20


def test_retraining_replaces_a_word_vector_directory(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus.txt", lines=100)
    train_word2vec(args(corpus, tmp_path / "out", epochs=1))
    summary = train_word2vec(args(corpus, tmp_path / "out", epochs=1, size=8))
    assert load_vectors(tmp_path / "out").vector_size == 8 == summary["vector_size"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "out"]


def test_corpus_streams_lines_skips_doc_tags_and_restarts(tmp_path: Path) -> None:
    path = tmp_path / "wiki.txt"
    path.write_text('\ufeff<doc id="1" url="x" title="T">\nThe Cat sat\n\n   \n</doc>\nA dog\n', encoding="utf-8")
    corpus = WordCorpus([path, path], "en", lowercase=True)
    assert list(corpus) == list(corpus) == [["the", "cat", "sat"], ["a", "dog"]] * 2
    assert next(iter(WordCorpus([path], "en", lowercase=False))) == ["The", "Cat", "sat"]
    cache = TokenCache(corpus, tmp_path / "tokens")
    assert list(cache) == list(cache) == list(corpus) and cache.complete
    assert (tmp_path / "tokens").read_text(encoding="utf-8").splitlines()[0] == "the cat sat"


def test_chinese_is_segmented_with_jieba_and_detected(tmp_path: Path) -> None:
    zh = tmp_path / "zh.txt"
    zh.write_text('<doc id="1">\n数学是研究数量和结构的学科。\n我们 喜欢 数学\n</doc>\n', encoding="utf-8")
    en = write_corpus(tmp_path / "en.txt", lines=10)
    assert detect_language([zh]) == "zh" and detect_language([en]) == "en"
    tokens = list(WordCorpus([zh], "zh"))
    assert tokens[0][:2] == ["数学", "是"] and "学科" in tokens[0]
    assert tokens[1] == ["我们", "喜欢", "数学"]  # spaces are not tokens


def write_analogies(path: Path) -> Path:
    path.write_text(": animals-fruits\ncat dog apple pear\ncow pig banana grape\n"
                    ": unknown\ncat dog apple zebra\nbad line\n", encoding="utf-8")
    return path


def test_analogy_evaluation(trained: tuple[Path, dict], tmp_path: Path) -> None:
    result = evaluate_analogies(load_vectors(trained[0]), write_analogies(tmp_path / "questions.txt"))
    assert (result["questions"], result["attempted"]) == (3, 2)
    assert result["oov_ratio"] == round(1 / 3, 4)
    assert 0 <= result["correct"] <= 2 and result["accuracy"] == 50.0 * result["correct"]
    assert result["sections"]["animals-fruits"]["attempted"] == 2
    assert result["sections"]["unknown"] == {"accuracy": None, "attempted": 0}


def test_similarity_spearman_and_oov(trained: tuple[Path, dict], tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    rows = [(a, b, 9.0 - i * 0.1) for i, (a, b) in enumerate(SIMILAR)] + \
        [(a, b, 1.0 + i * 0.1) for i, (a, b) in enumerate(DISSIMILAR)] + [("cat", "zebra", 5.0)]
    path.write_text("# A comment\n# Word 1\tWord 2\tHuman (mean)\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in rows),
                    encoding="utf-8")
    result = evaluate_similarity(load_vectors(trained[0]), path)
    assert (result["pairs"], result["evaluated"]) == (13, 12)
    assert result["oov_ratio"] == round(1 / 13, 4)
    assert result["spearman"] > 0.6 and -1 <= result["pearson"] <= 1
    unknown = tmp_path / "unknown.tsv"
    unknown.write_text("zebra\tlion\t5\n", encoding="utf-8")
    assert evaluate_similarity(load_vectors(trained[0]), unknown) == {
        "file": str(unknown), "pairs": 1, "evaluated": 0, "spearman": None, "pearson": None, "oov_ratio": 1.0}


def test_word_pair_files_in_their_usual_layouts(tmp_path: Path) -> None:
    layouts = {
        # gensim's test data (wordsim353.tsv, simlex999.txt): '#' comments, three tab-separated columns
        "gensim.tsv": "# The WordSimilarity-353 Test Collection\n# Word 1\tWord 2\tHuman (mean)\nlove\tsex\t6.77\n"
                      "tiger\tcat\t7.35\n",
        # the original SimLex-999.txt: a header, the score in the SimLex999 (fourth) column
        "SimLex-999.txt": "word1\tword2\tPOS\tSimLex999\tconc(w1)\tconc(w2)\tconcQ\tAssoc(USF)\tSimAssoc333\t"
                          "SD(SimLex)\nlove\tsex\tN\t6.77\t5.1\t5.5\t4\t0.3\t1\t0.4\n"
                          "tiger\tcat\tN\t7.35\t4.8\t4.9\t4\t2.0\t1\t1.1\n",
        # the original WordSim-353 combined.csv
        "combined.csv": "Word 1,Word 2,Human (mean)\nlove,sex,6.77\ntiger,cat,7.35\n",
        # MEN / RG-65 style: space-separated, no header
        "men.txt": "love sex 6.77\ntiger cat 7.35\n",
    }
    for name, text in layouts.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert read_word_pairs(tmp_path / name) == [("love", "sex", 6.77), ("tiger", "cat", 7.35)], name


def test_real_evaluation_files_are_read(tmp_path: Path) -> None:
    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "word_vectors_eval"
    if not data.is_dir():
        pytest.skip(f"{data} is absent")
    assert len(read_word_pairs(data / "wordsim353.tsv")) == 353
    assert len(read_word_pairs(data / "simlex999.txt")) == 999


def test_cli_round_trip(tmp_path: Path, monkeypatch, capsys) -> None:
    corpus = write_corpus(tmp_path / "corpus.txt", lines=200)
    more = write_corpus(tmp_path / "more.txt", lines=100, seed=1)
    out = tmp_path / "vectors"
    code, stdout, stderr = run_cli(monkeypatch, capsys, "word2vec", "--corpus", corpus, "--corpus", more,
                                   "--arch", "skipgram", "--loss", "negative", "--out", out, "--size", 12,
                                   "--epochs", 2, "--min-count", 2, "--workers", 1, "--seed", 7)
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["corpus_lines"] == 300 and summary["vocab_size"] == 20 and summary["vector_size"] == 12
    assert summary["settings"]["seed"] == 7 and summary["settings"]["window"] == 5  # given / default
    assert "epoch 2/2 done" in stderr
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("cat\tdog\t9\ncat\tapple\t1\napple\tpear\t8\nzebra\tlion\t5\n", encoding="utf-8")
    code, stdout, stderr = run_cli(monkeypatch, capsys, "word2vec-eval", out, "--analogies",
                                   write_analogies(tmp_path / "q.txt"), "--similarity", pairs, "--similarity", pairs)
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["vocab_size"] == 20 and result["analogies"]["questions"] == 3
    assert [r["oov_ratio"] for r in result["similarity"]] == [0.25, 0.25]


def test_bad_inputs_are_one_line_errors(trained: tuple[Path, dict], tmp_path: Path, monkeypatch, capsys) -> None:
    good = write_corpus(tmp_path / "good.txt", lines=20)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.txt"
    blank.write_text('\n  \n<doc id="1">\n</doc>\n', encoding="utf-8")
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"\x00\x01\x02PK\x03\x04" * 100)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("a dog\nun caf\u00e9 cr\u00e8me\n".encode("latin-1"))
    not_vectors = tmp_path / "not_vectors"
    not_vectors.mkdir()
    (not_vectors / "config.json").write_text("{}", encoding="utf-8")
    cases = [
        (["word2vec", "--corpus", tmp_path / "missing.txt", "--out", tmp_path / "o"], "missing.txt: corpus file not"),
        (["word2vec", "--corpus", empty, "--out", tmp_path / "o"], "empty.txt: the corpus file is empty"),
        (["word2vec", "--corpus", blank, "--out", tmp_path / "o"], "blank.txt: the corpus holds no words"),
        (["word2vec", "--corpus", binary, "--out", tmp_path / "o"], "model.bin: is a binary file"),
        (["word2vec", "--corpus", latin, "--out", tmp_path / "o"], "latin1.txt:2: cannot decode as utf-8"),
        (["word2vec", "--corpus", good, "--out", tmp_path / "o", "--arch", "glove"], "--arch 'glove': choose one"),
        (["word2vec", "--corpus", good, "--out", tmp_path / "o", "--loss", "softmax"], "--loss 'softmax': choose"),
        (["word2vec", "--corpus", good, "--out", tmp_path / "o", "--min-count", 1000], "no word occurs --min-count"),
        (["word2vec", "--corpus", good, "--out", not_vectors], "not_vectors: exists and is not a word-vector"),
        (["word2vec-eval", not_vectors, "--similarity", good], "not_vectors: is not a word-vector directory"),
        (["word2vec-eval", tmp_path / "nowhere", "--similarity", good], "nowhere: no such word-vector directory"),
        (["word2vec-eval", trained[0]], "nothing to evaluate"),
        (["word2vec-eval", trained[0], "--analogies", good], "good.txt: no analogy questions"),
        (["word2vec-eval", trained[0], "--similarity", good], "good.txt: no numeric score column"),
    ]
    for arguments, expected in cases:
        code, _, stderr = run_cli(monkeypatch, capsys, *arguments)
        assert code == 2 and expected in stderr and len(stderr.strip().splitlines()) == 1, (arguments, stderr)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp dir left
    assert not (tmp_path / "o").exists()
    with pytest.raises(ConfigError, match="--size must be >= 1"):
        Word2VecArgs(corpus=[str(good)], out="o", size=0)
    with pytest.raises(InputDataError, match=r"latin1\.txt:2"):
        list(WordCorpus([latin], "en"))
    summary = train_word2vec(args(latin, tmp_path / "latin_out", encoding="latin-1", min_count=1))
    assert summary["vocab_size"] == 5 and "café" in load_vectors(tmp_path / "latin_out")
