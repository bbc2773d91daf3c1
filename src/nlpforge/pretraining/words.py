"""Where words begin, per token: what whole-word and span masking need.

A token continues the word before it when

- its text starts with a CJK character: the character is inside (not at the start of) a word
  that jieba finds in the text (BERT-wwm-Chinese: the tokenizer splits Chinese into characters
  or pieces, the words come from a segmenter);
- otherwise, by the tokenizer's convention: a WordPiece ``##`` piece, or a SentencePiece /
  byte-level BPE piece that lacks the word-start marker (``▁`` / ``Ġ``).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedTokenizerBase

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
WORD_START_MARKERS = ("▁", "Ġ")


@functools.cache
def _jieba() -> Any:  # the jieba module, imported on first use (it loads a dictionary)
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


def cjk_word_starts(text: str) -> set[int]:
    """Character offsets where a jieba word of ``text`` begins."""
    starts, offset = set(), 0
    for word in _jieba().lcut(text, HMM=True):
        starts.add(offset)
        offset += len(word)
    return starts


class WordStarts:
    """Word starts of a tokenizer's tokens; ``continues`` is cached per vocabulary id."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        vocabulary = [str(token) for token in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))]
        special = set(tokenizer.all_special_ids)
        if any(token.startswith("##") for token in vocabulary):
            continues = [token.startswith("##") for token in vocabulary]
        else:
            marker = next((m for m in WORD_START_MARKERS if any(t.startswith(m) for t in vocabulary)), None)
            continues = [marker is not None and not token.startswith(marker) for token in vocabulary]
        self.continues = [flag and i not in special for i, flag in enumerate(continues)]  # (V,)

    def of(self, text: str, ids: Sequence[int], offsets: Sequence[tuple[int, int]]) -> list[bool]:
        """(T,) True where token t begins a word (``offsets``: each token's character span in ``text``)."""
        segmented = cjk_word_starts(text) if CJK.search(text) else set()
        starts = []
        for token_id, (begin, end) in zip(ids, offsets, strict=True):
            piece = text[begin:end].lstrip()
            if piece and CJK.match(piece):
                first = begin + (end - begin - len(piece))  # skip a leading space the piece carries
                starts.append(first in segmented)
            else:
                starts.append(not self.continues[token_id])
        return starts
