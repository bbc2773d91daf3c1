"""Which tokens a masked-LM objective predicts, and what the model sees in their place.

Three ways to choose the ~15% of positions to predict (BERT, whole-word BERT, SpanBERT), one
way to corrupt them (BERT's 80/10/10), all on (B, T) tensors:

- ``select_tokens``: each maskable token independently with probability ``rate`` (BERT, RoBERTa).
- ``select_whole_words``: whole words in random order until ``rate`` of the row's maskable
  tokens are covered; a word is never split (BERT-wwm, Chinese words from jieba).
- ``select_spans``: SpanBERT's spans of whole words, span lengths (in words) drawn from a
  geometric distribution Geo(p = 0.2) truncated to 1..10, until ``rate`` of the tokens are covered.
- ``corrupt``: of the selected positions 80% become ``[MASK]``, 10% a random token, 10% stay;
  labels are the original ids at selected positions and -100 elsewhere.

``maskable`` (B, T) is False on special and padding tokens: they are never selected. Word
structure comes as ``word_starts`` (B, T): True where a token begins a word. Every function takes
a ``torch.Generator`` so that a dataset's static masks are reproducible and dynamic masks differ
between epochs (the caller seeds with the epoch).
"""

from __future__ import annotations

import math

import torch

IGNORE = -100  # label of a position that is not scored


def select_tokens(maskable: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """(B, T) bool: each maskable position independently with probability ``rate``."""
    draws = torch.rand(maskable.shape, generator=generator)
    return (draws < rate) & maskable


def _words(word_starts: torch.Tensor, maskable: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Per row the maskable words as [start, end) token ranges, in order.

    A word is a run of maskable tokens that begins at a word start (or after an unmaskable one)
    and goes on until the next word start or unmaskable token.
    """
    rows = []
    for starts, ok in zip(word_starts.tolist(), maskable.tolist(), strict=True):
        words: list[tuple[int, int]] = []
        begin = None
        for position, (start, usable) in enumerate(zip(starts, ok, strict=True)):
            if begin is not None and (start or not usable):
                words.append((begin, position))
                begin = None
            if usable and begin is None:
                begin = position
        if begin is not None:
            words.append((begin, len(starts)))
        rows.append(words)
    return rows


def _budget(maskable_row: int, rate: float) -> int:
    """Tokens to predict in a row: round(rate * maskable), at least 1 when anything is maskable."""
    return max(1, round(rate * maskable_row)) if maskable_row else 0


def select_whole_words(word_starts: torch.Tensor, maskable: torch.Tensor, rate: float,
                       generator: torch.Generator) -> torch.Tensor:
    """(B, T) bool: whole words, in random order, while they fit in ``rate`` of the row's maskable tokens."""
    selected = torch.zeros_like(maskable)
    budgets = maskable.sum(dim=1).tolist()
    for row, words in enumerate(_words(word_starts, maskable)):
        budget, covered = _budget(budgets[row], rate), 0
        for index in torch.randperm(len(words), generator=generator).tolist():
            begin, end = words[index]
            if covered + (end - begin) > budget:
                continue  # too long for what is left; a shorter word may still fit
            selected[row, begin:end] = True
            covered += end - begin
            if covered >= budget:
                break
    return selected


def span_lengths(count: int, generator: torch.Generator, p: float = 0.2, longest: int = 10) -> torch.Tensor:
    """(count,) span lengths in words from Geo(p) truncated to 1..``longest`` (SpanBERT: P(k) is
    proportional to p (1-p)^(k-1) for k <= 10; mean 3.8 at p = 0.2)."""
    reach = 1.0 - (1.0 - p) ** longest  # P(k <= longest) of the untruncated distribution
    uniform = torch.rand(count, generator=generator, dtype=torch.float64) * reach  # inverse CDF on [0, reach)
    lengths = torch.floor(torch.log1p(-uniform) / math.log(1.0 - p)).long() + 1
    return lengths.clamp(1, longest)


def select_spans(word_starts: torch.Tensor, maskable: torch.Tensor, rate: float, generator: torch.Generator,
                 p: float = 0.2, longest: int = 10) -> torch.Tensor:
    """SpanBERT masking: (B, T) bool.

    Each span covers whole, consecutive words inside one run of maskable tokens; spans do not
    overlap or touch, so each run of selected tokens is one span with an unselected neighbour on
    each side (what ``boundary_targets`` reads). Drawing stops when the row's budget is covered (a
    span may overshoot it by less than one span) or after a bounded number of tries.
    """
    selected = torch.zeros_like(maskable)
    budgets = maskable.sum(dim=1).tolist()
    for row, words in enumerate(_words(word_starts, maskable)):
        budget, covered = _budget(budgets[row], rate), 0
        taken = [False] * len(words)
        for _ in range(10 * len(words) + 10):
            if covered >= budget or not words:
                break
            length = int(span_lengths(1, generator, p, longest))
            first = int(torch.randint(len(words), (1,), generator=generator))
            last = min(first + length, len(words)) - 1
            # a span stays inside one run of adjacent words (an unmaskable token ends a run)
            while last > first and words[last][0] != words[last - 1][1]:
                last -= 1
            if any(taken[max(first - 1, 0): last + 2]):
                continue  # overlapping or touching a chosen span
            for index in range(first, last + 1):
                taken[index] = True
            begin, end = words[first][0], words[last][1]
            selected[row, begin:end] = True
            covered += end - begin
    return selected


def runs(selected: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Per row the runs of selected positions as [start, end) ranges."""
    found = []
    for flags in selected.tolist():
        row, begin = [], None
        for position, flag in enumerate([*flags, False]):
            if flag and begin is None:
                begin = position
            elif not flag and begin is not None:
                row.append((begin, position))
                begin = None
        found.append(row)
    return found


def boundary_targets(selected: torch.Tensor, input_ids: torch.Tensor, offsets: int) -> dict[str, torch.Tensor]:
    """The span boundary objective's inputs, one entry per token of each span (run of ``selected``):
    its row, the positions of the tokens just outside the span (left, right), its 0-based offset in
    the span (clipped to ``offsets - 1``) and its original id. Each value has shape (N,).
    """
    row, left, right, offset, target = [], [], [], [], []
    length = input_ids.shape[1]
    for b, spans in enumerate(runs(selected)):
        for begin, end in spans:
            for position in range(begin, end):
                row.append(b)
                left.append(max(begin - 1, 0))
                right.append(min(end, length - 1))
                offset.append(min(position - begin, offsets - 1))
                target.append(int(input_ids[b, position]))
    values = {"sbo_row": row, "sbo_left": left, "sbo_right": right, "sbo_offset": offset, "sbo_target": target}
    return {name: torch.tensor(value, dtype=torch.long) for name, value in values.items()}


def corrupt(input_ids: torch.Tensor, selected: torch.Tensor, mask_id: int, vocab_size: int,
            generator: torch.Generator, replaceable: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's 80/10/10: (corrupted input ids (B, T), labels (B, T) with -100 where not selected).

    ``replaceable`` (V,) bool marks the ids a random replacement may draw (default: every id);
    pass the non-special ids so that no [CLS]/[PAD] appears inside a text.
    """
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE))
    draws = torch.rand(input_ids.shape, generator=generator)
    to_mask = selected & (draws < 0.8)
    to_random = selected & (draws >= 0.8) & (draws < 0.9)
    corrupted = input_ids.masked_fill(to_mask, mask_id)
    if replaceable is None:
        random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    else:
        pool = replaceable.nonzero().flatten()
        random_ids = pool[torch.randint(len(pool), input_ids.shape, generator=generator)]
    corrupted = torch.where(to_random, random_ids, corrupted)
    return corrupted, labels
