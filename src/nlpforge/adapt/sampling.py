"""The few-shot samples of the K-shot protocol: K examples per class, or N in total stratified by
class, drawn from a labelled file with a fixed seed (the same seed gives the same sample for every
method, so methods are compared on the same examples)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nlpforge.errors import InputDataError


def by_label(examples: Sequence[Any]) -> dict[str, list[Any]]:
    """Labelled examples grouped by label, in file order."""
    groups: dict[str, list[Any]] = defaultdict(list)
    for example in examples:
        if example.label is not None:
            groups[example.label].append(example)
    return dict(groups)


def sample_per_class(examples: Sequence[Any], k: int, seed: int, path: str | Path) -> list[Any]:
    """K examples of every label (in a shuffled order); a class with fewer than K is an error."""
    groups = by_label(examples)
    if not groups:
        raise InputDataError(f"{path}: no labelled examples to sample from; check --label-column")
    short = {label: len(group) for label, group in groups.items() if len(group) < k}
    if short:
        listed = ", ".join(f"{label!r} has {count}" for label, count in sorted(short.items()))
        raise InputDataError(f"{path}: --k {k} is more than some classes have ({listed}); lower --k or add examples")
    rng = random.Random(seed)
    chosen = [example for label in sorted(groups) for example in rng.sample(groups[label], k)]
    rng.shuffle(chosen)
    return chosen


def sample_stratified(examples: Sequence[Any], total: int, seed: int, path: str | Path) -> list[Any]:
    """``total`` examples, each class getting its share of the file (largest remainders, at least one each)."""
    groups = by_label(examples)
    count = sum(len(group) for group in groups.values())
    if total < len(groups):
        raise InputDataError(f"{path}: --examples {total} is fewer than the {len(groups)} classes; every class "
                             "needs at least one example")
    if total > count:
        raise InputDataError(f"{path}: --examples {total} is more than the {count} labelled examples of the file")
    labels = sorted(groups)
    exact = {label: total * len(groups[label]) / count for label in labels}
    share = {label: max(1, int(exact[label])) for label in labels}
    by_remainder = sorted(labels, key=lambda label: exact[label] - int(exact[label]), reverse=True)
    while sum(share.values()) < total:  # hand out what rounding down left, largest remainder first
        for label in by_remainder:
            if sum(share.values()) < total and share[label] < len(groups[label]):
                share[label] += 1
    while sum(share.values()) > total:  # the at-least-one rule took too many: from the largest shares
        largest = max(labels, key=lambda label: share[label])
        share[largest] -= 1
    rng = random.Random(seed)
    chosen = [example for label in labels for example in rng.sample(groups[label], share[label])]
    rng.shuffle(chosen)
    return chosen
