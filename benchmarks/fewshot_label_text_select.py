"""Choosing ``fewshot --label-text`` on the train split only: how well does each candidate name the labels?

    python benchmarks/fewshot_label_text_select.py --dataset tnews

The train split is shuffled (seed 0) and its first --holdout rows are scored, exactly the rows that
``fewshot_compare.py --holdout`` evaluates on. Per candidate (a LABEL=TEXT string, as ``--label-text``
takes it), the untrained backbone embeds the hold-out texts and the label texts (mean pooling, unit
length) and every text gets the label whose text is nearest (cosine): the zero-shot accuracy of the
label texts alone. With it, per seed of a 50-example stratified sample, the nearest-centroid accuracy of
the sample alone and with each label text counted as W more examples of its label (``--weights``). The
texts that name the labels best go into fewshot_compare.py's LABEL_TEXT, so the report split is never
read while choosing. Writes benchmarks/results/fewshot_<dataset>_label_text_select.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = {  # label -> name; each form puts the names into a sentence
    "chnsenticorp": [({"1": "好评", "0": "差评"}, ["{}", "这是一条{}", "总之很{}"]),
                     ({"1": "好", "0": "差"}, ["总之很{}"])],
    "sst2": [({"1": "positive", "0": "negative"}, ["{}", "This sentence is {}.", "It was {}.", "The movie is {}."]),
             ({"1": "great", "0": "terrible"}, ["It was {}.", "A {} movie."])],
    "tnews": [(None, ["{}", "{}新闻", "这是一条{}新闻"])],  # None: fewshot_compare.TNEWS_NAMES
}


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def main() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from fewshot_compare import TNEWS_NAMES, held_out_setting, holdout_rows, selection_arguments, write_selection_report

    parser = selection_arguments(__doc__, CANDIDATES)
    parser.add_argument("--examples", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--weights", default="1,4,16", help="a label text counted as W examples of its label")
    args = parser.parse_args()
    import torch

    from nlpforge.adapt.sampling import sample_stratified
    from nlpforge.checkpoint import load_checkpoint
    from nlpforge.embed import embed_texts

    torch.set_num_threads(args.threads)
    holdout = holdout_rows(args.dataset, args.holdout)
    fewshot_args, train, evaluation, labels = held_out_setting(args.dataset, holdout, "contrastive", 0, args.examples,
                                                               args.max_length)
    loaded = load_checkpoint(fewshot_args.model, head="base")

    def embed(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            return unit(embed_texts(loaded.model, loaded.tokenizer, texts, "mean", 64, args.max_length,
                                    progress=False))

    start = time.perf_counter()
    held_out = embed([e.text for e in evaluation])  # (N, H)
    gold = np.array([labels.index(e.label) for e in evaluation])
    samples = []  # per seed: the sample's class sums (C, H) and counts (C, 1)
    for seed in range(args.seeds):
        sample = sample_stratified(train, args.examples, seed, fewshot_args.train)
        vectors, ids = embed([e.text for e in sample]), np.array([labels.index(e.label) for e in sample])
        sums = np.stack([vectors[ids == c].sum(axis=0) for c in range(len(labels))])
        samples.append((sums, np.bincount(ids, minlength=len(labels))[:, None]))

    def accuracy(prototypes: np.ndarray) -> float:
        return round(float(((held_out @ unit(prototypes).T).argmax(axis=1) == gold).mean() * 100), 2)

    weights = [float(w) for w in args.weights.split(",")]
    rows = []
    for names, forms in CANDIDATES[args.dataset]:
        names = names or TNEWS_NAMES
        for form in forms:
            label_text = ",".join(f"{label}={form.format(names[label])}" for label in labels)
            named = embed([form.format(names[label]) for label in labels])  # (C, H)
            row = {"label_text": label_text, "zero_shot": accuracy(named),
                   "centroid": round(float(np.mean([accuracy(sums / counts) for sums, counts in samples])), 2)}
            for weight in weights:
                row[f"centroid_with_label_text_x{weight:g}"] = round(float(np.mean(
                    [accuracy(sums + weight * named) for sums, _ in samples])), 2)
            rows.append(row)
            print(json.dumps(row, ensure_ascii=False), flush=True)
    write_selection_report("fewshot_label_text_select", args.dataset, {
        "backbone": fewshot_args.model, "split": f"{fewshot_args.train} (a hold-out of {holdout} rows, seed 0)",
        "examples": args.examples, "seeds": args.seeds, "max_length": args.max_length, "candidates": rows,
        "best_zero_shot": max(rows, key=lambda row: row["zero_shot"])["label_text"]}, start, args.out)


if __name__ == "__main__":
    main()
