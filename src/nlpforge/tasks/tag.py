"""Token classification (NER) with BIO or BIOES tags: sub-token labels, word tags, entity spans, entity F1.

Words are labelled through their first sub-token: the tokenizer splits each word into sub-tokens,
the first one carries the word's tag and the others (and [CLS]/[SEP]) carry -100, the index that
``torch.nn.functional.cross_entropy`` ignores. Sub-tokens that hold no text are dropped first:
SentencePiece tokenizers (XLM-R, E5) split a pre-split Chinese character into a bare word-boundary
piece "▁" and the character, and the tag would land on the "▁". Decoding reads the prediction at
each word's first sub-token back into one tag per word, and spans of tags into entities with
character offsets.
Chinese (MSRA) is tagged one character per word, English (CoNLL) one token per word.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOBES
from transformers import PreTrainedTokenizerBase

from nlpforge.errors import ConfigError, InputDataError

IGNORE_INDEX = -100  # label of non-first sub-tokens and special tokens; cross_entropy skips it
SCHEMES = ("BIO", "BIOES")
# Han ideographs (CJK unified, extension A, compatibility): a text holding any is split per character.
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# An English word: word characters joined by inner - ' ’ . (1996-08-22, O'Neil, 3.5), or one other symbol.
_WORD = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]")


# ---------------------------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------------------------


def align_labels(word_ids: Sequence[int | None], word_tags: Sequence[str], label_to_id: Mapping[str, int]) -> list[int]:
    """One label id per sub-token: the word's tag id on its first sub-token, -100 elsewhere.

    ``word_ids`` is ``BatchEncoding.word_ids(i)`` of a fast tokenizer called with
    ``is_split_into_words=True``: the word index of each sub-token, None for special tokens.
    """
    labels = []
    previous = None
    for word in word_ids:
        if word is None or word == previous:
            labels.append(IGNORE_INDEX)
        else:
            tag = word_tags[word]
            if tag not in label_to_id:
                raise InputDataError(f"unknown tag {tag!r}; the labels are {', '.join(label_to_id)}")
            labels.append(label_to_id[tag])
        previous = word
    return labels


def encode_tagged(
    tokenizer: PreTrainedTokenizerBase,
    sentences_tokens: Sequence[Sequence[str]],
    sentences_tags: Sequence[Sequence[str]] | None,
    label_to_id: Mapping[str, int],
    max_length: int,
) -> list[dict]:
    """Tokenise pre-split sentences; per sentence ``input_ids``, ``attention_mask``, ``word_ids`` (+ ``labels``).

    Lists are unpadded; ``word_ids`` (None for special tokens) is kept for ``decode_word_tags``.
    Words past ``max_length`` sub-tokens are cut; their tags are simply not used. Words the
    tokenizer drops entirely (a lone zero-width space) get no sub-token and decode to "O".
    """
    if not tokenizer.is_fast:
        raise ConfigError(f"{type(tokenizer).__name__} is not a fast tokenizer; tagging needs its word_ids()")
    if sentences_tags is not None:
        for index, (tokens, tags) in enumerate(zip(sentences_tokens, sentences_tags, strict=True)):
            if len(tokens) != len(tags):
                raise InputDataError(f"sentence {index}: {len(tokens)} tokens but {len(tags)} tags")
    encoding = tokenizer([list(tokens) for tokens in sentences_tokens], is_split_into_words=True)
    blank = _blank_pieces(tokenizer, encoding["input_ids"])
    features = []
    for index in range(len(sentences_tokens)):
        kept = [(token, word) for token, word in zip(encoding["input_ids"][index], encoding.word_ids(index),
                                                      strict=True) if word is None or token not in blank]
        input_ids, word_ids = _truncate([token for token, _ in kept], [word for _, word in kept], max_length)
        feature = {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "word_ids": word_ids}
        if sentences_tags is not None:
            feature["labels"] = align_labels(word_ids, sentences_tags[index], label_to_id)
        features.append(feature)
    return features


def _blank_pieces(tokenizer: PreTrainedTokenizerBase, batch_ids: Sequence[Sequence[int]]) -> set[int]:
    """Ids in the batch of sub-tokens that decode to no text (SentencePiece's lone "▁")."""
    return {i for i in {i for ids in batch_ids for i in ids} if not tokenizer.decode([i]).strip()}


def _truncate(input_ids: Sequence[int], word_ids: Sequence[int | None], max_length: int) -> tuple[list, list]:
    """Cut the words' sub-tokens so the sequence fits ``max_length``, keeping the leading and trailing
    special tokens (word id None) as the tokenizer placed them."""
    if len(input_ids) <= max_length:
        return list(input_ids), list(word_ids)
    head = next(i for i, w in enumerate(word_ids) if w is not None)
    tail = next(i for i, w in enumerate(reversed(word_ids)) if w is not None)
    body = max(0, max_length - head - tail)
    keep = [*range(head + body), *range(len(input_ids) - tail, len(input_ids))]
    return [input_ids[i] for i in keep], [word_ids[i] for i in keep]


def word_offsets(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Split raw input into words and their (start, end) character offsets in ``text``.

    The rule: a text holding any Han character is split one word per character, whitespace
    skipped (as MSRA is tagged: Latin letters and digits are single characters there too);
    any other text is split like CoNLL tokens: runs of word characters (joined by inner
    ``- ' ’ .``, so 1996-08-22, O'Neil and 3.5 stay whole) and each other symbol on its own,
    so that "Paris." gives the words "Paris" and ".".
    """
    if _CJK.search(text):
        spans = [(i, i + 1) for i, char in enumerate(text) if not char.isspace()]
    else:
        spans = [match.span() for match in _WORD.finditer(text)]
    return [text[start:end] for start, end in spans], spans


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


def decode_word_tags(
    token_label_ids: Sequence[int],
    word_ids: Sequence[int | None],
    id_to_label: Mapping[int, str] | Sequence[str],
    n_words: int | None = None,
) -> list[str]:
    """The predicted tag of each of ``n_words`` words, read at its first sub-token.

    ``token_label_ids`` is the argmax per position (it may be longer than ``word_ids``, as when
    padded to the batch). Words without a sub-token (cut by truncation, or dropped by the
    tokenizer) get "O". Pass ``n_words`` (the sentence's word count) so that the output lines up
    with the input words; without it the output ends at the last word that has a sub-token.
    """
    if n_words is None:
        n_words = 1 + max((word for word in word_ids if word is not None), default=-1)
    tags = ["O"] * n_words
    previous = None
    for position, word in enumerate(word_ids):
        if word is not None and word != previous:
            tags[word] = id_to_label[int(token_label_ids[position])]
        previous = word
    return tags


def tags_to_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first word, last word + 1) of each entity in a BIO or BIOES tag sequence.

    Lenient, exactly as seqeval's default mode (its ``get_entities`` does the work): an I- or
    E- after O or after another type starts an entity, a B- without I- is a one-word entity.
    """
    return [(kind, start, end + 1) for kind, start, end in get_entities(list(tags))]


def entities_with_offsets(text: str, word_offsets: Sequence[tuple[int, int]], tags: Sequence[str]) -> list[dict]:
    """``{"type", "start", "end", "text"}`` per entity, with character offsets into ``text`` (end exclusive).

    ``word_offsets`` holds the (start, end) of each word, as the function of that name returns
    them, so the entity text keeps the spacing of the original (spaces between English words,
    none in Chinese).
    """
    if len(word_offsets) != len(tags):
        raise ValueError(f"{len(word_offsets)} word offsets but {len(tags)} tags")
    entities = []
    for kind, first, last in tags_to_spans(tags):
        start, end = word_offsets[first][0], word_offsets[last - 1][1]
        entities.append({"type": kind, "start": start, "end": end, "text": text[start:end]})
    return entities


# ---------------------------------------------------------------------------------------------
# Metric
# ---------------------------------------------------------------------------------------------


def entity_f1(true_tags: Sequence[Sequence[str]], predicted_tags: Sequence[Sequence[str]], scheme: str = "BIO") -> dict:
    """Entity-level micro precision, recall and F1 (0-1, seqeval), and the same per entity type.

    BIO is scored in seqeval's default (lenient, conlleval-like) mode; BIOES in strict mode with
    the IOBES scheme, where an entity counts only if its tags are well formed. Returns
    ``{"precision", "recall", "f1", "per_type": {type: {"precision", "recall", "f1", "support"}}}``.
    """
    if scheme not in SCHEMES:
        raise ConfigError(f"tag scheme {scheme!r} is not supported; use one of {', '.join(SCHEMES)}")
    y_true, y_pred = [list(tags) for tags in true_tags], [list(tags) for tags in predicted_tags]
    mode = {"mode": "strict", "scheme": IOBES} if scheme == "BIOES" else {}
    report = classification_report(y_true, y_pred, output_dict=True, zero_division=0, **mode)
    per_type = {
        kind: {
            "precision": float(row["precision"]),
            "recall": float(row["recall"]),
            "f1": float(row["f1-score"]),
            "support": int(row["support"]),
        }
        for kind, row in report.items()
        if not kind.endswith(" avg")
    }
    return {
        "precision": float(precision_score(y_true, y_pred, zero_division=0, **mode)),
        "recall": float(recall_score(y_true, y_pred, zero_division=0, **mode)),
        "f1": float(f1_score(y_true, y_pred, zero_division=0, **mode)),
        "per_type": per_type,
    }
