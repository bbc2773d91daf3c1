"""Text generation with a decoder (``GPT``): streamed piece by piece as tokens are produced, or whole.

    from nlpforge.checkpoint import load_checkpoint
    from nlpforge.generation import generate_text, stream_generate

    lm = load_checkpoint("out/gpt")                     # a decoder loads with its "lm" head
    for step in stream_generate(lm.model, lm.tokenizer, "Once upon a time", max_new_tokens=40):
        print(step.texts[0], end="", flush=True)
    generate_text(lm.model, lm.tokenizer, ["a", "b"], temperature=0)   # [Completion(text, tokens, finish_reason)]

Both run ``GPT.stream``, the decoding loop behind ``GPT.generate``. Text is released only where
it is stable: the whole generated id list is decoded at each step and only its new suffix goes
out, so a character whose UTF-8 bytes span several byte-level BPE tokens is never sent half-way
(a trailing U+FFFD is held back until the next token completes it). A sequence stops at the
end-of-text token, at a stop string (cut off, never sent: text that could be the start of a stop
string waits until it cannot), after ``max_new_tokens``, or when it fills the model's positions.

``GenerationOptions`` holds the sampling settings, their defaults and their help text once: the
``nlpforge generate`` flags and the server's ``/v1/generate`` body both come from it. This module
imports torch only inside its functions, so that the CLI can import the options cheaply.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nlpforge.errors import CheckpointError, ConfigError, InputDataError
from nlpforge.settings import setting

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from nlpforge.models.gpt import GPT

# Bounds that keep every score finite in float32 (logits / temperature, logits * penalty) and a
# request's work bounded; the server's OpenAPI schema states the same ones.
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-3, 100.0
MIN_PENALTY, MAX_PENALTY = 1e-2, 100.0
MAX_STOP_STRINGS, MAX_STOP_CHARS = 16, 256
MAX_SEED = 2**63 - 1
FINISH_REASONS = ("stop", "length")  # stop: end-of-text token or stop string; length: token budget spent


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GenerationSettingError(field, f"must be a number, got {_type_name(value)}")
    if not math.isfinite(value):
        raise GenerationSettingError(field, f"must be a finite number, got {value!r}")
    return float(value)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _type_name(value: Any) -> str:
    names = {type(None): "null", bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "...")
    return repr(value) if _is_int(value) and abs(value) < 10**30 else _type_name(value)


class GenerationSettingError(ConfigError):
    """A sampling setting of the wrong type or out of range; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass
class GenerationOptions:
    """How to continue a prompt (``nlpforge generate`` flags, ``/v1/generate`` body fields)."""

    max_new_tokens: int = setting(50, "Tokens to generate at most per prompt (fewer when the text reaches the "
                                      "model's maximum length).")
    temperature: float = setting(0.8, f"Sampling temperature: 0 is greedy (always the most likely token); else "
                                      f"{MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g}, higher is more random.")
    top_k: int = setting(0, "Sample only among the K most likely tokens (0: all).")
    top_p: float = setting(1.0, "Nucleus sampling: only the most likely tokens whose probabilities add up to P "
                                "(0 < P <= 1; 1: all).")
    repetition_penalty: float = setting(1.0, f"CTRL repetition penalty on tokens already in the text: above 1 "
                                             f"discourages repeats, 1 is off ({MIN_PENALTY:g} to {MAX_PENALTY:g}).")
    stop: list[str] = setting(help=f"Stop a sequence when its generated text contains this string (not included "
                                   f"in the output); repeat for several (at most {MAX_STOP_STRINGS}).", factory=list)
    seed: int | None = setting(None, "Random seed of the sampling, for repeatable output (default: random).")

    def __post_init__(self) -> None:
        if not _is_int(self.max_new_tokens) or self.max_new_tokens < 1:
            raise GenerationSettingError("max_new_tokens",
                                         f"must be an integer >= 1, got {_short(self.max_new_tokens)}")
        temperature = _number("temperature", self.temperature)
        if temperature != 0 and not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE:
            raise GenerationSettingError("temperature", f"must be 0 (greedy) or from {MIN_TEMPERATURE:g} to "
                                                        f"{MAX_TEMPERATURE:g}, got {temperature!r}")
        if not _is_int(self.top_k) or self.top_k < 0:
            raise GenerationSettingError("top_k", f"must be an integer >= 0 (0: no limit), got {_short(self.top_k)}")
        top_p = _number("top_p", self.top_p)
        if not 0 < top_p <= 1:
            raise GenerationSettingError("top_p", f"must be in (0, 1], got {top_p!r}")
        penalty = _number("repetition_penalty", self.repetition_penalty)
        if not MIN_PENALTY <= penalty <= MAX_PENALTY:
            raise GenerationSettingError("repetition_penalty", f"must be from {MIN_PENALTY:g} to {MAX_PENALTY:g} "
                                                               f"(1: off), got {penalty!r}")
        if not isinstance(self.stop, (list, tuple)):
            raise GenerationSettingError("stop", f"must be a list of strings, got {_type_name(self.stop)}")
        if len(self.stop) > MAX_STOP_STRINGS:
            raise GenerationSettingError("stop", f"{len(self.stop)} stop strings; at most {MAX_STOP_STRINGS}")
        for i, text in enumerate(self.stop):
            if not isinstance(text, str) or not text or len(text) > MAX_STOP_CHARS:
                raise GenerationSettingError(f"stop[{i}]", f"must be a non-empty string of at most "
                                                           f"{MAX_STOP_CHARS} characters, got {_short(text)}")
            if not _encodable(text):
                raise GenerationSettingError(f"stop[{i}]", "holds a lone surrogate, which is not Unicode text")
        self.stop = list(self.stop)
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED):
            raise GenerationSettingError("seed", f"must be an integer from 0 to 2**63 - 1, got {_short(self.seed)}")
        self.temperature, self.top_p, self.repetition_penalty = temperature, top_p, penalty


DEFAULTS = GenerationOptions()


def options_dict(options: GenerationOptions) -> dict[str, Any]:
    """The options as keyword arguments of ``stream_generate`` / ``generate_text``."""
    return dataclasses.asdict(options)


@dataclass
class GenerationStep:
    """One decoding step of a batch of prompts, in prompt order.

    ``texts``: the text each sequence released at this step ("" when it has none yet or has
    stopped); ``tokens``: tokens generated so far (an end-of-text token counts); ``finish_reasons``:
    None while running, then ``stop`` (end-of-text token or stop string) or ``length`` (budget spent).
    The last step of a stream has every finish reason set.
    """

    texts: list[str]
    tokens: list[int]
    finish_reasons: list[str | None]

    @property
    def done(self) -> bool:
        return all(reason is not None for reason in self.finish_reasons)


@dataclass
class Completion:
    """The generated text of one prompt (the prompt not included)."""

    text: str
    tokens: int
    finish_reason: str


def stream_generate(
    model: GPT,
    tokenizer: PreTrainedTokenizerBase,
    prompts: str | Sequence[str],
    max_new_tokens: int = DEFAULTS.max_new_tokens,
    temperature: float = DEFAULTS.temperature,
    top_k: int = DEFAULTS.top_k,
    top_p: float = DEFAULTS.top_p,
    repetition_penalty: float = DEFAULTS.repetition_penalty,
    stop: Sequence[str] = (),
    seed: int | None = None,
) -> Iterator[GenerationStep]:
    """Continue each prompt, yielding a ``GenerationStep`` per token as it is produced.

    Several prompts run as one left-padded batch. The settings and the prompts are checked here,
    before the first step (``GenerationSettingError`` / ``InputDataError``); the model runs as the
    steps are taken. Closing the iterator early stops the generation.
    """
    options = GenerationOptions(max_new_tokens, temperature, top_k, top_p, repetition_penalty, list(stop), seed)
    texts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not texts:
        raise InputDataError("no prompts to continue")
    positions = model.config.max_positions
    names = ["prompt"] if isinstance(prompts, str) else [f"prompts[{i}]" for i in range(len(texts))]
    encoded = [encode_prompt(tokenizer, text, positions, name) for text, name in zip(texts, names, strict=True)]
    largest = max(max(row) for row in encoded)
    if largest >= model.config.vocab_size:
        raise CheckpointError(f"the tokenizer gives token id {largest}, but the model embeds only "
                              f"{model.config.vocab_size} tokens: the tokenizer does not belong to this model")
    # The last new token is never fed back, so a prompt of L tokens leaves room for P - L + 1 new ones.
    budget = min(options.max_new_tokens, positions - max(map(len, encoded)) + 1)
    return _steps(model, tokenizer, encoded, budget, options)


def generate_text(
    model: GPT,
    tokenizer: PreTrainedTokenizerBase,
    prompts: str | Sequence[str],
    max_new_tokens: int = DEFAULTS.max_new_tokens,
    temperature: float = DEFAULTS.temperature,
    top_k: int = DEFAULTS.top_k,
    top_p: float = DEFAULTS.top_p,
    repetition_penalty: float = DEFAULTS.repetition_penalty,
    stop: Sequence[str] = (),
    seed: int | None = None,
) -> list[Completion]:
    """``stream_generate`` to the end: one ``Completion`` per prompt, the text being the streamed pieces joined."""
    steps = stream_generate(model, tokenizer, prompts, max_new_tokens, temperature, top_k, top_p,
                            repetition_penalty, stop, seed)
    return collect(steps, 1 if isinstance(prompts, str) else len(prompts))


def collect(steps: Iterator[GenerationStep], count: int) -> list[Completion]:
    """Run ``count`` prompts' steps to the end: their pieces joined, with the final counts and reasons."""
    pieces: list[list[str]] = [[] for _ in range(count)]
    last = GenerationStep([""] * count, [0] * count, ["length"] * count)
    for last in steps:
        for row, text in zip(pieces, last.texts, strict=True):
            row.append(text)
    return [Completion("".join(row), tokens, str(reason))
            for row, tokens, reason in zip(pieces, last.tokens, last.finish_reasons, strict=True)]


def encode_prompt(tokenizer: PreTrainedTokenizerBase, text: Any, max_positions: int, where: str) -> list[int]:
    """A prompt's token ids (no special tokens added, as in pre-training); ``InputDataError`` naming
    ``where`` when it is not a non-empty string, is not Unicode, or does not fit the model."""
    if not isinstance(text, str) or not text.strip():
        raise InputDataError(f"{where}: the prompt is empty; give some text to continue")
    if not _encodable(text):
        raise InputDataError(f"{where}: holds a lone surrogate, which is not Unicode text; send valid UTF-8")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise InputDataError(f"{where}: the prompt encodes to no tokens; give some text to continue")
    if len(ids) > max_positions:
        raise InputDataError(f"{where}: the prompt is {len(ids)} tokens, but the model reads at most "
                             f"{max_positions}; shorten it")
    return list(ids)


def _steps(model: GPT, tokenizer: PreTrainedTokenizerBase, encoded: list[list[int]], budget: int,
           options: GenerationOptions) -> Iterator[GenerationStep]:
    import torch

    device = next(model.parameters()).device
    end_ids = {i for i in (model.config.eos_token_id, tokenizer.eos_token_id) if i is not None}
    vocab = model.config.vocab_size
    pad = next((i for i in (tokenizer.pad_token_id, *sorted(end_ids)) if i is not None and 0 <= i < vocab), 0)
    longest = max(map(len, encoded))
    ids = torch.tensor([[pad] * (longest - len(row)) + row for row in encoded], device=device)  # (B, T) left-padded
    mask = torch.tensor([[0] * (longest - len(row)) + [1] * len(row) for row in encoded], device=device)
    generator = None
    if options.seed is not None:
        generator = torch.Generator(device=device).manual_seed(options.seed)
    states = [_SequenceText(tokenizer, options.stop) for _ in encoded]
    tokens = model.stream(ids, mask, budget, options.temperature, options.top_k, options.top_p, sorted(end_ids),
                          pad, generator=generator, repetition_penalty=options.repetition_penalty)
    try:
        new = next(tokens, None)
        while new is not None:
            texts = []
            for state, token in zip(states, new.tolist(), strict=True):
                if state.finish_reason is not None:  # stopped earlier: the model pads it
                    texts.append("")
                elif token in end_ids:
                    texts.append(state.end("stop", counts_token=True))
                else:
                    texts.append(state.add(token))
            yield _step(texts, states)
            stopped = torch.tensor([state.finish_reason is not None for state in states], device=device)
            try:
                new = tokens.send(stopped)  # rows that met a stop string stop in the model too
            except StopIteration:
                new = None
        if any(state.finish_reason is None for state in states):  # the budget is spent
            yield _step([state.end("length") for state in states], states)
    finally:
        tokens.close()


def _step(texts: list[str], states: list[_SequenceText]) -> GenerationStep:
    return GenerationStep(texts, [s.tokens for s in states], [s.finish_reason for s in states])


class _SequenceText:
    """The generated text of one sequence, released only where it is stable."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop: Sequence[str]) -> None:
        self.tokenizer, self.stop = tokenizer, list(stop)
        self.longest_stop = max(map(len, self.stop), default=0)
        self.ids: list[int] = []
        self.sent = ""  # the text released so far
        self.tokens = 0
        self.finish_reason: str | None = None

    def add(self, token: int) -> str:
        """Take one new token; the text it makes safe to release (a stop string ends the sequence)."""
        self.tokens += 1
        self.ids.append(token)
        text = self._decode()
        cut = self._stop_at(text)
        if cut is not None:
            self.finish_reason = "stop"
            return self._release(text[:cut])
        stable = text.rstrip("\ufffd")  # the start of a character whose next bytes are still to come
        return self._release(stable[: len(stable) - self._held(stable)])

    def end(self, reason: str, counts_token: bool = False) -> str:
        """Finish with ``reason``: release what is left (an incomplete last character as U+FFFD, the
        start of a stop string that never completed)."""
        self.tokens += counts_token
        if self.finish_reason is not None:
            return ""
        self.finish_reason = reason
        return self._release(self._decode())

    def _decode(self) -> str:
        # No clean-up of spaces: it rewrites earlier text (" ." -> "."), which was sent already.
        return self.tokenizer.decode(self.ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _release(self, text: str) -> str:
        piece = text[len(self.sent):]
        self.sent += piece
        return piece

    def _stop_at(self, text: str) -> int | None:
        """Where the first stop string starts in ``text``. The text sent so far holds none, nor the start
        of one at its end, so a match ends past it: the search starts one stop string back."""
        if not self.stop:
            return None
        start = max(0, len(self.sent) - self.longest_stop)
        hits = [at for stop in self.stop if (at := text.find(stop, start)) >= 0]
        return min(hits) if hits else None

    def _held(self, text: str) -> int:
        """Characters at the end of ``text`` held back because a stop string may start with them."""
        for size in range(min(len(text), self.longest_stop - 1), 0, -1):
            tail = text[-size:]
            if any(stop.startswith(tail) for stop in self.stop):
                return size
        return 0


__all__ = ["DEFAULTS", "Completion", "GenerationOptions", "GenerationSettingError", "GenerationStep", "collect",
           "encode_prompt", "generate_text", "options_dict", "stream_generate"]

