"""Text generation: streamed text equals whole generation, repetition penalty equals transformers',
stop strings cut, characters are never split, the ``nlpforge generate`` command and its errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from torch.testing import assert_close

from conftest import run_cli, tiny_hf_model
from nlpforge.checkpoint import Checkpoint, load_checkpoint
from nlpforge.errors import InputDataError
from nlpforge.generation import GenerationOptions, GenerationSettingError, generate_text, stream_generate
from nlpforge.models.gpt import apply_repetition_penalty, pick_next_token

CORPUS = ["the cat sat on the mat", "a dog ran in the park", "猫坐在垫子上", "héllo wörld ünïcode"]
PROMPTS = ["the cat", "猫坐", "héllo wörld", "a"]


def save_tiny_decoder(directory: Path, positions: int = 64) -> Path:
    """A random tiny GPT-2 (hidden 32, 2 layers) with a byte-level BPE tokenizer of 300 tokens, saved."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(CORPUS * 10, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>", "<pad>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>",
        pad_token="<pad>")
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=positions,
                                     initializer_range=0.2, bos_token_id=0, eos_token_id=0, pad_token_id=1)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run faster on one thread


@pytest.fixture(scope="module")
def decoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_decoder(tmp_path_factory.mktemp("decoder"))


@pytest.fixture(scope="module")
def lm(decoder_dir: Path) -> Checkpoint:
    return load_checkpoint(decoder_dir)


def whole_text(lm: Checkpoint, prompt: str, max_new_tokens: int) -> str:
    """The greedy continuation through GPT.generate, decoded at once."""
    ids = lm.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    out = lm.model.generate(ids, max_new_tokens=max_new_tokens, stop_token_ids=[0], pad_token_id=1)
    return lm.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


# ---------------------------------------------------------------------------- streaming


def test_streamed_text_equals_whole_greedy_generation(lm: Checkpoint) -> None:
    for prompt in PROMPTS[:3]:
        steps = list(stream_generate(lm.model, lm.tokenizer, prompt, max_new_tokens=16, temperature=0))
        assert "".join(step.texts[0] for step in steps) == whole_text(lm, prompt, 16)
        assert len(steps) == 17 and steps[-1].done and not any(step.done for step in steps[:-1])
        assert steps[-1].tokens == [16] and steps[-1].finish_reasons == ["length"]


def test_a_batch_equals_each_prompt_alone(lm: Checkpoint) -> None:
    batched = generate_text(lm.model, lm.tokenizer, PROMPTS, max_new_tokens=8, temperature=0)
    alone = [generate_text(lm.model, lm.tokenizer, prompt, max_new_tokens=8, temperature=0)[0] for prompt in PROMPTS]
    assert batched == alone


def test_seeded_sampling_repeats_and_stream_equals_collected(lm: Checkpoint) -> None:
    settings = dict(max_new_tokens=8, temperature=1.0, top_k=20, top_p=0.9, repetition_penalty=1.2, seed=7)
    first = generate_text(lm.model, lm.tokenizer, PROMPTS[:2], **settings)
    assert first == generate_text(lm.model, lm.tokenizer, PROMPTS[:2], **settings)
    streamed = ["", ""]
    for step in stream_generate(lm.model, lm.tokenizer, PROMPTS[:2], **settings):
        streamed = [a + b for a, b in zip(streamed, step.texts, strict=True)]
    assert streamed == [c.text for c in first]
    assert first != generate_text(lm.model, lm.tokenizer, PROMPTS[:2], **{**settings, "seed": 8})


def scripted(tokens: list[int]):
    """A stand-in for GPT.stream that produces ``tokens`` for a single prompt, honouring stop requests."""

    def stream(*args: object, **kwargs: object) -> Iterator[torch.Tensor]:
        for token in tokens:
            stop = yield torch.tensor([token])
            if stop is not None and bool(stop.all()):
                return

    return stream


def byte_ids(lm: Checkpoint, text: str) -> list[int]:
    """One token per UTF-8 byte of ``text`` (the byte-level alphabet is in the vocabulary)."""
    chars = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False).pre_tokenize_str(text)[0][0]
    return lm.tokenizer.convert_tokens_to_ids(list(chars))


def test_a_character_split_across_tokens_is_sent_whole(lm: Checkpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = byte_ids(lm, "猫é坐")  # 3 + 2 + 3 byte tokens
    monkeypatch.setattr(lm.model, "stream", scripted(ids))
    pieces = [step.texts[0] for step in stream_generate(lm.model, lm.tokenizer, "a", max_new_tokens=20)]
    assert pieces == ["", "", "猫", "", "é", "", "", "坐", ""]  # the last step: budget not spent, nothing left
    # Generation that ends inside a character sends what there is (U+FFFD), as a whole decode would.
    monkeypatch.setattr(lm.model, "stream", scripted(ids[:4]))
    steps = list(stream_generate(lm.model, lm.tokenizer, "a", max_new_tokens=4))
    assert "".join(s.texts[0] for s in steps) == lm.tokenizer.decode(ids[:4]) == "猫\ufffd"


def test_stop_strings_cut_the_text_and_are_never_sent(lm: Checkpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    free = whole_text(lm, "the cat", 30)
    stop = free[10:13]
    completion = generate_text(lm.model, lm.tokenizer, "the cat", max_new_tokens=30, temperature=0, stop=[stop])[0]
    assert completion.text == free[: free.index(stop)] and completion.finish_reason == "stop"
    assert completion.tokens < 30
    # The earliest of several stop strings wins; text that may begin one waits until it cannot.
    monkeypatch.setattr(lm.model, "stream", scripted(byte_ids(lm, "ab<e<end>x")))
    pieces = [s.texts[0] for s in stream_generate(lm.model, lm.tokenizer, "a", stop=["<end>", "zzz"])]
    assert pieces == ["a", "b", "", "", "<e", "", "", "", ""]  # "<" and "<e" may start "<end"; the 2nd "<e" does


def test_rows_stop_independently(lm: Checkpoint) -> None:
    free = [whole_text(lm, prompt, 20) for prompt in PROMPTS[:2]]
    stop = free[0][5:8]
    got = generate_text(lm.model, lm.tokenizer, PROMPTS[:2], max_new_tokens=20, temperature=0, stop=[stop])
    assert got[0].text == free[0][: free[0].index(stop)] and got[0].finish_reason == "stop"
    expected = free[1][: free[1].index(stop)] if stop in free[1] else free[1]
    assert got[1].text == expected


def test_generation_ends_at_the_models_positions(tmp_path: Path) -> None:
    short = load_checkpoint(save_tiny_decoder(tmp_path / "short", positions=8))
    prompt_tokens = len(short.tokenizer("the cat sat", add_special_tokens=False)["input_ids"])
    completion = generate_text(short.model, short.tokenizer, "the cat sat", max_new_tokens=50, temperature=0)[0]
    assert completion.tokens == 8 - prompt_tokens + 1 and completion.finish_reason == "length"
    with pytest.raises(InputDataError, match="reads at most 8"):
        generate_text(short.model, short.tokenizer, "the cat sat on the mat and the dog", max_new_tokens=1)


def test_prompt_and_option_errors(lm: Checkpoint) -> None:
    for prompt in ["", "   "]:
        with pytest.raises(InputDataError, match="empty"):
            stream_generate(lm.model, lm.tokenizer, prompt)  # at once, before any step
    with pytest.raises(InputDataError, match=r"prompts\[1\]"):
        stream_generate(lm.model, lm.tokenizer, ["a", "\ud800"])
    bad = [("max_new_tokens", 0), ("max_new_tokens", True), ("temperature", -1.0), ("temperature", 1e-9),
           ("temperature", float("inf")), ("temperature", "hot"), ("top_k", -1), ("top_k", 2.5), ("top_p", 0.0),
           ("top_p", 1.5), ("repetition_penalty", 0.0), ("stop", "x"), ("stop", [""]), ("stop", ["a"] * 17),
           ("seed", -1), ("seed", 2**64)]
    for name, value in bad:
        with pytest.raises(GenerationSettingError) as caught:
            GenerationOptions(**{name: value})
        assert caught.value.field.split("[")[0] == name, (name, value)


# ---------------------------------------------------------------------------- repetition penalty


@pytest.mark.parametrize("penalty", [1.3, 0.7])
def test_repetition_penalty_equals_transformers(penalty: float) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 50, generator=generator) * 3
    previous = torch.randint(0, 50, (3, 12), generator=generator)
    expected = transformers.RepetitionPenaltyLogitsProcessor(penalty)(previous, logits.clone())
    assert_close(apply_repetition_penalty(logits, previous, penalty), expected)
    # Padding (mask 0) is not "already present".
    mask = torch.ones_like(previous)
    mask[0, :4] = 0
    kept = previous[0, 4:]
    expected_first = transformers.RepetitionPenaltyLogitsProcessor(penalty)(kept[None], logits[:1].clone())
    assert_close(apply_repetition_penalty(logits, previous, penalty, mask)[:1], expected_first)


def test_penalty_one_changes_nothing_and_greedy_penalised_generation_equals_transformers(tmp_path: Path) -> None:
    logits = torch.randn(2, 30)
    previous = torch.randint(0, 30, (2, 5))
    assert pick_next_token(logits, 0.0, 0, 1.0, None, 1.0, previous).tolist() == logits.argmax(-1).tolist()
    hf = tiny_hf_model("GPT2LMHeadModel")
    hf.save_pretrained(tmp_path)
    ours = load_checkpoint(tmp_path).model
    prompt = torch.tensor([[5, 17, 42, 3, 77]])
    for penalty in (1.5, 0.8):
        expected = hf.generate(prompt, max_new_tokens=20, do_sample=False, repetition_penalty=penalty, pad_token_id=98)
        got = ours.generate(prompt, max_new_tokens=20, pad_token_id=98, repetition_penalty=penalty)
        assert got.tolist() == expected.tolist(), penalty
    plain = ours.generate(prompt, max_new_tokens=20, pad_token_id=98)
    assert not torch.equal(plain, ours.generate(prompt, max_new_tokens=20, pad_token_id=98, repetition_penalty=1.5))


# ---------------------------------------------------------------------------- the command


def test_cli_prompt_streams_the_completion(decoder_dir: Path, lm: Checkpoint, monkeypatch, capsys) -> None:
    code, out, err = run_cli(monkeypatch, capsys, "generate", decoder_dir, "--prompt", "the cat",
                             "--max-new-tokens", "20", "--temperature", "0")
    assert code == 0, err
    assert out == whole_text(lm, "the cat", 20) + "\n"


def test_cli_input_file_runs_batches_of_json_lines(decoder_dir: Path, lm: Checkpoint, tmp_path: Path, monkeypatch,
                                                   capsys) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS[:3]) + "\n", encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "generate", decoder_dir, "--input", prompts, "--batch-size", "2",
                             "--max-new-tokens", "10", "--temperature", "0", "--stop", "zz", "--stop", "qq")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    expected = generate_text(lm.model, lm.tokenizer, PROMPTS[:3], max_new_tokens=10, temperature=0,
                             stop=["zz", "qq"])
    assert rows == [{"prompt": p, "completion": c.text} for p, c in zip(PROMPTS[:3], expected, strict=True)]


@pytest.mark.parametrize(("args", "message"), [
    ((), "--prompt TEXT"),
    (("--prompt", "a", "--input", "x.txt"), "not both"),
    (("--prompt", "  "), "--prompt is empty"),
    (("--prompt", "a", "--temperature", "-1"), "--temperature: must be 0"),
    (("--prompt", "a", "--top-p", "0"), "--top-p: must be in (0, 1]"),
    (("--prompt", "a", "--max-new-tokens", "0"), "--max-new-tokens: must be an integer >= 1"),
    (("--prompt", "a", "--stop", ""), "--stop: must be a non-empty string"),
])
def test_cli_errors_are_one_line(decoder_dir: Path, monkeypatch, capsys, args: tuple, message: str) -> None:
    code, out, err = run_cli(monkeypatch, capsys, "generate", decoder_dir, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert out == ""


def test_cli_refuses_an_encoder_and_a_prompt_too_long(tiny_bert_dir: Path, tmp_path: Path, monkeypatch,
                                                      capsys) -> None:
    code, _, err = run_cli(monkeypatch, capsys, "generate", tiny_bert_dir, "--prompt", "a")
    assert code == 2 and "not a language model" in err and len(err.strip().splitlines()) == 1, err
    short = save_tiny_decoder(tmp_path / "short", positions=4)
    lines = tmp_path / "lines.txt"
    lines.write_text("a\nthe cat sat on the mat\n", encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "generate", short, "--input", lines)
    assert code == 2 and f"{lines}:2: the prompt is" in err and out == "", err
