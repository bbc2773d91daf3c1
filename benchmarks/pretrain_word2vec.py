"""Static word vectors (nlpforge word2vec, gensim) on the corpora of ../shared/data: training time,
vocabulary, and for English the analogy accuracy and word-similarity Spearman.

    python benchmarks/pretrain_word2vec.py   ->  benchmarks/results/pretrain_word2vec.json

English: WikiText-2 valid.txt (the data README's training split; 214k tokens), evaluated on the
Google analogies (questions-words.txt), WordSim-353 and SimLex-999. Chinese: all three files of
corpus_zh (segmented with jieba; word2vec needs no held-out text) and no Chinese evaluation set
here, so the record holds the nearest neighbours of a few probe words instead. Runs: cbow and
skipgram with negative sampling at the command's defaults (size 100, window 5, min count 5,
5 epochs, 2 workers), one skipgram with hierarchical softmax, and the English runs again at 20
epochs (a 214k-token corpus is far from converged after 5). A random-vector baseline over the same
English vocabulary shows where "no signal" lies, and the two English 5-epoch runs are repeated with
seeds 2 and 3 (``seed_spread``): with 2 workers a run is not repeatable, and on a corpus this small
the differences between settings are of the size of that noise. The vectors go to
benchmarks/work/word2vec/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
EVAL = DATA / "word_vectors_eval"
CORPORA = {
    "en": [DATA / "corpus_en" / "valid.txt"],
    "zh": [DATA / "corpus_zh" / name for name in ("xiyouji.txt", "sanguo.txt", "zhwiki_00.txt")],
}
RUNS = [  # (name, language, settings beyond the defaults)
    ("en-cbow-negative", "en", dict(arch="cbow", loss="negative")),
    ("en-skipgram-negative", "en", dict(arch="skipgram", loss="negative")),
    ("en-skipgram-hierarchical", "en", dict(arch="skipgram", loss="hierarchical")),
    ("en-cbow-negative-20ep", "en", dict(arch="cbow", loss="negative", epochs=20)),
    ("en-skipgram-negative-20ep", "en", dict(arch="skipgram", loss="negative", epochs=20)),
    ("zh-cbow-negative", "zh", dict(arch="cbow", loss="negative")),
    ("zh-skipgram-negative", "zh", dict(arch="skipgram", loss="negative")),
    ("zh-skipgram-hierarchical", "zh", dict(arch="skipgram", loss="hierarchical")),
]
SPREAD_RUNS, SPREAD_SEEDS = ("en-cbow-negative", "en-skipgram-negative"), (2, 3)  # run-to-run noise
SPREAD_KEYS = ("analogy_accuracy", "wordsim353_spearman", "simlex999_spearman")
PROBES = {"en": ["king", "city", "war", "music", "river", "january"],
          "zh": ["孙悟空", "曹操", "皇帝", "数学", "城市", "音乐"]}


def neighbours(vectors, words: list[str], topn: int = 6) -> dict[str, list[str]]:
    return {word: [w for w, _ in vectors.most_similar(word, topn=topn)] for word in words if word in vectors}


def english_scores(vectors) -> dict:
    from nlpforge.wordvec import evaluate_analogies, evaluate_similarity

    analogies = evaluate_analogies(vectors, EVAL / "questions-words.txt")
    similarity = {name: evaluate_similarity(vectors, EVAL / file)
                  for name, file in (("wordsim353", "wordsim353.tsv"), ("simlex999", "simlex999.txt"))}
    return {"analogy_accuracy": analogies["accuracy"], "analogy_attempted": analogies["attempted"],
            "analogy_questions": analogies["questions"], "analogy_oov_ratio": analogies["oov_ratio"],
            "analogy_semantic_syntactic": _semantic_syntactic(analogies["sections"]),
            **{f"{name}_{key}": result[key] for name, result in similarity.items()
               for key in ("spearman", "evaluated", "oov_ratio")}}


def _semantic_syntactic(sections: dict) -> dict:
    """Accuracy over the semantic sections (the first five) and the syntactic ones ('gram*')."""
    totals = {"semantic": [0.0, 0], "syntactic": [0.0, 0]}
    for name, part in sections.items():
        kind = "syntactic" if name.startswith("gram") else "semantic"
        if part["attempted"]:
            totals[kind][0] += part["accuracy"] * part["attempted"] / 100
            totals[kind][1] += part["attempted"]
    return {kind: {"accuracy": round(100 * correct / attempted, 2) if attempted else None, "attempted": attempted}
            for kind, (correct, attempted) in totals.items()}


def random_baseline(vectors, seed: int = 0) -> dict:
    """The same vocabulary with random Gaussian vectors: the scores of no signal at all."""
    import numpy as np
    from gensim.models import KeyedVectors

    rng = np.random.default_rng(seed)
    random = KeyedVectors(vectors.vector_size)
    random.add_vectors(vectors.index_to_key, rng.standard_normal(vectors.vectors.shape).astype(np.float32))
    return english_scores(random)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="", help="Comma-separated run names (default: all).")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "word2vec")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pretrain_word2vec.json")
    options = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gensim
    import jieba
    import numpy
    import scipy

    from machine import machine_record
    from nlpforge.wordvec import Word2VecArgs, load_vectors, train_word2vec

    missing = [str(path) for paths in CORPORA.values() for path in paths if not path.is_file()]
    if missing or not EVAL.is_dir():
        sys.exit(f"missing data: {', '.join(missing) or EVAL}")
    wanted = set(filter(None, options.runs.split(",")))
    results = {}
    for name, language, settings in RUNS:
        if wanted and name not in wanted:
            continue
        out = options.work / name
        start = time.perf_counter()
        summary = train_word2vec(Word2VecArgs(corpus=[str(p) for p in CORPORA[language]], out=str(out),
                                              language=language, **settings))
        wall = time.perf_counter() - start
        vectors = load_vectors(out)
        result = {"settings": {k: v for k, v in summary["settings"].items() if k != "corpus"},
                  "corpus": [str(p.relative_to(DATA)) for p in CORPORA[language]],
                  "vocab_size": summary["vocab_size"], "corpus_tokens": summary["corpus_tokens"],
                  "corpus_lines": summary["corpus_lines"], "vocab_seconds": summary["vocab_seconds"],
                  "training_seconds": summary["training_seconds"], "wall_seconds": round(wall, 2)}
        if language == "en":
            result.update(english_scores(vectors))
        result["neighbours"] = neighbours(vectors, PROBES[language])
        results[name] = result
        print(json.dumps({name: {k: v for k, v in result.items() if k not in ("neighbours", "settings")}},
                         ensure_ascii=False), flush=True)
    spread = {}
    for name, language, settings in RUNS:
        if name not in results or name not in SPREAD_RUNS:
            continue
        scores = [results[name]]
        for seed in SPREAD_SEEDS:
            out = options.work / f"{name}-seed{seed}"
            train_word2vec(Word2VecArgs(corpus=[str(p) for p in CORPORA[language]], out=str(out), language=language,
                                        seed=seed, **settings))
            scores.append(english_scores(load_vectors(out)))
        spread[name] = {"seeds": [1, *SPREAD_SEEDS], **{key: [s[key] for s in scores] for key in SPREAD_KEYS}}
        print(json.dumps({f"{name} seeds 1-3": spread[name]}), flush=True)
    english = next((name for name in results if name.startswith("en-")), None)
    baseline = random_baseline(load_vectors(options.work / english)) if english else None
    record = {
        "benchmark": "pretrain_word2vec",
        "machine": {**machine_record(), "gensim": gensim.__version__, "jieba": jieba.__version__,
                    "numpy": numpy.__version__, "scipy": scipy.__version__},
        "command": " ".join(["python", "benchmarks/pretrain_word2vec.py", *sys.argv[1:]]),
        "data": {"en": "corpus_en/valid.txt (WikiText-2 tokenized; train split per the data README)",
                 "zh": "corpus_zh: xiyouji.txt, sanguo.txt, zhwiki_00.txt (all of it)",
                 "eval": "word_vectors_eval: questions-words.txt, wordsim353.tsv, simlex999.txt"},
        "notes": "analogy_accuracy in % over the questions whose 4 words are in the vocabulary (3CosAdd, "
                 "case-insensitive); *_oov_ratio: fraction of questions/pairs skipped for an unknown word; "
                 "spearman over the evaluated pairs. Defaults: size 100, window 5, min count 5, 5 epochs, "
                 "negative 5, 2 workers, seed 1, lower-cased.",
        "random_baseline_en": baseline,
        "seed_spread": spread,
        "runs": results,
    }
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {options.out}")


if __name__ == "__main__":
    main()
