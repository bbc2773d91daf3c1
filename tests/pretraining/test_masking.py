"""Masking statistics on large samples: selection rate, 80/10/10, whole words, span lengths."""

from __future__ import annotations

import torch

from nlpforge.pretraining import masking

B, T = 256, 128


def sample_rows(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random ids (B, T) with [CLS]=2 first, [SEP]=3 last, padding (0) on some rows; words of 1-4 tokens."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 1000, (B, T), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    for row, length in enumerate(lengths.tolist()):
        ids[row, length - 1] = 3
        ids[row, length:] = 0
    maskable = ~torch.isin(ids, torch.tensor([0, 2, 3]))
    starts = torch.rand((B, T), generator=g) < 0.4  # a new word every 2.5 tokens on average
    starts[:, 1] = True
    return ids, maskable, starts


def words_of(starts: torch.Tensor, maskable: torch.Tensor) -> list[list[tuple[int, int]]]:
    return masking._words(starts, maskable)


def test_token_selection_rate_and_never_special() -> None:
    _, maskable, _ = sample_rows()
    selected = masking.select_tokens(maskable, 0.15, torch.Generator().manual_seed(1))
    assert not selected[~maskable].any()
    rate = selected.sum().item() / maskable.sum().item()
    assert abs(rate - 0.15) < 0.005, rate


def test_corruption_is_80_10_10_and_labels_only_at_selected() -> None:
    ids, maskable, _ = sample_rows()
    g = torch.Generator().manual_seed(2)
    selected = masking.select_tokens(maskable, 0.5, g)
    replaceable = torch.ones(1000, dtype=torch.bool)
    replaceable[[0, 1, 2, 3, 4]] = False
    corrupted, labels = masking.corrupt(ids, selected, 4, 1000, g, replaceable)
    assert torch.equal(labels[selected], ids[selected])
    assert (labels[~selected] == masking.IGNORE).all()
    assert torch.equal(corrupted[~selected], ids[~selected])
    n = selected.sum().item()
    masked = (corrupted[selected] == 4).sum().item() / n
    kept = (corrupted[selected] == ids[selected]).sum().item() / n
    assert abs(masked - 0.8) < 0.01 and abs(kept - 0.1 - 0.001) < 0.01  # random draws equal to the id: ~1/996
    assert not torch.isin(corrupted[selected & (corrupted != 4)], torch.tensor([0, 1, 2, 3])).any()


def test_whole_words_are_never_split_and_cover_the_rate() -> None:
    _, maskable, starts = sample_rows(3)
    selected = masking.select_whole_words(starts, maskable, 0.15, torch.Generator().manual_seed(4))
    assert not selected[~maskable].any()
    for row, words in enumerate(words_of(starts, maskable)):
        for begin, end in words:
            part = selected[row, begin:end]
            assert part.all() or not part.any(), (row, begin, end)
    rate = selected.sum().item() / maskable.sum().item()
    assert 0.13 < rate <= 0.151, rate


def test_span_lengths_follow_the_truncated_geometric() -> None:
    lengths = masking.span_lengths(200_000, torch.Generator().manual_seed(5), p=0.2, longest=10)
    assert lengths.min() == 1 and lengths.max() == 10
    histogram = torch.bincount(lengths, minlength=11)[1:].float() / len(lengths)
    weights = torch.tensor([0.2 * 0.8 ** (k - 1) for k in range(1, 11)])
    assert torch.allclose(histogram, weights / weights.sum(), atol=0.004), histogram
    assert abs(lengths.float().mean().item() - 3.8) < 0.03  # SpanBERT's mean span length


def test_spans_are_whole_words_that_never_touch() -> None:
    ids, maskable, starts = sample_rows(6)
    selected = masking.select_spans(starts, maskable, 0.15, torch.Generator().manual_seed(7))
    assert not selected[~maskable].any()
    for row, words in enumerate(words_of(starts, maskable)):
        for begin, end in words:
            part = selected[row, begin:end]
            assert part.all() or not part.any()
    rate = selected.sum().item() / maskable.sum().item()
    assert 0.14 < rate < 0.25, rate
    targets = masking.boundary_targets(selected, ids, 40)
    assert len(targets["sbo_row"]) == selected.sum().item()
    rows, left, right = targets["sbo_row"], targets["sbo_left"], targets["sbo_right"]
    assert not selected[rows, left].any() and not selected[rows, right].any()  # boundaries are visible
    assert torch.equal(targets["sbo_target"], ids[selected])


def test_boundary_targets_of_a_small_example() -> None:
    ids = torch.tensor([[2, 10, 11, 12, 13, 14, 3]])
    selected = torch.tensor([[False, False, True, True, False, True, False]])
    targets = masking.boundary_targets(selected, ids, 40)
    assert targets["sbo_left"].tolist() == [1, 1, 4]
    assert targets["sbo_right"].tolist() == [4, 4, 6]
    assert targets["sbo_offset"].tolist() == [0, 1, 0]
    assert targets["sbo_target"].tolist() == [11, 12, 14]
