"""Cloze prompts (PET, Schick & Schütze 2021; LM-BFF, Gao et al. 2021): classification as filling a
masked slot with a word that stands for a label.

    template    "{text}总之很{mask}。"            (``{text_pair}`` for pairs; ``{mask}`` once)
    verbalizer  {"1": ["好"], "0": ["差"]}        (label -> words, each a single token)
    score(label | text) = mean over the label's words w of the MLM logit of w at the mask

The label scores of one template are its (B, C) logits; several templates are ensembled by the
mean of their log-softmax. Training minimises the cross-entropy of those logits (PET's loss), so
the masked-LM head does the classifying: no new parameters, which is why it works from a handful
of examples. Logits are computed at the mask position only: (B, H) -> (B, V), not (B, T, V).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase

from nlpforge.data.collate import collate_inputs, length_sorted_batches
from nlpforge.errors import ConfigError, InputDataError

TEXT, TEXT_PAIR, MASK = "{text}", "{text_pair}", "{mask}"


def parse_verbalizer(value: str | dict[str, Any], flag: str = "--verbalizer") -> dict[str, list[str]]:
    """``"1=好|棒,0=差"`` (or a mapping, e.g. from YAML) -> {"1": ["好", "棒"], "0": ["差"]}; ``flag``
    names the option in errors (the same syntax gives ``fewshot --label-text`` its texts)."""
    if isinstance(value, dict):
        return {str(label): [words] if isinstance(words, str) else [str(w) for w in words]
                for label, words in value.items()}
    verbalizer: dict[str, list[str]] = {}
    for item in (part.strip() for part in value.split(",") if part.strip()):
        label, sep, words = item.partition("=")
        if not sep or not label.strip() or not words.strip():
            raise ConfigError(f"{flag} {value!r}: expected LABEL=WORD[|WORD...] pairs separated by commas, "
                              "e.g. 1=好|棒,0=差")
        verbalizer[label.strip()] = [w.strip() for w in words.split("|") if w.strip()]
    return verbalizer


def check_template(template: str, pairs: bool) -> None:
    if template.count(MASK) != 1 or TEXT not in template:
        raise ConfigError(f"--template {template!r}: needs {TEXT} and exactly one {MASK}, "
                          "e.g. '{text}总之很{mask}。'")
    if pairs and TEXT_PAIR not in template:
        raise ConfigError(f"--template {template!r}: the examples are text pairs; put {TEXT_PAIR} in the template")


def word_token_id(tokenizer: PreTrainedTokenizerBase, word: str, label: str) -> int:
    """The one token of a verbalizer word as it follows other text (SentencePiece: without the word-start
    marker when the vocabulary has that piece)."""
    vocab = tokenizer.get_vocab()
    if word in vocab:
        return vocab[word]
    pieces = tokenizer.tokenize(word)
    if len(pieces) == 2 and pieces[0] in ("▁", "Ġ"):  # a lone word-start marker before the word
        pieces = pieces[1:]
    if len(pieces) != 1:
        raise ConfigError(f"--verbalizer: the word {word!r} of label {label!r} is {len(pieces)} tokens ({pieces}) "
                          "for this model; the cloze method scores one token per word: choose a word that is one "
                          "token (a single character in Chinese)")
    token_id = tokenizer.convert_tokens_to_ids(pieces[0])
    if token_id == tokenizer.unk_token_id:
        raise ConfigError(f"--verbalizer: the word {word!r} of label {label!r} is not in the model's vocabulary "
                          "(it reads as the unknown token); choose another word")
    return token_id


def verbalizer_token_ids(tokenizer: PreTrainedTokenizerBase, verbalizer: dict[str, list[str]],
                         labels: Sequence[str]) -> list[list[int]]:
    """Per label (in ``labels`` order) the token ids of its words."""
    missing = [label for label in labels if not verbalizer.get(label)]
    if missing:
        raise ConfigError(f"--verbalizer has no word for label(s) {', '.join(map(repr, missing))}; give every label "
                          f"one, e.g. {','.join(f'{label}=WORD' for label in labels)}")
    return [[word_token_id(tokenizer, word, label) for word in verbalizer[label]] for label in labels]


def encode_cloze(tokenizer: PreTrainedTokenizerBase, template: str, text: str, text_pair: str | None,
                 max_length: int) -> dict[str, Any]:
    """The template filled with the example; long texts are cut (never the template) until it fits."""
    if tokenizer.mask_token_id is None:
        raise ConfigError("the cloze method needs a tokenizer with a mask token (a masked-LM checkpoint)")

    def filled(a: str, b: str | None) -> list[int]:
        prompt = template.replace(TEXT, a).replace(TEXT_PAIR, b or "").replace(MASK, tokenizer.mask_token)
        return tokenizer(prompt, truncation=False)["input_ids"]

    ids = filled(text, text_pair)
    while len(ids) > max_length:  # shorten the longer text by a tenth until the prompt fits
        if text_pair is not None and len(text_pair) > len(text):
            text_pair = text_pair[: max(1, int(len(text_pair) * 0.9))]
        elif len(text) > 1:
            text = text[: max(1, int(len(text) * 0.9))]
        else:
            raise InputDataError(f"the template {template!r} alone is longer than --max-length {max_length}")
        ids = filled(text, text_pair)
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "mask_position": ids.index(tokenizer.mask_token_id)}


def label_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor], label_ids: list[list[int]]) -> torch.Tensor:
    """(B, C) label scores of a masked-LM model (``.encoder`` + ``.mlm``) at each row's mask position."""
    hidden = model.encoder(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")).last_hidden_state
    at_mask = hidden[torch.arange(hidden.shape[0]), batch["mask_position"]]  # (B, H)
    vocabulary = model.mlm(at_mask, model.encoder.embeddings.word.weight)  # (B, V)
    return torch.stack([vocabulary[:, ids].mean(dim=-1) for ids in label_ids], dim=-1)  # (B, C)


def collate_cloze(features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    batch = collate_inputs(features, pad_id)
    batch["mask_position"] = torch.tensor([f["mask_position"] for f in features])  # (B,)
    if "labels" in features[0]:
        batch["labels"] = torch.tensor([f["labels"] for f in features])  # (B,)
    return batch


@torch.inference_mode()
def ensemble_scores(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, templates: Sequence[str],
                    label_ids: list[list[int]], texts: Sequence[tuple[str, str | None]], max_length: int,
                    batch_size: int) -> np.ndarray:
    """(N, C): the mean over templates of the log-softmax of each template's label scores."""
    model.eval()
    total = np.zeros((len(texts), len(label_ids)), dtype=np.float64)
    for template in templates:
        features = [encode_cloze(tokenizer, template, a, b, max_length) for a, b in texts]
        for rows in length_sorted_batches([len(f["input_ids"]) for f in features], batch_size):
            batch = collate_cloze([features[i] for i in rows], tokenizer.pad_token_id)
            total[rows] += F.log_softmax(label_logits(model, batch, label_ids), dim=-1).double().numpy()
    return (total / len(templates)).astype(np.float32)
