"""Contrastive few-shot tuning of a sentence-embedding body (SetFit, Tunstall et al. 2022).

From K labelled examples, draw sentence pairs: same label -> target similarity 1, different labels
-> 0. Fine-tune the body so that the cosine similarity of the mean-pooled embeddings of a pair
matches its target (``loss = mean((cos(u, v) - y)^2)``, sentence-transformers' CosineSimilarityLoss).
A classification head is then fitted on the tuned embeddings. Few examples give many pairs: K per
class over C classes gives on the order of (KC)^2 / 2 pairs, which is why it works with 8 per class.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def contrastive_pairs(label_ids: Sequence[int], iterations: int, seed: int) -> list[tuple[int, int, float]]:
    """SetFit's pair sampling: for every iteration and every example, one positive pair (another
    example of its label) and one negative pair (an example of another label).

    Returns (index, index, target) triples, shuffled; a label with one example gets no positives,
    and with one label there are no negatives.
    """
    rng = random.Random(seed)
    members: dict[int, list[int]] = {}
    for index, label in enumerate(label_ids):
        members.setdefault(label, []).append(index)
    pairs: list[tuple[int, int, float]] = []
    for _ in range(iterations):
        for index, label in enumerate(label_ids):
            same = [j for j in members[label] if j != index]
            if same:
                pairs.append((index, rng.choice(same), 1.0))
            others = [j for other, group in members.items() if other != label for j in group]
            if others:
                pairs.append((index, rng.choice(others), 0.0))
    rng.shuffle(pairs)
    return pairs


def cosine_similarity_loss(left: torch.Tensor, right: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, H), (B, H), (B,) -> the mean squared gap between the pairs' cosine similarity and target."""
    return F.mse_loss(F.cosine_similarity(left, right, dim=-1), target)


@torch.no_grad()
def centroid_head_init(dense: torch.nn.Linear, out: torch.nn.Linear, embeddings: torch.Tensor,
                       label_ids: torch.Tensor) -> None:
    """Start a ``dense -> tanh -> out`` head as the nearest-centroid classifier of the embeddings.

    ``dense`` becomes the identity scaled so that tanh stays in its linear range, and ``out``'s rows
    the unit-length mean of each class's unit-length embeddings: then logit_c ~ s * <x, c> and the
    argmax is that of the cosine to the class centroids (|x| is the same for every class). With a few
    examples per class this prototype classifier is a strong start (Snell et al. 2017).
    embeddings: (N, H); label_ids: (N,) in 0..C-1.
    """
    scale = 1.0 / embeddings.abs().max().clamp(min=1e-6)  # |scale * x| <= 1: tanh near linear
    dense.weight.copy_(torch.eye(dense.in_features) * scale)
    dense.bias.zero_()
    unit = F.normalize(embeddings, dim=-1)
    centroids = torch.stack([unit[label_ids == c].mean(dim=0) for c in range(out.out_features)])  # (C, H)
    out.weight.copy_(F.normalize(centroids, dim=-1) / scale)
    out.bias.zero_()
