"""Extractive question answering: sliding context windows, answer spans from start/end logits, SQuAD and CMRC metrics.

A context longer than the window is cut into overlapping windows (features) of at most
``max_length`` tokens, each holding the whole question; consecutive windows share ``doc_stride``
tokens. Training marks the answer's first and last token in each window that holds all of it and
points at token 0 ([CLS] / <s>) in the others, as the Hugging Face ``run_qa`` example does.
Decoding scores (start, end) pairs of the highest-scoring context tokens of every window as
start logit + end logit and maps the best back to characters of the context through the
tokenizer's offsets.

Unanswerable questions (SQuAD 2.0: a question without answers) train every window towards token 0.
At decoding, an example's null score is the smallest start + end logit of token 0 over its windows;
with a ``null_threshold`` the answer is "" when the null score beats the best span by more than the
threshold (the official v2 script's ``na_prob`` test, with the score margin as ``na_prob``).
Training on such data holds out the questions of every tenth context and saves, as the task
setting ``null_threshold``, the threshold of best F1 on them (the script's ``find_best_thresh``);
the data option ``null_threshold`` (``--null-threshold``) overrides it.
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections import Counter
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
from nlpforge.data.examples import QAExample
from nlpforge.data.squad import read_squad
from nlpforge.errors import ConfigError, InputDataError
from nlpforge.inference import forward_batches
from nlpforge.models.outputs import SpanOutput
from nlpforge.tasks.base import DataOptions, EncoderTask, split_heldout, text_record
from nlpforge.tasks.heads import encoder_without_pooler

# The punctuation that cmrc2018_evaluate.py (v5) removes, copied character for character. Its
# list also holds "……" (two characters), which never equals the single characters it is compared
# with, so "…" is kept; "‘", ",", ".", "?", "!" and "(" are not in the list and are kept too.
CMRC_PUNCTUATION = frozenset(
    "-:_*^/\\~`+="
    "，。：？！“”；’《》·、"
    "「」（）－～『』"
)
_CJK_CHAR = re.compile(r"[\u4e00-\u9fa5]")  # the official script's test for a Chinese character
# Stands in for nltk.word_tokenize on the non-Chinese runs: words (with inner . or , as in 3.5 and
# 1,000) and each other symbol on its own.
_MIXED_TOKEN = re.compile(r"\w+(?:[.,]\w+)*|\S")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


def loss(start_logits: torch.Tensor, end_logits: torch.Tensor, start_positions: torch.Tensor,
         end_positions: torch.Tensor) -> torch.Tensor:
    """Mean of the start and end cross-entropies: (B, T) logits against (B,) token positions."""
    return (F.cross_entropy(start_logits, start_positions) + F.cross_entropy(end_logits, end_positions)) / 2


class SpanExtractor(nn.Module):
    """Question + context -> (B, T) start and end logits of the answer span (``*ForQuestionAnswering``)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder_without_pooler(config)
        self.head = nn.ModuleDict({"out": nn.Linear(config.hidden_size, 2)})

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        head_mask: Sequence[torch.Tensor] | torch.Tensor | None = None,  # per layer (A_layer,) gates
        packed: bool = False,  # inference on real tokens only (models/bert.py)
    ) -> SpanOutput:
        encoded = self.encoder(input_ids, attention_mask, token_type_ids, output_hidden_states, output_attentions,
                               head_mask=head_mask, packed=packed)
        start_logits, end_logits = self.head["out"](encoded.last_hidden_state).unbind(dim=-1)  # 2 x (B, T)
        span_loss = None
        if start_positions is not None and end_positions is not None:
            span_loss = loss(start_logits, end_logits, start_positions, end_positions)
        return SpanOutput(start_logits, end_logits, span_loss, encoded.hidden_states, encoded.attentions)


# ---------------------------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------------------------


def prepare_features(
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    contexts: Sequence[str],
    max_length: int = 384,
    doc_stride: int = 128,
    answers: Sequence[tuple[str, int] | None] | None = None,
) -> list[dict]:
    """Question + context windows, one dict per window (feature), several per long context.

    Each feature has ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the tokenizer
    makes them), ``example_index`` (into ``questions``), ``offsets`` (the (start, end) characters
    in the context of each token, None for question and special tokens) and, with ``answers``
    (one ``(text, start character)`` per example, None for an unanswerable one),
    ``start_positions`` / ``end_positions``: the first and last token of the answer, or both 0 when
    the window does not hold all of it (or there is none).
    Lists are unpadded. Assumes a right-padding tokenizer (question first, then context), as
    BERT, RoBERTa/XLM-R and their kin are.
    """
    if not tokenizer.is_fast:
        raise ConfigError(f"{type(tokenizer).__name__} is not a fast tokenizer; QA needs its offset mapping")
    if not 0 <= doc_stride < max_length:
        raise ConfigError(f"doc stride must be >= 0 and below max length ({max_length}), got {doc_stride}")
    encoding = tokenizer(
        [question.lstrip() for question in questions],  # leading spaces would only take window room
        list(contexts),
        truncation="only_second",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )
    features = []
    for index, example_index in enumerate(encoding["overflow_to_sample_mapping"]):
        sequence_ids = encoding.sequence_ids(index)  # 0 question, 1 context, None special
        offsets = [
            tuple(span) if sequence == 1 else None
            for span, sequence in zip(encoding["offset_mapping"][index], sequence_ids, strict=True)
        ]
        feature = {name: encoding[name][index] for name in ("input_ids", "attention_mask", "token_type_ids")
                   if name in encoding}
        feature["example_index"] = example_index
        feature["offsets"] = offsets
        if answers is not None:
            answer = answers[example_index]
            feature["start_positions"], feature["end_positions"] = (0, 0) if answer is None else answer_positions(
                offsets, answer[1], answer[1] + len(answer[0])
            )
        features.append(feature)
    return features


def answer_positions(offsets: Sequence[tuple[int, int] | None], start_char: int, end_char: int) -> tuple[int, int]:
    """First and last token of the characters [start_char, end_char) in one window, or (0, 0).

    The first token is the last context token starting at or before ``start_char``, the last
    token the first one from there ending at or after ``end_char``; (0, 0) when the window's
    context does not cover the whole answer.
    """
    context = [i for i, span in enumerate(offsets) if span is not None]
    if not context or offsets[context[0]][0] > start_char or offsets[context[-1]][1] < end_char:
        return 0, 0
    start = max(i for i in context if offsets[i][0] <= start_char)
    end = min(i for i in context if i >= start and offsets[i][1] >= end_char)
    return start, end


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


def best_spans(
    start_logits: Sequence[float] | np.ndarray,
    end_logits: Sequence[float] | np.ndarray,
    offsets: Sequence[tuple[int, int] | None],
    n_best: int = 20,
    max_answer_length: int = 30,
) -> list[tuple[float, int, int]]:
    """The ``n_best`` best (score, char start, char end) answer spans of one feature, best first.

    Candidates pair the ``n_best`` context tokens with the highest start logits with the
    ``n_best`` with the highest end logits (question and special tokens, whose offsets are None,
    never take a place), keeping start <= end and at most ``max_answer_length`` tokens.
    Score = start logit + end logit. Logits may be padded beyond ``len(offsets)``; that part is
    never used. The same character span reached from different tokens is kept once, at its best.
    """
    context = np.array([span is not None for span in offsets], dtype=bool)  # (T,)
    start_logits = np.asarray(start_logits, dtype=np.float64)[: len(offsets)]  # (T,)
    end_logits = np.asarray(end_logits, dtype=np.float64)[: len(offsets)]  # (T,)
    k = min(n_best, int(context.sum()))
    top_starts = np.argsort(np.where(context, -start_logits, np.inf), kind="stable")[:k]  # best first
    top_ends = np.argsort(np.where(context, -end_logits, np.inf), kind="stable")[:k]
    spans: dict[tuple[int, int], float] = {}
    for start in top_starts:
        for end in top_ends:
            if end < start or end - start + 1 > max_answer_length:
                continue
            span = (offsets[start][0], offsets[end][1])
            score = float(start_logits[start] + end_logits[end])
            spans[span] = max(score, spans.get(span, score))
    ranked = sorted(spans.items(), key=lambda item: item[1], reverse=True)[:n_best]
    return [(score, start, end) for (start, end), score in ranked]


def decode_answers(
    features: Sequence[dict],
    all_start_logits: Sequence[Sequence[float]] | np.ndarray,
    all_end_logits: Sequence[Sequence[float]] | np.ndarray,
    contexts: Sequence[str],
    n_best: int = 20,
    max_answer_length: int = 30,
    null_threshold: float | None = None,
) -> list[dict]:
    """One ``{"answer", "score", "probability", "start", "end", "null_score"}`` per context, from all its windows.

    The windows of an example pool their ``best_spans`` (a span found in several windows keeps
    its best score); the top ``n_best`` pooled spans are ranked by score = start + end logit, and
    ``probability`` is the best one's softmax over those ``n_best`` scores. ``null_score`` is the
    smallest token-0 score (start + end logit) over the windows. With ``null_threshold``, an
    example whose ``null_score - score`` exceeds it gets answer "" (``no_answer`` True, and the
    best span kept as ``span``). An example without any valid span gets answer "" and None for
    score, probability, start and end.
    """
    pooled: list[dict[tuple[int, int], float]] = [{} for _ in contexts]
    null_scores = [np.inf] * len(contexts)
    for feature, start_logits, end_logits in zip(features, all_start_logits, all_end_logits, strict=True):
        index = feature["example_index"]
        spans = pooled[index]
        null_scores[index] = min(null_scores[index], float(start_logits[0] + end_logits[0]))
        for score, start, end in best_spans(start_logits, end_logits, feature["offsets"], n_best, max_answer_length):
            spans[(start, end)] = max(score, spans.get((start, end), score))
    answers = []
    for context, spans, null_score in zip(contexts, pooled, null_scores, strict=True):
        null = float(null_score) if np.isfinite(null_score) else None
        if not spans:
            answers.append({"answer": "", "score": None, "probability": None, "start": None, "end": None,
                            "null_score": null, "no_answer": True})
            continue
        ranked = sorted(spans.items(), key=lambda item: item[1], reverse=True)[:n_best]
        scores = np.array([score for _, score in ranked])  # (K,)
        probabilities = np.exp(scores - scores.max())
        (start, end), score = ranked[0]
        answer = {"answer": context[start:end], "score": score,
                  "probability": float(probabilities[0] / probabilities.sum()), "start": start, "end": end,
                  "null_score": null}
        if null_threshold is not None and null is not None and null - score > null_threshold:
            answer = {**answer, "span": answer["answer"], "answer": "", "start": None, "end": None, "no_answer": True}
        answers.append(answer)
    return answers


# ---------------------------------------------------------------------------------------------
# Metric
# ---------------------------------------------------------------------------------------------


def _check_references(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    """Raise ValueError unless there is one non-empty list of gold answers per prediction."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    for index, golds in enumerate(references):
        if not golds:
            raise ValueError(f"example {index} has no reference answer")


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower case, drop ASCII punctuation, drop a/an/the, collapse whitespace."""
    text = "".join(char for char in text.lower() if char not in string.punctuation)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_f1(prediction: str, gold: str) -> float:
    """SQuAD v1.1 token F1 (0-1) of one prediction against one gold answer, on normalised words."""
    prediction_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(prediction_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(prediction_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_em_f1(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict:
    """``{"exact_match", "f1", "total"}`` as the official SQuAD v1.1 evaluate script computes them.

    Per question the best over its gold answers of exact match and token F1 after
    ``normalize_answer``; the means over questions as percentages (0-100).
    """
    _check_references(predictions, references)
    if not predictions:
        return {"exact_match": 0.0, "f1": 0.0, "total": 0}
    exact = sum(max(float(normalize_answer(p) == normalize_answer(g)) for g in golds)
                for p, golds in zip(predictions, references, strict=True))
    f1 = sum(max(squad_f1(p, g) for g in golds) for p, golds in zip(predictions, references, strict=True))
    return {"exact_match": 100.0 * exact / len(predictions), "f1": 100.0 * f1 / len(predictions),
            "total": len(predictions)}


def squad_v2_scores(predictions: Sequence[str], spans: Sequence[str], margins: Sequence[float | None],
                    references: Sequence[Sequence[str]], threshold: float) -> dict:
    """SQuAD 2.0 scores as the official v2 script computes them, in percent.

    ``references[i]`` empty means unanswerable (gold ""); ``predictions`` are the answers given
    (at ``threshold``), ``spans`` the best span of each question and ``margins`` its null score
    minus the span's score (the script's ``na_prob``; None: no span). Returns overall, HasAns and
    NoAns exact match / F1 and counts, and ``best_f1`` / ``best_f1_threshold``: the F1 and margin
    threshold that answering exactly the questions with margin <= threshold would give (the
    script's ``find_best_thresh``) - choose the threshold so on training data, not on the report split.
    """

    def scored(golds: Sequence[str]) -> list[str]:
        # the script drops gold answers that normalise to nothing ("the", "."); none left: gold ""
        return [g for g in golds if normalize_answer(g)]

    def exact(prediction: str, golds: Sequence[str]) -> float:
        return max(float(normalize_answer(prediction) == normalize_answer(g)) for g in (scored(golds) or [""]))

    def f1(prediction: str, golds: Sequence[str]) -> float:
        golds = scored(golds)
        if not golds:  # gold "": right only when nothing is answered
            return float(not normalize_answer(prediction).split())
        if not normalize_answer(prediction).split():
            return 0.0
        return max(squad_f1(prediction, g) for g in golds)

    if not (len(predictions) == len(spans) == len(margins) == len(references)):
        raise ValueError("predictions, spans, margins and references must have one entry per question")
    has = [bool(golds) for golds in references]
    exacts = [exact(p, g) for p, g in zip(predictions, references, strict=True)]
    f1s = [f1(p, g) for p, g in zip(predictions, references, strict=True)]

    def mean(values: Sequence[float], keep: Sequence[bool]) -> float:
        kept = [v for v, k in zip(values, keep, strict=True) if k]
        return 100.0 * sum(kept) / len(kept) if kept else 0.0

    everything = [True] * len(references)
    # find_best_thresh on F1: start from answering nothing, answer questions in order of margin
    span_f1 = [f1(span, golds) for span, golds in zip(spans, references, strict=True)]
    order = sorted(range(len(references)), key=lambda i: np.inf if margins[i] is None else margins[i])
    current = best = float(sum(not h for h in has))
    best_threshold = min((m for m in margins if m is not None), default=0.0) - 1.0
    for i in order:
        if margins[i] is None:
            break
        current += span_f1[i] if has[i] else -float(bool(normalize_answer(spans[i]).split()))
        if current > best:
            best, best_threshold = current, margins[i]
    return {"exact_match": mean(exacts, everything), "f1": mean(f1s, everything), "total": len(references),
            "HasAns_exact": mean(exacts, has), "HasAns_f1": mean(f1s, has), "HasAns_total": sum(has),
            "NoAns_exact": mean(exacts, [not h for h in has]), "NoAns_f1": mean(f1s, [not h for h in has]),
            "NoAns_total": len(has) - sum(has), "threshold": threshold,
            "best_f1": 100.0 * best / max(len(references), 1), "best_f1_threshold": float(best_threshold)}


def spans_and_margins(predicted: Sequence[dict]) -> tuple[list[str], list[float | None]]:
    """The best span of each ``decode_answers`` answer (also when it abstained) and its null score
    minus the span's score (None: no span): the inputs of ``squad_v2_scores``."""
    spans = [p.get("span", p["answer"]) for p in predicted]
    margins = [None if p["score"] is None or p["null_score"] is None else p["null_score"] - p["score"]
               for p in predicted]
    return spans, margins


def cmrc_segments(text: str) -> list[str]:
    """The official CMRC 2018 ``mixed_segmentation(text, rm_punc=True)``.

    Lower-cased and stripped; the characters of ``CMRC_PUNCTUATION`` are dropped (without ending
    the run they sit in, so "covid-19" stays one token); each Chinese character is a segment; the
    runs between them are tokenised like English (``nltk.word_tokenize`` there, a regex here:
    whitespace-separated words, with symbols such as "(" "," "%" split off, "3.5" kept whole).
    """
    segments = []
    run = ""
    for char in text.lower().strip():
        if char in CMRC_PUNCTUATION:
            continue
        if _CJK_CHAR.match(char):
            segments.extend(_MIXED_TOKEN.findall(run))
            run = ""
            segments.append(char)
        else:
            run += char
    segments.extend(_MIXED_TOKEN.findall(run))
    return segments


def longest_common_run(first: Sequence[str], second: Sequence[str]) -> int:
    """Length of the longest contiguous run of segments found in both (the official ``find_lcs``)."""
    best = 0
    previous = [0] * (len(second) + 1)
    for a in first:
        current = [0] * (len(second) + 1)
        for j, b in enumerate(second):
            if a == b:
                current[j + 1] = previous[j] + 1
                best = max(best, current[j + 1])
        previous = current
    return best


def cmrc_f1(prediction: str, gold: str) -> float:
    """CMRC 2018 F1 (0-1): longest common run of segments over the prediction's and the gold's lengths."""
    prediction_segments, gold_segments = cmrc_segments(prediction), cmrc_segments(gold)
    common = longest_common_run(gold_segments, prediction_segments)
    if common == 0:
        return 0.0
    precision, recall = common / len(prediction_segments), common / len(gold_segments)
    return 2 * precision * recall / (precision + recall)


def cmrc_normalize(text: str) -> str:
    """The official CMRC 2018 ``remove_punctuation``: lower case, strip, drop ``CMRC_PUNCTUATION``."""
    return "".join(char for char in text.lower().strip() if char not in CMRC_PUNCTUATION)


def cmrc_em_f1(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict:
    """``{"exact_match", "f1", "average", "total"}`` as the official cmrc2018_evaluate.py (v5) computes them.

    Reproduced: EM compares ``cmrc_normalize`` of prediction and gold (inner whitespace counts;
    ASCII punctuation other than ``-:_*^/\\~`+=`` counts); F1 is ``cmrc_f1`` on ``cmrc_segments``
    (Chinese characters one by one, other runs as words); both take the best gold answer and are
    averaged over questions as percentages (0-100); "average" is (EM + F1) / 2, the leaderboard's
    number. Differs only where nltk's tokenizer would split a non-Chinese run otherwise than the
    regex (contractions such as "don't", abbreviations such as "u.s." inside a sentence).
    """
    _check_references(predictions, references)
    if not predictions:
        return {"exact_match": 0.0, "f1": 0.0, "average": 0.0, "total": 0}
    exact = sum(max(float(cmrc_normalize(p) == cmrc_normalize(g)) for g in golds)
                for p, golds in zip(predictions, references, strict=True))
    f1 = sum(max(cmrc_f1(p, g) for g in golds) for p, golds in zip(predictions, references, strict=True))
    exact, f1 = 100.0 * exact / len(predictions), 100.0 * f1 / len(predictions)
    return {"exact_match": exact, "f1": f1, "average": (exact + f1) / 2, "total": len(predictions)}


# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------


def doc_stride(data: DataOptions, max_length: int) -> int:
    """The overlap between QA context windows: as given, or a third of the window (128 of 384)."""
    return data.doc_stride or max_length // 3


def is_chinese(texts: Sequence[str]) -> bool:
    """Whether most texts hold Han characters (CMRC conventions then apply)."""
    return sum(bool(_CJK.search(t)) for t in texts) > len(texts) / 2


@dataclass
class SpanQATask(EncoderTask):
    """Extractive QA over SQuAD v1.1 / CMRC 2018 JSON: answer + score + character offsets; EM / F1.

    ``null_threshold``: learnt on SQuAD 2.0-style training data (see the module doc); None: a reader
    trained on answerable questions only, which always answers.
    """

    null_threshold: float | None = None

    name: ClassVar[str] = "span_qa"
    head: ClassVar[str] = "span_qa"
    model_class: ClassVar[type[nn.Module]] = SpanExtractor
    metric: ClassVar[str] = "f1"
    output_names: ClassVar[tuple[str, ...]] = ("start_logits", "end_logits")
    warmup_input: ClassVar[Any] = {"question": "what?", "context": "warm up"}
    input_schema: ClassVar[dict[str, Any]] = {
        "type": "object", "required": ["question", "context"], "additionalProperties": False,
        "properties": {"question": {"type": "string"}, "context": {"type": "string"}}}
    per_token_views: ClassVar[bool] = True

    HELDOUT_EVERY: ClassVar[int] = 10  # SQuAD 2.0-style data: the questions of every 10th context tune

    def heldout_split(self, examples: Sequence[QAExample]) -> tuple[list[QAExample], list[QAExample]]:
        """Data with unanswerable questions: the questions of every tenth context (whole contexts, so the
        threshold is chosen on text the reader did not train on) are held out to choose the no-answer
        threshold; otherwise nothing is held out."""
        if all(e.answers for e in examples):
            return list(examples), []
        contexts = list(dict.fromkeys(e.context for e in examples))  # in file order
        _, heldout_contexts = split_heldout(contexts, 1 / self.HELDOUT_EVERY)
        held = set(heldout_contexts)
        return [e for e in examples if e.context not in held], [e for e in examples if e.context in held]

    def tune(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, heldout: Sequence[QAExample],
             labels: list[str] | None, max_length: int, batch_size: int, data: DataOptions) -> SpanQATask:
        """This task with the no-answer threshold of best F1 on ``heldout`` (``heldout_split`` holds
        questions out of SQuAD 2.0-style data only; unchanged without any)."""
        if not heldout:
            return self
        references = [[a.text for a in e.answers] for e in heldout]
        if all(references):  # no unanswerable question among them: answer when a span beats the null score
            return dataclasses.replace(self, null_threshold=0.0)
        predicted = self.answers(model, tokenizer, [e.question for e in heldout], [e.context for e in heldout],
                                 max_length, batch_size, data)
        spans, margins = spans_and_margins(predicted)
        scores = squad_v2_scores(spans, spans, margins, references, 0.0)
        return dataclasses.replace(self, null_threshold=scores["best_f1_threshold"])

    def threshold(self, data: DataOptions) -> float | None:
        """The no-answer threshold in force: the data option's (--null-threshold), else the learnt one."""
        return data.null_threshold if data.null_threshold is not None else self.null_threshold

    def read(self, path: str | Path, data: DataOptions) -> list[QAExample]:
        return read_squad(path, tuple(data.articles) if data.articles else None, data.encoding)

    def label_names(self, examples: Sequence[QAExample], existing: list[str] | None) -> None:
        return None

    def check(self, examples: Sequence[QAExample], labels: list[str] | None, path: str | Path) -> None:
        return None

    def encode(self, tokenizer: PreTrainedTokenizerBase, examples: Sequence[QAExample], labels: list[str] | None,
               max_length: int, data: DataOptions) -> list[dict[str, Any]]:
        """Training features: windows of the context; the answer is the first span answer (none for an
        unanswerable question: every window points at token 0)."""
        answers = [next(((a.text, a.start) for a in e.answers if a.start >= 0), None) for e in examples]
        return prepare_features(tokenizer, [e.question for e in examples], [e.context for e in examples],
                                max_length, doc_stride(data, max_length), answers)

    def collate(self, features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        batch = super().collate(features, pad_id)
        for key in ("start_positions", "end_positions"):
            if key in features[0]:
                batch[key] = torch.tensor([f[key] for f in features])  # (B,)
        return batch

    def loss(self, output: SpanOutput, batch: dict[str, torch.Tensor],
             class_weights: torch.Tensor | None) -> torch.Tensor:
        return loss(output.start_logits, output.end_logits, batch["start_positions"], batch["end_positions"])

    def answers(self, model: Any, tokenizer: PreTrainedTokenizerBase, questions: Sequence[str],
                contexts: Sequence[str], max_length: int, batch_size: int, data: DataOptions) -> list[dict]:
        features = prepare_features(tokenizer, questions, contexts, max_length, doc_stride(data, max_length))
        starts: list[np.ndarray] = [np.empty(0)] * len(features)
        ends: list[np.ndarray] = [np.empty(0)] * len(features)
        for rows, output in forward_batches(model, features, batch_size, tokenizer.pad_token_id):
            for i, row in enumerate(rows):
                length = len(features[row]["input_ids"])
                starts[row] = output.start_logits[i, :length].float().numpy()
                ends[row] = output.end_logits[i, :length].float().numpy()
        max_answer_length = data.max_answer_length or (100 if is_chinese(contexts) else 30)
        return decode_answers(features, starts, ends, contexts, data.n_best, max_answer_length, self.threshold(data))

    def evaluate(self, model: Any, tokenizer: PreTrainedTokenizerBase, examples: Sequence[QAExample],
                 labels: list[str] | None, max_length: int, batch_size: int, data: DataOptions) -> dict[str, Any]:
        references = [[a.text for a in e.answers] for e in examples]
        unanswerable = not all(references)  # SQuAD 2.0 data: "" is the right answer to some questions
        if unanswerable and self.threshold(data) is None:
            data = dataclasses.replace(data, null_threshold=0.0)
        predicted = self.answers(model, tokenizer, [e.question for e in examples], [e.context for e in examples],
                                 max_length, batch_size, data)
        if unanswerable:
            spans, margins = spans_and_margins(predicted)
            return {**squad_v2_scores([p["answer"] for p in predicted], spans, margins, references,
                                      self.threshold(data)),
                    "questions": len(examples), "convention": "squad v2.0 (words, unanswerable questions)"}
        chinese = is_chinese([e.context for e in examples])
        score = cmrc_em_f1 if chinese else squad_em_f1
        return {**score([p["answer"] for p in predicted], references), "questions": len(examples),
                "convention": "cmrc2018 (characters)" if chinese else "squad v1.1 (words)"}

    def parse_input(self, record: Any, where: str) -> QAExample:
        values = text_record(record, where, ("question", "context"), bare=False)
        return QAExample("", values["question"], values["context"], [])

    def check_input(self, parsed: QAExample, tokenizer: PreTrainedTokenizerBase, max_length: int,
                    data: DataOptions, where: str) -> None:
        """The question must leave room in a window for the context and its overlap with the next one."""
        room = max_length - doc_stride(data, max_length) - 3  # [CLS] question [SEP] context [SEP]
        tokens = len(tokenizer(parsed.question.lstrip(), add_special_tokens=False)["input_ids"])
        if tokens >= room:
            raise InputDataError(f"{where}.question: {tokens} tokens; a question may take at most {room - 1} of "
                                 f"the model's {max_length}-token window (the rest holds the context); shorten it")

    def predict(self, model: Any, tokenizer: PreTrainedTokenizerBase, inputs: Sequence[QAExample],
                labels: list[str] | None, max_length: int, batch_size: int, data: DataOptions) -> list[dict]:
        return self.answers(model, tokenizer, [e.question for e in inputs], [e.context for e in inputs],
                            max_length, batch_size, data)

    def output_from_graph(self, values: dict[str, torch.Tensor]) -> SpanOutput:
        return SpanOutput(values["start_logits"], values["end_logits"])

    def distill_views(self, output: SpanOutput) -> list[torch.Tensor]:
        return [output.start_logits, output.end_logits]  # 2 x (B, T): distributions over tokens
