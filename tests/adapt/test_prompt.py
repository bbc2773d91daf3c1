"""Prompt tuning and deep prompt tuning: what the prompts do to attention (against a hand-built
reference), that only the prompt and the head train, the saved directory, and the errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from conftest import write_classification
from nlpforge.adapt.prompt import DeepPrompt, SoftPrompt, attach_prompt, prompt_kind
from nlpforge.checkpoint import load_checkpoint
from nlpforge.config import ModelConfig
from nlpforge.errors import ConfigError
from nlpforge.models.bert import BertModel
from nlpforge.recipes.configs import FinetuneArgs
from nlpforge.recipes.finetune import finetune
from nlpforge.tasks.classify import DecoderSequenceClassifier, SequenceClassifier

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = dataclasses.replace(ModelConfig.from_name("tiny-bert"), dropout=0.0, attention_dropout=0.0)
IDS = torch.tensor([[2, 7, 8, 9, 3, 0], [2, 11, 12, 13, 14, 3]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])


def test_soft_prompt_is_tokens_inserted_after_the_first() -> None:
    torch.manual_seed(0)
    encoder = BertModel(CONFIG).eval()
    prompt = SoftPrompt(torch.nn.Parameter(torch.randn(3, CONFIG.hidden_size)))
    encoder.prompt = prompt
    with torch.no_grad():
        ours = encoder(IDS, MASK).last_hidden_state  # (B, T, H)
        encoder.prompt = None
        # reference: run the layers by hand on [first, prompt, rest] with the mask extended
        x = encoder.embeddings(IDS)
        x = torch.cat([x[:, :1], prompt.vectors.expand(2, -1, -1), x[:, 1:]], dim=1)
        extended = torch.cat([MASK[:, :1], torch.ones(2, 3, dtype=MASK.dtype), MASK[:, 1:]], dim=1)
        mask = extended.bool()[:, None, None, :]
        for layer in encoder.layers:
            x, _ = layer(x, mask)
        reference = torch.cat([x[:, :1], x[:, 4:]], dim=1)
    assert ours.shape == (2, 6, CONFIG.hidden_size)
    assert_close(ours, reference)


def test_deep_prompt_prefixes_every_layers_keys_and_values() -> None:
    torch.manual_seed(0)
    encoder = BertModel(CONFIG).eval()
    prompt = DeepPrompt(CONFIG, 2)
    encoder.prompt = prompt
    with torch.no_grad():
        ours = encoder(IDS, MASK, output_attentions=True)  # the explicit-probabilities path
        fast = encoder(IDS, MASK).last_hidden_state  # SDPA path
    assert_close(ours.last_hidden_state, fast, atol=1e-5, rtol=1e-5)
    probs = ours.attentions[0]  # (B, A, T, P + T)
    assert probs.shape == (2, CONFIG.num_heads, 6, 2 + 6)
    assert torch.all(probs[0, :, :, -1] == 0)  # the padding key stays masked
    assert torch.all(probs[:, :, :, :2] > 0)  # every query attends to the prefix
    encoder.prompt = None
    with torch.no_grad():
        plain = encoder(IDS, MASK).last_hidden_state
    assert not torch.allclose(plain, fast)


def test_attach_prompt_freezes_all_but_prompt_and_head() -> None:
    model = attach_prompt(SequenceClassifier(dataclasses.replace(CONFIG, has_pooler=False)), "deep-prompt", 4)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith(("encoder.prompt.", "head.")) for name in trainable)
    assert prompt_kind(model) == "deep-prompt"
    with pytest.raises(ConfigError, match="encoder-family models only"):
        attach_prompt(DecoderSequenceClassifier(ModelConfig.from_name("tiny-gpt")), "prompt", 4)
    with pytest.raises(ConfigError, match="prompt-tuning"):
        attach_prompt(SequenceClassifier(CONFIG), "prefix", 4)
    with pytest.raises(ConfigError, match="both choose"):
        FinetuneArgs(task="classify", model="m", train="t", out="o", lora_r=4, prompt_tuning="prompt")


@pytest.mark.parametrize("kind", ["prompt", "deep-prompt"])
def test_finetune_with_a_prompt_writes_a_prompt_directory(kind: str, tiny_bert_dir: Path, tmp_path: Path) -> None:
    write_classification(tmp_path / "train.tsv", 96, seed=0)
    write_classification(tmp_path / "dev.tsv", 40, seed=1)
    base = load_checkpoint(tiny_bert_dir, head="base").model.state_dict()
    summary = finetune(FinetuneArgs(
        task="classify", model=str(tiny_bert_dir), train=str(tmp_path / "train.tsv"), eval=str(tmp_path / "dev.tsv"),
        out=str(tmp_path / kind), epochs=4, batch_size=16, learning_rate=1e-2, warmup_ratio=0.0, max_length=16,
        progress=False, seed=3, prompt_tuning=kind, prompt_length=5))
    out = Path(summary["out"])
    assert (out / "prompt.safetensors").is_file() and not (out / "model.safetensors").exists()
    assert summary["trainable_percent"] < 50
    loaded = load_checkpoint(out)
    assert prompt_kind(loaded.model) == kind and loaded.meta["prompt_length"] == 5
    for name, value in loaded.model.encoder.state_dict().items():  # the body is the base's, untouched
        if not name.startswith("prompt."):
            assert torch.equal(value, base[name]), name
    from nlpforge.evaluate import evaluate

    metrics = evaluate(out, tmp_path / "dev.tsv")
    assert metrics["accuracy"] == pytest.approx(summary["best"])


@pytest.mark.parametrize("kind", ["prompt", "deep-prompt"])
def test_a_prompt_model_exports_to_onnx_with_the_same_logits(kind: str, tmp_path: Path) -> None:
    from nlpforge.artifacts.onnx import OnnxModel
    from nlpforge.compress.export import export_onnx

    torch.manual_seed(0)
    model = attach_prompt(SequenceClassifier(dataclasses.replace(CONFIG, num_labels=3)), kind, 4).eval()
    with torch.no_grad():
        for parameter in model.encoder.prompt.parameters():
            parameter.normal_(0.0, 0.5)  # away from the near-zero start, so a dropped prompt would show
        expected = model(IDS, MASK).logits  # (B, 3)
        model.encoder.prompt, prompt = None, model.encoder.prompt
        plain = model(IDS, MASK).logits
        model.encoder.prompt = prompt
    assert not torch.allclose(plain, expected, atol=1e-3)
    onnx = OnnxModel.load(export_onnx(model, tmp_path / "onnx", meta={"task": "classify"}), threads=1)
    assert_close(torch.as_tensor(onnx(IDS, MASK).logits), expected, atol=1e-4, rtol=1e-4)
