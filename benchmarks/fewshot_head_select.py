"""Choosing the contrastive method's classification head on the train split only.

    python benchmarks/fewshot_head_select.py --dataset tnews --label-text --learning-rate 2e-5 --seeds 2

Per seed, a 50-example stratified sample (with ``--label-text``: plus fewshot_compare.py's label texts,
as ``fewshot --label-text`` adds them) tunes the body once (``fewshot --method contrastive``), and
every head is then fitted on the same tuned, mean-pooled embeddings of that sample and scored on the
--holdout rows of the train split (the rows fewshot_compare.py ``--holdout`` evaluates on):

- ``centroid+steps``: the method's head as saved (nearest-centroid start, then --head-steps
  full-batch steps);
- ``centroid``: the nearest-centroid classifier alone (cosine to each class's mean unit vector);
- ``logistic``: scikit-learn's ``LogisticRegression()`` with its defaults on the raw embeddings, the
  SetFit library's head;
- ``logistic-unit``: the same on unit-length embeddings.

Writes benchmarks/results/fewshot_<dataset>_head_select.json.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HEADS = ("centroid+steps", "centroid", "logistic", "logistic-unit")


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def head_accuracies(sample_vectors: np.ndarray, sample_ids: np.ndarray, held_out: np.ndarray, gold: np.ndarray,
                    saved_head_logits: np.ndarray, classes: int) -> dict[str, float]:
    """Accuracy (percent) of every head of HEADS on the held-out (N, H) embeddings, fitted on the
    sample's (S, H) embeddings and label ids; ``saved_head_logits``: (N, C) of the checkpoint's head."""
    from sklearn.linear_model import LogisticRegression

    centroids = unit(np.stack([unit(sample_vectors)[sample_ids == c].mean(axis=0) for c in range(classes)]))
    predicted = {
        "centroid+steps": saved_head_logits.argmax(axis=1),
        "centroid": (unit(held_out) @ centroids.T).argmax(axis=1),
        "logistic": LogisticRegression().fit(sample_vectors, sample_ids).predict(held_out),
        "logistic-unit": LogisticRegression().fit(unit(sample_vectors), sample_ids).predict(unit(held_out)),
    }
    return {name: round(float((predicted[name] == gold).mean() * 100), 2) for name in HEADS}


def main() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from fewshot_compare import LABEL_TEXT, held_out_setting, holdout_rows, selection_arguments, write_selection_report

    parser = selection_arguments(__doc__, LABEL_TEXT)
    parser.add_argument("--examples", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--label-text", action="store_true", help="the sample gets the dataset's label texts")
    parser.add_argument("--learning-rate", type=float, default=None, help="the body's (default: the method's)")
    args = parser.parse_args()
    import torch

    from nlpforge.adapt.sampling import sample_stratified
    from nlpforge.checkpoint import load_checkpoint
    from nlpforge.embed import embed_texts
    from nlpforge.recipes.fewshot import label_text_examples, train_contrastively

    torch.set_num_threads(args.threads)
    holdout = holdout_rows(args.dataset, args.holdout)
    fewshot_args, train, evaluation, labels = held_out_setting(args.dataset, holdout, "contrastive", 0, args.examples,
                                                               args.max_length)
    fewshot_args = dataclasses.replace(fewshot_args, learning_rate=args.learning_rate,
                                       label_text=LABEL_TEXT[args.dataset] if args.label_text else "")
    described = label_text_examples(fewshot_args.label_text, fewshot_args.label_text_copies, labels, train,
                                    fewshot_args.train)
    gold = np.array([labels.index(e.label) for e in evaluation])
    start = time.perf_counter()
    runs = []
    for seed in range(args.seeds):
        sample = sample_stratified(train, args.examples, seed, fewshot_args.train) + described
        with tempfile.TemporaryDirectory() as tmp:
            tuned = load_checkpoint(train_contrastively(fewshot_args, sample, labels, seed, Path(tmp) / "model"))
        prefix = tuned.meta["data"].get("text_prefix") or ""

        def embed(texts: list[str], tuned=tuned, prefix=prefix) -> torch.Tensor:
            with torch.inference_mode():  # the classifier's input: the mean of the real tokens, (N, H)
                return torch.as_tensor(embed_texts(tuned.model.encoder, tuned.tokenizer, [prefix + t for t in texts],
                                                   "mean", 64, args.max_length, progress=False))

        sample_vectors, held_out = embed([e.text for e in sample]), embed([e.text for e in evaluation])
        with torch.inference_mode():
            saved_logits = tuned.model.head(held_out).numpy()
        sample_ids = np.array([labels.index(e.label) for e in sample])
        run = {"seed": seed, **head_accuracies(sample_vectors.numpy(), sample_ids, held_out.numpy(), gold, saved_logits,
                                               len(labels))}
        runs.append(run)
        print(json.dumps(run), file=sys.stderr, flush=True)
    report = {"holdout": holdout, "examples": args.examples, "label_text": fewshot_args.label_text,
              "learning_rate": args.learning_rate or "the method's default", "runs": runs,
              "mean_accuracy": {name: round(statistics.fmean(run[name] for run in runs), 2) for name in HEADS}}
    print(json.dumps(report["mean_accuracy"]))
    write_selection_report("fewshot_head_select", args.dataset, report, start, args.out)


if __name__ == "__main__":
    main()
