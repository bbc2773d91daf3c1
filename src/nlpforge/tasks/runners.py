"""One runner per task: the common surface the training recipe, ``eval`` and ``predict`` call.

Each runner reads its file format, encodes examples into features, computes the loss of a batch,
evaluates a model on examples and turns raw predict-time inputs into JSON-ready predictions.
The task-specific work stays in tasks/classify.py, tasks/tag.py and tasks/span_qa.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlpforge.data.conll import read_conll
from nlpforge.data.examples import QAExample, TaggedSentence, TextExample
from nlpforge.data.squad import read_squad
from nlpforge.data.tabular import check_labels, label_names_of, read_text_examples
from nlpforge.errors import InputDataError
from nlpforge.inference import forward_batches
from nlpforge.tasks import classify, span_qa, tag

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


@dataclass
class DataOptions:
    """How to read the data files (stored in nlpforge.json so that eval reads files the same way)."""

    text_column: str | int = "text"
    text_pair_column: str | int | None = None
    label_column: str | int | None = "label"
    encoding: str = "utf-8"
    token_column: int = 0
    tag_column: int = -1
    articles: tuple[int, int] | None = None  # SQuAD JSON: keep data[start:stop]
    doc_stride: int = 0  # span_qa: tokens of overlap between context windows; 0 = max_length // 3
    max_answer_length: int = 0  # tokens; 0 = 100 for Chinese contexts (one token per character), else 30
    n_best: int = 20


def _model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k in MODEL_INPUTS}


class ClassifyRunner:
    metric = classify.METRIC

    def read(self, path: str | Path, data: DataOptions) -> list[TextExample]:
        return read_text_examples(path, data.text_column, data.text_pair_column, data.label_column,
                                  encoding=data.encoding)

    def label_names(self, examples: Sequence[TextExample], existing: list[str] | None) -> list[str]:
        found = label_names_of(examples)
        if not found:
            raise InputDataError("the training file has no labels; check --label-column")
        return existing or found

    def check(self, examples: Sequence[TextExample], labels: list[str], path: str | Path) -> None:
        check_labels(list(examples), labels, path)

    def encode(self, tokenizer: PreTrainedTokenizerBase, examples: Sequence[TextExample], labels: list[str],
               max_length: int, data: DataOptions) -> list[dict[str, Any]]:
        return classify.encode(tokenizer, examples, {label: i for i, label in enumerate(labels)}, max_length)

    def model_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return _model_inputs(batch)

    def class_weights(self, label_ids: Sequence[int], num_labels: int) -> torch.Tensor:
        return classify.balanced_class_weights(label_ids, num_labels)

    def loss(self, output: Any, batch: dict[str, torch.Tensor], class_weights: torch.Tensor | None) -> torch.Tensor:
        return classify.loss(output.logits, batch["labels"], class_weights)

    def logits(self, model: nn.Module, features: Sequence[dict], batch_size: int, pad_id: int) -> np.ndarray:
        out = np.zeros((len(features), model.config.num_labels), dtype=np.float32)
        for rows, output in forward_batches(model, features, batch_size, pad_id):
            out[rows] = output.logits.float().numpy()
        return out

    def evaluate(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, examples: Sequence[TextExample],
                 labels: list[str], max_length: int, batch_size: int, data: DataOptions) -> dict[str, float]:
        features = self.encode(tokenizer, examples, labels, max_length, data)
        predicted = self.logits(model, features, batch_size, tokenizer.pad_token_id).argmax(axis=-1)
        return {**classify.metrics([f["labels"] for f in features], predicted.tolist()), "examples": len(features)}

    def parse_input(self, record: dict[str, Any] | str, where: str) -> TextExample:
        if isinstance(record, str):
            return TextExample(record, None, None, 0)
        return TextExample(_text_field(record, "text", where), record.get("text_pair"), None, 0)

    def predict(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, inputs: Sequence[TextExample],
                labels: list[str], max_length: int, batch_size: int, data: DataOptions) -> list[dict[str, Any]]:
        features = classify.encode(tokenizer, inputs, None, max_length)
        return classify.decode(self.logits(model, features, batch_size, tokenizer.pad_token_id), labels)


class TagRunner:
    metric = "f1"

    def read(self, path: str | Path, data: DataOptions) -> list[TaggedSentence]:
        return read_conll(path, data.token_column, data.tag_column, data.encoding)

    def label_names(self, examples: Sequence[TaggedSentence], existing: list[str] | None) -> list[str]:
        found = sorted({t for s in examples for t in s.tags}, key=lambda t: (t != "O", t[2:], t))
        return existing or found

    def check(self, examples: Sequence[TaggedSentence], labels: list[str], path: str | Path) -> None:
        known = set(labels)
        for sentence in examples:
            for tag_name in sentence.tags:
                if tag_name not in known:
                    raise InputDataError(f"{path}:{sentence.line}: unknown tag {tag_name!r}; "
                                         f"the model knows: {', '.join(labels)}")

    def encode(self, tokenizer: PreTrainedTokenizerBase, examples: Sequence[TaggedSentence], labels: list[str],
               max_length: int, data: DataOptions) -> list[dict[str, Any]]:
        label_to_id = {label: i for i, label in enumerate(labels)}
        tags = [s.tags for s in examples] if examples and examples[0].tags else None
        return tag.encode_tagged(tokenizer, [s.tokens for s in examples], tags, label_to_id, max_length)

    def model_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return _model_inputs(batch)

    def class_weights(self, label_ids: Sequence[Sequence[int]], num_labels: int) -> torch.Tensor:
        return classify.balanced_class_weights([i for row in label_ids for i in row if i >= 0], num_labels)

    def loss(self, output: Any, batch: dict[str, torch.Tensor], class_weights: torch.Tensor | None) -> torch.Tensor:
        return F.cross_entropy(output.logits.flatten(0, 1), batch["labels"].flatten(),
                               weight=class_weights, ignore_index=tag.IGNORE_INDEX)

    def word_tags(self, model: nn.Module, features: Sequence[dict], sentences: Sequence[Sequence[str]],
                  labels: list[str], batch_size: int, pad_id: int) -> list[list[str]]:
        """The predicted tag of every word of every sentence (words cut off by max_length get O)."""
        id_to_label = dict(enumerate(labels))
        tags: list[list[str]] = [[] for _ in features]
        for rows, output in forward_batches(model, features, batch_size, pad_id):
            predicted = output.logits.argmax(dim=-1)
            for row, ids in zip(rows, predicted, strict=True):
                feature = features[row]
                tags[row] = tag.decode_word_tags(ids[: len(feature["input_ids"])].tolist(), feature["word_ids"],
                                                 id_to_label, n_words=len(sentences[row]))
        return tags

    def evaluate(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, examples: Sequence[TaggedSentence],
                 labels: list[str], max_length: int, batch_size: int, data: DataOptions) -> dict[str, Any]:
        features = self.encode(tokenizer, examples, labels, max_length, data)
        predicted = self.word_tags(model, features, [s.tokens for s in examples], labels, batch_size,
                                   tokenizer.pad_token_id)
        scheme = "BIOES" if any(t[:2] in ("E-", "S-") for t in labels) else "BIO"
        scores = tag.entity_f1([s.tags for s in examples], predicted, scheme)
        return {**{k: 100.0 * v if isinstance(v, float) else v for k, v in scores.items()},
                "sentences": len(examples)}

    def parse_input(self, record: dict[str, Any] | str, where: str) -> str:
        return record if isinstance(record, str) else _text_field(record, "text", where)

    def predict(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, inputs: Sequence[str],
                labels: list[str], max_length: int, batch_size: int, data: DataOptions) -> list[dict[str, Any]]:
        split = [tag.word_offsets(text) for text in inputs]
        sentences = [TaggedSentence(words, [], 0) for words, _ in split]
        features = self.encode(tokenizer, sentences, labels, max_length, data)
        predicted = self.word_tags(model, features, [words for words, _ in split], labels, batch_size,
                                   tokenizer.pad_token_id)
        return [{"entities": tag.entities_with_offsets(text, offsets, tags)}
                for text, (_, offsets), tags in zip(inputs, split, predicted, strict=True)]


class SpanQARunner:
    metric = "f1"

    def read(self, path: str | Path, data: DataOptions) -> list[QAExample]:
        return read_squad(path, tuple(data.articles) if data.articles else None, data.encoding)

    def label_names(self, examples: Sequence[QAExample], existing: list[str] | None) -> None:
        return None

    def check(self, examples: Sequence[QAExample], labels: list[str] | None, path: str | Path) -> None:
        return None

    def encode(self, tokenizer: PreTrainedTokenizerBase, examples: Sequence[QAExample], labels: None,
               max_length: int, data: DataOptions) -> list[dict[str, Any]]:
        """Training features: windows of the context; the answer is the first span answer."""
        answers = [next((a.text, a.start) for a in e.answers if a.start >= 0) for e in examples if e.answers]
        usable = [e for e in examples if e.answers]
        return span_qa.prepare_features(tokenizer, [e.question for e in usable], [e.context for e in usable],
                                        max_length, doc_stride(data, max_length), answers)

    def model_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return _model_inputs(batch)

    def class_weights(self, label_ids: Sequence[int], num_labels: int) -> None:
        return None

    def loss(self, output: Any, batch: dict[str, torch.Tensor], class_weights: None) -> torch.Tensor:
        return (F.cross_entropy(output.start_logits, batch["start_positions"])
                + F.cross_entropy(output.end_logits, batch["end_positions"])) / 2

    def answers(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, questions: Sequence[str],
                contexts: Sequence[str], max_length: int, batch_size: int, data: DataOptions) -> list[dict]:
        features = span_qa.prepare_features(tokenizer, questions, contexts, max_length, doc_stride(data, max_length))
        starts: list[np.ndarray] = [np.empty(0)] * len(features)
        ends: list[np.ndarray] = [np.empty(0)] * len(features)
        for rows, output in forward_batches(model, features, batch_size, tokenizer.pad_token_id):
            for i, row in enumerate(rows):
                length = len(features[row]["input_ids"])
                starts[row] = output.start_logits[i, :length].float().numpy()
                ends[row] = output.end_logits[i, :length].float().numpy()
        max_answer_length = data.max_answer_length or (100 if is_chinese(contexts) else 30)
        return span_qa.decode_answers(features, starts, ends, contexts, data.n_best, max_answer_length)

    def evaluate(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, examples: Sequence[QAExample],
                 labels: None, max_length: int, batch_size: int, data: DataOptions) -> dict[str, Any]:
        predicted = self.answers(model, tokenizer, [e.question for e in examples], [e.context for e in examples],
                                 max_length, batch_size, data)
        references = [[a.text for a in e.answers] for e in examples]
        chinese = is_chinese([e.context for e in examples])
        score = span_qa.cmrc_em_f1 if chinese else span_qa.squad_em_f1
        return {**score([p["answer"] for p in predicted], references), "questions": len(examples),
                "convention": "cmrc2018 (characters)" if chinese else "squad v1.1 (words)"}

    def parse_input(self, record: dict[str, Any] | str, where: str) -> QAExample:
        if not isinstance(record, dict):
            raise InputDataError(f"{where}: span_qa input must be a JSON object with 'question' and 'context'")
        return QAExample("", _text_field(record, "question", where), _text_field(record, "context", where), [])

    def predict(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, inputs: Sequence[QAExample],
                labels: None, max_length: int, batch_size: int, data: DataOptions) -> list[dict[str, Any]]:
        return self.answers(model, tokenizer, [e.question for e in inputs], [e.context for e in inputs],
                            max_length, batch_size, data)


def doc_stride(data: DataOptions, max_length: int) -> int:
    """The overlap between QA context windows: as given, or a third of the window (128 of 384)."""
    return data.doc_stride or max_length // 3


def is_chinese(texts: Sequence[str]) -> bool:
    """Whether most texts hold Han characters (CMRC conventions then apply)."""
    return sum(bool(_CJK.search(t)) for t in texts) > len(texts) / 2


def _text_field(record: dict[str, Any], field: str, where: str) -> str:
    value = record.get(field)
    if not isinstance(value, str) or not value.strip():
        raise InputDataError(f"{where}: field {field!r} must be a non-empty string")
    return value


TaskRunner = ClassifyRunner | TagRunner | SpanQARunner
RUNNERS: dict[str, TaskRunner] = {
    "classify": ClassifyRunner(),
    "tag": TagRunner(),
    "span_qa": SpanQARunner(),
}
