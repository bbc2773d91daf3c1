"""Multiple-choice reading comprehension: one score per (passage, question, option), softmax over options.

Each option is encoded as ``[CLS] passage [SEP] question option [SEP]`` (the passage truncated
first), the encoder reads every option of a question, the head (pooler dense + tanh + a linear
to one score, as transformers' ``*ForMultipleChoice``) scores each, and cross-entropy over the
options trains it. Questions may have different numbers of options (C3: 2 to 4): a batch pads
them to its largest count and masks the padding out of the softmax.

Data: the C3 JSON layout (``[[passage sentences], [{"question", "choice": [...], "answer"}], id]``,
a list of those; the answer is the text of one choice) or JSON lines ``{"context", "question",
"choices", "answer"}`` (the answer as a choice's text or its 0-based index).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlpforge.config import ModelConfig
from nlpforge.data.collate import length_sorted_batches
from nlpforge.data.text import json_objects, read_text
from nlpforge.device import model_device, to_device
from nlpforge.errors import InputDataError
from nlpforge.models.outputs import TaskOutput
from nlpforge.tasks.base import DataOptions, EncoderTask, SoftmaxLogitsTask
from nlpforge.tasks.heads import ClassificationHead, encoder_without_pooler


@dataclass
class ChoiceExample:
    """A question about a passage with its options; ``answer`` is the right option's index (None: unknown)."""

    context: str
    question: str
    choices: list[str]
    answer: int | None = None


def _answer_index(answer: Any, choices: list[str], where: str) -> int:
    if isinstance(answer, int) and not isinstance(answer, bool):
        if not 0 <= answer < len(choices):
            raise InputDataError(f"{where}: answer index {answer} is outside the {len(choices)} choices")
        return answer
    if isinstance(answer, str) and answer in choices:
        return choices.index(answer)
    raise InputDataError(f"{where}: the answer {answer!r} is not one of the choices {choices}")


def _example(context: Any, question: Any, choices: Any, answer: Any, where: str) -> ChoiceExample:
    if not isinstance(context, str) or not isinstance(question, str):
        raise InputDataError(f"{where}: context and question must be strings")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
        raise InputDataError(f"{where}: choices must be a list of at least two non-empty strings")
    return ChoiceExample(context, question, choices, None if answer is None else _answer_index(answer, choices, where))


def read_choices(path: str | Path, encoding: str = "utf-8") -> list[ChoiceExample]:
    """C3 JSON (a list of ``[sentences, questions, id]``) or JSON lines of ``{"context", "question",
    "choices", "answer"}``; errors name the file and the entry or line."""
    path = Path(path)
    text = read_text(path, encoding)
    stripped = text.lstrip()
    examples: list[ChoiceExample] = []
    if stripped.startswith("["):  # C3
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputDataError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
        for d, entry in enumerate(document):
            where = f"{path}: entry {d}"
            if not (isinstance(entry, list) and len(entry) >= 2 and isinstance(entry[0], list)
                    and isinstance(entry[1], list)):
                raise InputDataError(f"{where}: expected [[passage sentences], [questions], id] (the C3 layout)")
            context = "\n".join(str(sentence) for sentence in entry[0])
            for q, item in enumerate(entry[1]):
                if not isinstance(item, dict):
                    raise InputDataError(f"{where}, question {q}: expected an object with question, choice, answer")
                examples.append(_example(context, item.get("question"), item.get("choice"), item.get("answer"),
                                         f"{where}, question {q}"))
    else:
        for number, record in json_objects(path, text, '{"context", "question", "choices", "answer"}'):
            examples.append(_example(record.get("context"), record.get("question"), record.get("choices"),
                                     record.get("answer"), f"{path}:{number}"))
    if not examples:
        raise InputDataError(f"{path}: holds no questions")
    return examples


class MultipleChoiceModel(nn.Module):
    """(B, C, T) options -> (B, C) scores (``*ForMultipleChoice``); padded options score the minimum."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder_without_pooler(config)
        self.head = ClassificationHead(dataclasses.replace(config, num_labels=1))  # one score per option

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        choice_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> TaskOutput:
        B, C, T = input_ids.shape
        flat = [x.reshape(B * C, T) if x is not None else None for x in (input_ids, attention_mask, token_type_ids)]
        encoded = self.encoder(flat[0], flat[1], flat[2], output_hidden_states, output_attentions)
        logits = self.head(encoded.last_hidden_state[:, 0]).view(B, C)  # (B, C)
        if choice_mask is not None:
            logits = logits.masked_fill(~choice_mask.bool(), torch.finfo(logits.dtype).min)
        return TaskOutput(logits, F.cross_entropy(logits, labels) if labels is not None else None,
                          encoded.hidden_states, encoded.attentions)


def encode_choices(tokenizer: PreTrainedTokenizerBase, examples: Sequence[ChoiceExample],
                   max_length: int) -> list[dict[str, Any]]:
    """Per example the token ids of each option, ``[CLS] passage [SEP] question option [SEP]``."""
    features = []
    for example in examples:
        encoded = tokenizer([example.context] * len(example.choices),
                            [f"{example.question} {choice}" for choice in example.choices],
                            truncation="longest_first", max_length=max_length)
        feature = {key: encoded[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded}
        if example.answer is not None:
            feature["labels"] = example.answer
        features.append(feature)
    return features


def collate_choices(features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """(B, C_max, T_max) inputs and a (B, C_max) choice mask; a padded option holds one visible pad
    token (an all-masked row would make attention divide by zero)."""
    choices = max(len(f["input_ids"]) for f in features)
    width = max(len(ids) for f in features for ids in f["input_ids"])
    batch = {"input_ids": torch.full((len(features), choices, width), pad_id, dtype=torch.long),
             "attention_mask": torch.zeros((len(features), choices, width), dtype=torch.long),
             "choice_mask": torch.zeros((len(features), choices), dtype=torch.bool)}
    if "token_type_ids" in features[0]:
        batch["token_type_ids"] = torch.zeros((len(features), choices, width), dtype=torch.long)
    for b, feature in enumerate(features):
        batch["attention_mask"][b, :, 0] = 1
        for c, ids in enumerate(feature["input_ids"]):
            batch["input_ids"][b, c, :len(ids)] = torch.tensor(ids)
            batch["attention_mask"][b, c, :len(ids)] = torch.tensor(feature["attention_mask"][c])
            if "token_type_ids" in batch:
                batch["token_type_ids"][b, c, :len(ids)] = torch.tensor(feature["token_type_ids"][c])
            batch["choice_mask"][b, c] = True
    if "labels" in features[0]:
        batch["labels"] = torch.tensor([f["labels"] for f in features])  # (B,)
    return batch


@dataclass
class MultipleChoiceTask(SoftmaxLogitsTask, EncoderTask):
    """Pick the right option of a question about a passage: accuracy."""

    name: ClassVar[str] = "multiple_choice"
    head: ClassVar[str] = "multiple_choice"
    model_class: ClassVar[type[nn.Module]] = MultipleChoiceModel
    metric: ClassVar[str] = "accuracy"
    output_names: ClassVar[tuple[str, ...]] = ("logits",)
    onnx_inputs: ClassVar[bool] = False  # (B, options, T) inputs
    warmup_input: ClassVar[Any] = {"context": "warm up", "question": "what?", "choices": ["a", "b"]}
    input_schema: ClassVar[dict[str, Any]] = {
        "type": "object", "required": ["context", "question", "choices"], "additionalProperties": False,
        "properties": {"context": {"type": "string"}, "question": {"type": "string"},
                       "choices": {"type": "array", "minItems": 2, "items": {"type": "string", "minLength": 1}}}}

    def read(self, path: str | Path, data: DataOptions) -> list[ChoiceExample]:
        return read_choices(path, data.encoding)

    def label_names(self, examples: Sequence[ChoiceExample], existing: list[str] | None) -> None:
        return None

    def check(self, examples: Sequence[ChoiceExample], labels: list[str] | None, path: str | Path) -> None:
        missing = sum(e.answer is None for e in examples)
        if missing:
            raise InputDataError(f"{path}: {missing} question(s) have no answer; every training and evaluation "
                                 "question needs one")

    def encode(self, tokenizer: PreTrainedTokenizerBase, examples: Sequence[ChoiceExample], labels: list[str] | None,
               max_length: int, data: DataOptions) -> list[dict[str, Any]]:
        return encode_choices(tokenizer, examples, max_length)

    def collate(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        return collate_choices(features, pad_id)

    def padded_length(self, feature: dict[str, Any]) -> int:
        return max(len(ids) for ids in feature["input_ids"])  # the longest option's tokens (T_max)

    def model_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids",
                                                         "choice_mask")}

    def loss(self, output: TaskOutput, batch: dict[str, torch.Tensor],
             class_weights: torch.Tensor | None) -> torch.Tensor:
        return F.cross_entropy(output.logits, batch["labels"])

    def choice_logits(self, model: Any, tokenizer: PreTrainedTokenizerBase, examples: Sequence[ChoiceExample],
                      max_length: int, batch_size: int) -> list[np.ndarray]:
        """Per example its (C,) option scores; batches group examples of similar length (less padding)."""
        features = encode_choices(tokenizer, examples, max_length)
        model.eval()
        device = model_device(model)
        scores: list[np.ndarray] = [np.empty(0)] * len(features)
        with torch.inference_mode():
            for rows in length_sorted_batches([self.padded_length(f) for f in features], batch_size):
                chunk = [features[i] for i in rows]
                batch = to_device(self.model_inputs(collate_choices(chunk, tokenizer.pad_token_id)), device)
                logits = model(**batch).logits.float().cpu().numpy()  # (B, C_max)
                for i, row, feature in zip(rows, logits, chunk, strict=True):
                    scores[i] = row[:len(feature["input_ids"])]
        return scores

    def evaluate(self, model: Any, tokenizer: PreTrainedTokenizerBase, examples: Sequence[ChoiceExample],
                 labels: list[str] | None, max_length: int, batch_size: int, data: DataOptions) -> dict[str, Any]:
        scores = self.choice_logits(model, tokenizer, examples, max_length, batch_size)
        right = sum(int(row.argmax()) == e.answer for row, e in zip(scores, examples, strict=True))
        return {"accuracy": 100.0 * right / max(len(examples), 1), "questions": len(examples)}

    def parse_input(self, record: Any, where: str) -> ChoiceExample:
        if not isinstance(record, dict):
            raise InputDataError(f'{where}: must be an object {{"context", "question", "choices"}}')
        unknown = sorted(set(record) - {"context", "question", "choices"})
        if unknown:
            raise InputDataError(f"{where}.{unknown[0]}: unknown field; give context, question and choices")
        return _example(record.get("context"), record.get("question"), record.get("choices"), None, where)

    def predict(self, model: Any, tokenizer: PreTrainedTokenizerBase, inputs: Sequence[ChoiceExample],
                labels: list[str] | None, max_length: int, batch_size: int, data: DataOptions) -> list[dict]:
        results = []
        for row, example in zip(self.choice_logits(model, tokenizer, inputs, max_length, batch_size), inputs,
                                strict=True):
            probabilities = torch.from_numpy(row).softmax(dim=-1).numpy()
            best = int(probabilities.argmax())
            results.append({"answer": example.choices[best], "index": best, "score": float(probabilities[best]),
                            "scores": [float(p) for p in probabilities]})
        return results
