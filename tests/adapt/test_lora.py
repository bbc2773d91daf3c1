"""LoRA adapters: the invariants (only adapter and head parameters change, a disabled adapter is the
base model, merging gives W + s*B@A), the adapter directory (head restored on load, merged model
equals the adapter model), fine-tuning with --lora-r and the errors."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from conftest import run_cli, write_classification
from nlpforge.adapt.lora import LoraSettings, add_lora, is_adapter_directory, load_adapter, save_adapter
from nlpforge.checkpoint import load_checkpoint
from nlpforge.config import ModelConfig
from nlpforge.errors import CheckpointError, ConfigError, InputDataError
from nlpforge.predictor import Predictor
from nlpforge.recipes.configs import FinetuneArgs
from nlpforge.recipes.finetune import finetune
from nlpforge.tasks import get_task, task_model_from_encoder
from nlpforge.tasks.classify import DecoderSequenceClassifier, SequenceClassifier

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_classifier(seed: int = 0) -> SequenceClassifier:
    torch.manual_seed(seed)
    return SequenceClassifier(dataclasses.replace(ModelConfig.from_name("tiny-bert"), num_labels=3)).eval()


def train_steps(model: torch.nn.Module, steps: int = 3) -> None:
    """A few SGD steps on random data, so that B (zero at the start) moves."""
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    for step in range(steps):
        generator = torch.Generator().manual_seed(step)
        ids = torch.randint(5, 99, (4, 9), generator=generator)
        labels = torch.randint(0, 3, (4,), generator=generator)
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


INPUTS = {"input_ids": torch.tensor([[2, 7, 8, 9, 3, 0], [2, 11, 12, 13, 14, 3]]),
          "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])}


def test_only_adapter_and_head_parameters_change() -> None:
    base = tiny_classifier()
    before = copy.deepcopy(base.state_dict())
    model = add_lora(base, LoraSettings(r=4, targets="all"))
    train_steps(model)
    changed = {name for name, p in model.named_parameters() if p.requires_grad}
    assert changed and all("lora_" in n or ".head." in n for n in changed)
    for name, value in model.get_base_model().state_dict().items():
        plain = name.replace(".base_layer", "").replace("head.original_module", "head")
        if "lora_" in name or "modules_to_save" in name:
            continue
        assert torch.equal(value, before[plain]), name  # the frozen base is untouched
    trained_head = model.get_base_model().head.modules_to_save["default"].out.weight
    assert not torch.equal(trained_head, before["head.out.weight"])


def test_disabled_adapter_equals_base_model() -> None:
    reference = tiny_classifier()
    model = add_lora(copy.deepcopy(reference), LoraSettings(r=4, targets="attention,ffn"))
    train_steps(model)
    with torch.no_grad():
        adapted = model(**INPUTS).logits
        with model.disable_adapter():
            disabled = model(**INPUTS).logits
        base = reference(**INPUTS).logits
    assert_close(disabled, base, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(adapted, base, atol=1e-4)


def test_merge_is_w_plus_scaled_b_a_and_keeps_outputs() -> None:
    model = add_lora(tiny_classifier(), LoraSettings(r=4, alpha=16, targets="qkv,down"))
    train_steps(model)
    layer = model.get_base_model().encoder.layers[0].attn.qkv
    scale = 16 / 4
    assert layer.scaling["default"] == scale
    expected = layer.base_layer.weight + scale * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    with torch.no_grad():
        adapted = model(**INPUTS).logits
    merged = model.merge_and_unload()
    assert isinstance(merged, SequenceClassifier)
    assert isinstance(merged.encoder.layers[0].attn.qkv, torch.nn.Linear)
    assert_close(merged.encoder.layers[0].attn.qkv.weight, expected.detach())
    with torch.no_grad():
        assert_close(merged(**INPUTS).logits, adapted, atol=1e-5, rtol=1e-5)


def test_targets_cover_the_body_only_and_name_unknown_layers() -> None:
    model = add_lora(tiny_classifier(), LoraSettings(r=2, targets="all"))
    adapted = {name.removesuffix(".lora_A.default") for name, _ in model.get_base_model().named_modules()
               if name.endswith("lora_A.default")}
    assert adapted and all(name.startswith("encoder.layers.") for name in adapted)
    assert len(adapted) == 2 * 4  # 2 layers x (qkv, out, up, down); the head's linears are not adapted
    with pytest.raises(ConfigError, match=r"no linear layer called query.*qkv"):
        add_lora(tiny_classifier(), LoraSettings(r=2, targets="query"))
    with pytest.raises(ConfigError, match="lora-r"):
        LoraSettings(r=0)


def test_decoder_models_take_adapters() -> None:
    torch.manual_seed(0)
    decoder = DecoderSequenceClassifier(dataclasses.replace(ModelConfig.from_name("tiny-gpt"), num_labels=3))
    model = add_lora(decoder, LoraSettings(r=2, targets="attention"))
    names = [n for n, _ in model.named_modules() if n.endswith("lora_A")]
    assert names and all(".decoder.blocks." in n for n in names)
    train_steps(model)
    with torch.no_grad():
        adapted = model(**INPUTS).logits
        assert_close(model.merge_and_unload()(**INPUTS).logits, adapted, atol=1e-5, rtol=1e-5)


def test_finetune_with_lora_writes_an_adapter_that_loads_merged(
        tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    write_classification(tmp_path / "train.tsv", 96, seed=0)
    write_classification(tmp_path / "dev.tsv", 40, seed=1)
    summary = finetune(FinetuneArgs(
        task="classify", model=str(tiny_bert_dir), train=str(tmp_path / "train.tsv"), eval=str(tmp_path / "dev.tsv"),
        out=str(tmp_path / "lora"), epochs=8, batch_size=16, learning_rate=1e-2, warmup_ratio=0.0, max_length=16,
        progress=False, seed=3, lora_r=4, lora_targets="all"))
    out = Path(summary["out"])
    assert summary["best"] >= 80.0
    assert 0 < summary["trainable_percent"] < 100
    assert is_adapter_directory(out) and not (out / "model.safetensors").exists()
    assert (out / "adapter_model.safetensors").stat().st_size < (tiny_bert_dir / "model.safetensors").stat().st_size

    unmerged = load_adapter(out, merge=False)
    merged = load_checkpoint(out)  # any command that loads a checkpoint gets the merged model
    assert merged.head == "classify" and merged.meta["labels"] == ["0", "1"]
    assert merged.meta["lora"]["r"] == 4 and merged.meta["adapter_bytes"] > 0
    batch = merged.tokenizer(["a b z c", "d e f"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert_close(merged.model(**batch).logits, unmerged.model(**batch).logits, atol=1e-5, rtol=1e-5)
    # the saved head is restored: predictions match the accuracy the run measured
    predictor = Predictor.load(out)
    predicted = predictor.predict(["a b z c d", "d e f g"])
    assert [p["label"] for p in predicted] == ["1", "0"]

    code, stdout, stderr = run_cli(monkeypatch, capsys, "lora-merge", out, tmp_path / "merged")
    assert code == 0 and "merged" in stdout, stderr
    full = load_checkpoint(tmp_path / "merged")
    assert full.meta["stage"] == "lora-merge"
    with torch.no_grad():
        assert_close(full.model(**batch).logits, merged.model(**batch).logits, atol=1e-6, rtol=1e-6)


def test_adapter_with_a_moved_base_says_so(tiny_bert_dir: Path, tmp_path: Path) -> None:
    base = load_checkpoint(tiny_bert_dir, head="base")
    model = add_lora(task_model_from_encoder(base.model, get_task("classify"), 2), LoraSettings(r=2))
    save_adapter(tmp_path / "adapter", model, base.tokenizer,
                 {"task": "classify", "labels": ["0", "1"], "base_model": str(tmp_path / "gone")})
    with pytest.raises(CheckpointError, match=r"base model .*gone"):
        load_checkpoint(tmp_path / "adapter")


def write_adapter(base_dir: Path, out: Path, labels: list[str], seed: int) -> Path:
    """An adapter (and head) moved off its start by a few random steps, saved for ``base_dir``."""
    base = load_checkpoint(base_dir, head="base")
    torch.manual_seed(seed)
    model = add_lora(task_model_from_encoder(base.model, get_task("classify"), len(labels)), LoraSettings(r=2))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for step in range(3):
        generator = torch.Generator().manual_seed(seed * 10 + step)
        ids = torch.randint(5, 30, (4, 7), generator=generator)
        target = torch.randint(0, len(labels), (4,), generator=generator)
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=target).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return save_adapter(out, model, base.tokenizer, {"task": "classify", "labels": labels, "max_length": 16,
                                                      "base_model": str(base_dir)})


def test_several_adapters_share_one_base_and_are_chosen_per_request(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from conftest import ready_client
    from nlpforge.serve.app import create_app

    sentiment = write_adapter(tiny_bert_dir, tmp_path / "sentiment", ["neg", "pos"], seed=1)
    topic = write_adapter(tiny_bert_dir, tmp_path / "topic", ["news", "sport"], seed=2)
    predictor = Predictor.load(tiny_bert_dir, adapters={"sentiment": sentiment, "topic": topic})
    assert list(predictor.adapters) == ["sentiment", "topic"]
    inputs = ["a b c d", "e f g", "h i j k l"]
    for name, directory in (("sentiment", sentiment), ("topic", topic)):
        alone = Predictor.load(directory).predict(inputs)  # the adapter merged into its own copy of the base
        shared = predictor.predict(inputs, adapter=name)
        assert [p["label"] for p in shared] == [p["label"] for p in alone]
        assert_close(torch.tensor([p["score"] for p in shared]), torch.tensor([p["score"] for p in alone]),
                     atol=1e-5, rtol=1e-5)
    # the two adapters really differ, and no adapter named means the first
    topic_scores = [p["scores"]["sport"] for p in predictor.predict(inputs, adapter="topic")]
    assert [p["scores"].get("sport") for p in predictor.predict(inputs)] == [None] * 3
    assert predictor.predict(inputs)[0]["label"] in ("neg", "pos")
    with pytest.raises(InputDataError, match=r"adapter: 'legal' is not served here; choose one of sentiment, topic"):
        predictor.predict(inputs, adapter="legal")

    client = ready_client(create_app(predictor))
    try:
        response = client.post("/v1/predict", json={"inputs": inputs, "adapter": "topic"})
        assert response.status_code == 200
        assert [o["scores"]["sport"] for o in response.json()["outputs"]] == pytest.approx(topic_scores, abs=1e-5)
        response = client.post("/v1/predict", json={"inputs": inputs, "adapter": "legal"})
        assert response.status_code == 422 and response.json()["field"] == "adapter"
        assert client.get("/v1/model").json()["adapters"] == {"sentiment": ["neg", "pos"], "topic": ["news", "sport"]}
    finally:
        client.__exit__(None, None, None)


def test_adapters_with_heads_of_different_shapes_are_refused(tiny_bert_dir: Path, tmp_path: Path) -> None:
    two = write_adapter(tiny_bert_dir, tmp_path / "two", ["a", "b"], seed=1)
    three = write_adapter(tiny_bert_dir, tmp_path / "three", ["a", "b", "c"], seed=2)
    with pytest.raises(ConfigError, match=r"adapter 'three' has 3 labels but 'two' has 2"):
        Predictor.load(tiny_bert_dir, adapters={"two": two, "three": three})
    with pytest.raises(ConfigError, match=r"adapter 'base': .* is not a LoRA adapter directory"):
        Predictor.load(tiny_bert_dir, adapters={"base": tiny_bert_dir})


def test_serve_adapter_option_says_how_to_write_it(tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    code, _, stderr = run_cli(monkeypatch, capsys, "serve", tiny_bert_dir, "--port", "0", "--adapter", "sentiment")
    assert code == 2 and "--adapter 'sentiment': write NAME=DIRECTORY" in stderr


@pytest.mark.parametrize("lora_r", [0, 4])
def test_mean_pooled_head_reloads_as_trained(tiny_bert_dir: Path, tmp_path: Path, lora_r: int) -> None:
    from nlpforge.evaluate import evaluate

    write_classification(tmp_path / "train.tsv", 96, seed=0)
    write_classification(tmp_path / "dev.tsv", 40, seed=1)
    summary = finetune(FinetuneArgs(
        task="classify", model=str(tiny_bert_dir), train=str(tmp_path / "train.tsv"), eval=str(tmp_path / "dev.tsv"),
        out=str(tmp_path / "run"), epochs=4, batch_size=16, learning_rate=1e-2 if lora_r else 1e-3,
        warmup_ratio=0.0, max_length=16, progress=False, seed=3, lora_r=lora_r, lora_targets="all",
        classifier_pooling="mean"))
    loaded = load_checkpoint(summary["out"])
    assert loaded.model.config.classifier_pooling == "mean"
    assert evaluate(summary["out"], tmp_path / "dev.tsv")["accuracy"] == pytest.approx(summary["best"])


def test_classifier_pooling_is_for_classification_heads() -> None:
    with pytest.raises(ConfigError, match="--classifier-pooling applies to classify and multilabel heads"):
        FinetuneArgs(task="tag", model="m", train="t", out="o", classifier_pooling="mean")
