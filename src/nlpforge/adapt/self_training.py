"""Self-training: a few-shot model labels unlabelled texts, and a student learns from the sample
plus the labels it was most sure of (Scudder 1965; the iPET / UDA family of few-shot NLP).

    pool   = up to N texts of the training file outside the sample, their labels dropped
    pseudo = per class, the pool's len(pool) / (2 x classes) texts the teacher finds most likely
             of that class: half the pool, balanced (so a teacher that prefers one class does not
             teach the student to prefer it more)
    student = fine-tuning of the starting checkpoint on sample + pseudo
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from typing import Any


def unlabelled_pool(train: Sequence[Any], sample: Sequence[Any], size: int, seed: int) -> list[Any]:
    """Up to ``size`` examples of ``train`` that are not in ``sample``, shuffled by ``seed``, with no label."""
    chosen = {id(example) for example in sample}
    pool = [dataclasses.replace(example, label=None) for example in train if id(example) not in chosen]
    random.Random(seed).shuffle(pool)
    return pool[:size]


def confident_balanced(pool: Sequence[Any], predictions: Sequence[dict[str, Any]], labels: Sequence[str]) -> list[Any]:
    """The same number of pool examples for every label, labelled with it: per label, the
    len(pool) // (2 x labels) examples the teacher gives the highest probability of that label (each
    example once). A teacher that favours one class still yields its best guesses of the others."""
    per_class = max(1, len(pool) // (2 * len(labels)))
    taken: set[int] = set()
    kept = []
    for label in labels:
        ranked = sorted(range(len(pool)), key=lambda i: predictions[i]["scores"][label], reverse=True)
        chosen = [i for i in ranked if i not in taken][:per_class]
        taken.update(chosen)
        kept += [dataclasses.replace(pool[i], label=label) for i in chosen]
    return kept
