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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOBES
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlpforge.config import ModelConfig
from nlpforge.data.collate import pad_rows
from nlpforge.data.conll import read_conll
from nlpforge.data.examples import TaggedSentence
from nlpforge.errors import ConfigError, InputDataError
from nlpforge.inference import forward_batches
from nlpforge.models.outputs import TaskOutput
from nlpforge.tasks.base import DataOptions, EncoderTask, balanced_class_weights, text_record
from nlpforge.tasks.heads import encoder_without_pooler

IGNORE_INDEX = -100  # label of non-first sub-tokens and special tokens; cross_entropy skips it
SCHEMES = ("BIO", "BIOES")
# Han ideographs (CJK unified, extension A, compatibility): a text holding any is split per character.
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# An English word: word characters joined by inner - ' ’ . (1996-08-22, O'Neil, 3.5), or one other symbol.
_WORD = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]")


def loss(logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of (B, T, C) logits against (B, T) tag ids; positions labelled -100 are skipped."""
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), weight=class_weights, ignore_index=IGNORE_INDEX)


class TokenTagger(nn.Module):
    """Tokens -> (B, T, C) tag logits (the ``*ForTokenClassification`` layout)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder_without_pooler(config)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.ModuleDict({"out": nn.Linear(config.hidden_size, config.num_labels)})

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        head_mask: Sequence[torch.Tensor] | torch.Tensor | None = None,  # per layer (A_layer,) gates
        packed: bool = False,  # inference on real tokens only (models/bert.py)
    ) -> TaskOutput:
        encoded = self.encoder(input_ids, attention_mask, token_type_ids, output_hidden_states, output_attentions,
                               head_mask=head_mask, packed=packed)
        logits = self.head["out"](self.dropout(encoded.last_hidden_state))  # (B, T, C)
        return TaskOutput(logits, loss(logits, labels) if labels is not None else None,
                          encoded.hidden_states, encoded.attentions)


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


# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------


@dataclass
class TagTask(EncoderTask):
    """One tag per word (CoNLL files in, entities with character offsets out); entity F1."""

    name: ClassVar[str] = "tag"
    head: ClassVar[str] = "tag"
    model_class: ClassVar[type[nn.Module]] = TokenTagger
    metric: ClassVar[str] = "f1"
    output_names: ClassVar[tuple[str, ...]] = ("logits",)
    warmup_input: ClassVar[Any] = "warm up"
    input_schema: ClassVar[dict[str, Any]] = {"anyOf": [
        {"type": "string"},
        {"type": "object", "required": ["text"], "additionalProperties": False,
         "properties": {"text": {"type": "string"}}}]}
    per_token_views: ClassVar[bool] = True

    def read(self, path: str | Path, data: DataOptions) -> list[TaggedSentence]:
        return read_conll(path, data.token_column, data.tag_column, data.encoding)

    def label_names(self, examples: Sequence[TaggedSentence], existing: list[str] | None) -> list[str]:
        found = sorted({t for s in examples for t in s.tags}, key=lambda t: (t != "O", t[2:], t))
        return existing or found

    def check(self, examples: Sequence[TaggedSentence], labels: list[str] | None, path: str | Path) -> None:
        known = set(labels or [])
        for sentence in examples:
            for tag_name in sentence.tags:
                if tag_name not in known:
                    raise InputDataError(f"{path}:{sentence.line}: unknown tag {tag_name!r}; "
                                         f"the model knows: {', '.join(labels or [])}")

    def encode(self, tokenizer: PreTrainedTokenizerBase, examples: Sequence[TaggedSentence],
               labels: list[str] | None, max_length: int, data: DataOptions) -> list[dict[str, Any]]:
        label_to_id = {label: i for i, label in enumerate(labels or [])}
        tags = [s.tags for s in examples] if examples and examples[0].tags else None
        return encode_tagged(tokenizer, [s.tokens for s in examples], tags, label_to_id, max_length)

    def collate(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        batch = super().collate(features, pad_id)
        if "labels" in features[0]:
            batch["labels"] = pad_rows([f["labels"] for f in features], IGNORE_INDEX)  # (B, T)
        return batch

    def loss(self, output: TaskOutput, batch: dict[str, torch.Tensor],
             class_weights: torch.Tensor | None) -> torch.Tensor:
        return loss(output.logits, batch["labels"], class_weights)

    def class_weights(self, features: Sequence[dict[str, Any]], num_labels: int) -> torch.Tensor:
        return balanced_class_weights([i for f in features for i in f["labels"] if i >= 0], num_labels)

    def word_tags(self, model: Any, features: Sequence[dict], sentences: Sequence[Sequence[str]],
                  labels: list[str], batch_size: int, pad_id: int) -> list[list[str]]:
        """The predicted tag of every word of every sentence (words cut off by max_length get O)."""
        id_to_label = dict(enumerate(labels))
        tags: list[list[str]] = [[] for _ in features]
        for rows, output in forward_batches(model, features, batch_size, pad_id):
            predicted = output.logits.argmax(dim=-1)
            for row, ids in zip(rows, predicted, strict=True):
                feature = features[row]
                tags[row] = decode_word_tags(ids[: len(feature["input_ids"])].tolist(), feature["word_ids"],
                                             id_to_label, n_words=len(sentences[row]))
        return tags

    def evaluate(self, model: Any, tokenizer: PreTrainedTokenizerBase, examples: Sequence[TaggedSentence],
                 labels: list[str] | None, max_length: int, batch_size: int, data: DataOptions) -> dict[str, Any]:
        labels = labels or []
        features = self.encode(tokenizer, examples, labels, max_length, data)
        predicted = self.word_tags(model, features, [s.tokens for s in examples], labels, batch_size,
                                   tokenizer.pad_token_id)
        scheme = "BIOES" if any(t[:2] in ("E-", "S-") for t in labels) else "BIO"
        scores = entity_f1([s.tags for s in examples], predicted, scheme)
        return {**{k: 100.0 * v if isinstance(v, float) else v for k, v in scores.items()},
                "sentences": len(examples)}

    def parse_input(self, record: Any, where: str) -> str:
        return text_record(record, where, ("text",))["text"]

    def predict(self, model: Any, tokenizer: PreTrainedTokenizerBase, inputs: Sequence[str],
                labels: list[str] | None, max_length: int, batch_size: int, data: DataOptions) -> list[dict]:
        split = [word_offsets(text) for text in inputs]
        sentences = [TaggedSentence(words, [], 0) for words, _ in split]
        features = self.encode(tokenizer, sentences, labels, max_length, data)
        predicted = self.word_tags(model, features, [words for words, _ in split], labels or [], batch_size,
                                   tokenizer.pad_token_id)
        return [{"entities": entities_with_offsets(text, offsets, tags)}
                for text, (_, offsets), tags in zip(inputs, split, predicted, strict=True)]

    def output_from_graph(self, values: dict[str, torch.Tensor]) -> TaskOutput:
        return TaskOutput(values["logits"])

    def distill_views(self, output: TaskOutput) -> list[torch.Tensor]:
        return [output.logits]  # (B, T, C)

    def distill_mask(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return batch["labels"] != IGNORE_INDEX  # (B, T): the labelled first sub-tokens

    def distill_gold(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return batch["labels"]
