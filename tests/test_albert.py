"""ALBERT in the encoder family: factorised embeddings (V x E, projected to H), one layer shared by
every depth, the H -> E masked-LM head. Hidden-state and logit parity with transformers for every
head is in test_parity.py (HF_TINY); here: what transformers loads back from nlpforge, the task
heads built on an ALBERT encoder, MLM + SOP against AlbertForPreTraining, and the clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from torch.testing import assert_close

from conftest import HF_TINY, tiny_hf_model, tiny_tokenizer
from nlpforge.checkpoint import load_checkpoint, save_checkpoint
from nlpforge.compress.distill import student_from_teacher
from nlpforge.compress.prune import drop_layers, prune_heads
from nlpforge.config import ModelConfig
from nlpforge.convert import hf_to_nlpforge
from nlpforge.convert.hf_config import config_from_hf, config_to_hf
from nlpforge.errors import CheckpointError, ConfigError, ConversionError
from nlpforge.models.bert import BertModel
from nlpforge.pretraining import get_objective
from nlpforge.tasks import get_task, task_model_from_encoder

ATOL = dict(atol=1e-5, rtol=1e-5)


def padded_batch() -> dict[str, torch.Tensor]:
    """3 sequences of 9 tokens, the 2nd padded after 5 tokens, the 3rd after 7; two segments."""
    input_ids = torch.randint(5, 99, (3, 9), generator=torch.Generator().manual_seed(1))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    attention_mask[2, 7:] = 0
    input_ids[attention_mask == 0] = 0
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 4:] = 1
    return dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)


def test_one_shared_layer_and_factorised_embeddings(tmp_path: Path) -> None:
    hf = tiny_hf_model("AlbertModel")
    hf.save_pretrained(tmp_path)
    ours = load_checkpoint(tmp_path).model
    assert isinstance(ours, BertModel) and ours.config.shared_layers and ours.config.embedding_size == 16
    assert len(ours.layers) == 1 and len(ours.depth()) == 2 and ours.depth()[0] is ours.depth()[1]
    assert ours.embeddings.word.weight.shape == (99, 16) and ours.embeddings.project.weight.shape == (32, 16)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())


@pytest.mark.parametrize(("name", "auto"), [("AlbertModel", transformers.AutoModel),
                                            ("AlbertForMaskedLM", transformers.AutoModelForMaskedLM)])
def test_transformers_loads_what_nlpforge_saves(name: str, auto: type, tmp_path: Path) -> None:
    tiny_hf_model(name).save_pretrained(tmp_path / "src")
    loaded = load_checkpoint(tmp_path / "src")
    save_checkpoint(tmp_path / "out", loaded.model, loaded.config, None, loaded.head)
    theirs = auto.from_pretrained(tmp_path / "out").eval()
    assert type(theirs).__name__ == name and theirs.config.num_hidden_groups == 1
    batch = padded_batch()
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        expected, got = theirs(**batch), loaded.model(**batch)
        packed = loaded.model(**batch, packed=True)
    field = "logits" if "Masked" in name else "last_hidden_state"
    assert_close(getattr(got, field), getattr(expected, field), **ATOL)
    assert_close(getattr(packed, field)[real], getattr(expected, field)[real], **ATOL)
    again = load_checkpoint(tmp_path / "out")
    assert again.config == loaded.config and again.head == loaded.head


@pytest.mark.parametrize(("task_name", "auto"), [
    ("classify", transformers.AutoModelForSequenceClassification),
    ("tag", transformers.AutoModelForTokenClassification),
    ("span_qa", transformers.AutoModelForQuestionAnswering),
])
def test_task_heads_on_an_albert_encoder(task_name: str, auto: type, tmp_path: Path) -> None:
    tiny_hf_model("AlbertModel").save_pretrained(tmp_path / "encoder")
    encoder = load_checkpoint(tmp_path / "encoder").model
    task = get_task(task_name)
    model = task_model_from_encoder(encoder, task, num_labels=3 if task_name != "span_qa" else 2).eval()
    assert model.encoder.config.shared_layers and len(model.encoder.layers) == 1
    if task_name == "classify":  # ALBERT's pretrained pooler starts the head, as in transformers
        assert torch.equal(model.head.dense.weight, encoder.pooler.dense.weight)
    labels = ["A", "B", "C"] if task_name != "span_qa" else None
    save_checkpoint(tmp_path / "task", model, model.config, None, task.head,
                    meta={"task": task_name, **({"labels": labels} if labels else {})})
    theirs = auto.from_pretrained(tmp_path / "task").eval()
    assert type(theirs).__name__.startswith("Albert")
    batch = padded_batch()
    with torch.no_grad():
        expected, got = theirs(**batch), model(**batch)
    fields = ("start_logits", "end_logits") if task_name == "span_qa" else ("logits",)
    for field in fields:
        assert_close(getattr(got, field), getattr(expected, field), **ATOL)


def test_mlm_plus_sop_loss_equals_albert_for_pretraining(tmp_path: Path, tiny_vocab: Path) -> None:
    """Our SOP pair head (tanh pooler + classifier) holds AlbertForPreTraining's albert.pooler and
    sop_classifier; L = L_mlm + L_sop on the same blocks and masks."""
    tokenizer = tiny_tokenizer(tiny_vocab)
    config_cls, kwargs = HF_TINY["AlbertForMaskedLM"]
    torch.manual_seed(0)
    hf = transformers.AlbertForPreTraining(config_cls(**kwargs)).eval()
    masked_lm = transformers.AlbertForMaskedLM(config_cls(**kwargs))
    masked_lm.load_state_dict(hf.state_dict(), strict=False)  # encoder + predictions
    masked_lm.save_pretrained(tmp_path / "mlm")
    objective = get_objective("mlm+sop")
    ours = objective.extend(load_checkpoint(tmp_path / "mlm").model).eval()
    ours.extra["pair"].pooler.load_state_dict(hf.albert.pooler.state_dict())
    ours.extra["pair"].classifier.load_state_dict(hf.sop_classifier.classifier.state_dict())
    documents = [[f"{w} {w}{v} {v}" for w, v in zip("abcdefgh", "hgfedcba", strict=True)] for _ in range(12)]
    blocks = list(objective.blocks(tokenizer, documents, 24, seed=0))
    assert {b["pair_label"] for b in blocks} == {0, 1}  # kept and swapped pairs
    rows = {name: np.array([b[name] for b in blocks]) for name in objective.fields(24)}
    batch = objective.batch(rows, list(range(len(blocks))), tokenizer, epoch=0)
    loss, _ = objective.loss(ours, batch)
    expected = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  token_type_ids=batch["token_type_ids"], labels=batch["labels"],
                  sentence_order_label=batch["pair_label"]).loss
    assert_close(loss, expected, **ATOL)


@pytest.mark.parametrize("objective_name", ["mlm", "span"])
def test_encoder_objectives_build_an_albert(objective_name: str, tiny_vocab: Path) -> None:
    """The span boundary head ends E wide, as the tied decoder needs."""
    tokenizer = tiny_tokenizer(tiny_vocab)
    config = ModelConfig.from_name("tiny-bert", model_type="albert", embedding_size=16, hidden_act="gelu_new")
    objective = get_objective(objective_name)
    model = objective.new_model(config)
    documents = [["ab ac ad ae af", "ba be bi bo bu", "ca ce ci co cu"] for _ in range(10)]
    blocks = list(objective.blocks(tokenizer, documents, 16, seed=0))
    rows = {name: np.array([b[name] for b in blocks]) for name in objective.fields(16)}
    batch = objective.batch(rows, list(range(len(blocks))), tokenizer, epoch=0)
    loss, scores = objective.loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss) and scores.tokens > 0
    assert model.lm.encoder.layers[0].attn.qkv.weight.grad is not None


def test_preset_albert_6l_h256() -> None:
    config = ModelConfig.from_name("albert-6l-h256", vocab_size=500)
    model = BertModel(config)
    assert (config.embedding_size, config.hidden_size, config.num_layers, config.num_heads,
            config.intermediate_size) == (128, 256, 6, 4, 1024)
    assert len(model.layers) == 1 and len(model.depth()) == 6
    hf = config_to_hf(config, "base")
    assert hf["model_type"] == "albert" and hf["embedding_size"] == 128 and hf["hidden_act"] == "gelu_new"
    assert config_from_hf(hf) == config


@pytest.mark.parametrize("field", ["num_hidden_groups", "inner_group_num"])
def test_unsupported_layer_sharing_is_a_clear_error(field: str, tmp_path: Path) -> None:
    hf = tiny_hf_model("AlbertModel")
    setattr(hf.config, field, 2)
    hf.config.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=rf"ALBERT with {field} = 2 is not supported"):
        load_checkpoint(tmp_path)


def test_config_and_weight_errors() -> None:
    with pytest.raises(ConfigError, match="'embedding_size' is ALBERT's"):
        ModelConfig.from_name("tiny-bert", embedding_size=16)
    with pytest.raises(ConfigError, match="model_type 'albert' needs 'embedding_size'"):
        ModelConfig.from_name("tiny-bert", model_type="albert")
    with pytest.raises(ConfigError, match="not supported for ALBERT"):
        ModelConfig.from_name("albert-6l-h256", layer_heads=[4, 4, 4, 4, 4, 3])
    hf = tiny_hf_model("AlbertModel")
    state = hf.state_dict()
    config = config_from_hf(hf.config.to_dict(), weights=state)
    state["encoder.albert_layer_groups.1.albert_layers.0.ffn.weight"] = torch.zeros(37, 32)  # a 2nd group
    with pytest.raises(ConversionError, match=r"unknown weight 'encoder\.albert_layer_groups\.1\."):
        hf_to_nlpforge(state, config)


def test_structured_pruning_and_layer_cutting_refuse_shared_layers(tmp_path: Path) -> None:
    tiny_hf_model("AlbertModel").save_pretrained(tmp_path)
    model = load_checkpoint(tmp_path).model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match=r"structured pruning .* not supported for ALBERT"):
        prune_heads(model, {0: [1]})
    with pytest.raises(ConfigError, match=r"structured pruning .* not supported for ALBERT"):
        drop_layers(model, [0])
    with pytest.raises(ConfigError, match="ALBERT teacher"):
        student_from_teacher(model, [2])
    assert model.config.num_layers == 2 and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_onnx_export_of_an_albert_tagger(tmp_path: Path) -> None:
    from nlpforge.artifacts import OnnxModel
    from nlpforge.compress.export import export_onnx
    from nlpforge.tasks.tag import TokenTagger

    config = ModelConfig.from_name("tiny-bert", model_type="albert", embedding_size=16, num_labels=3)
    torch.manual_seed(0)
    model = TokenTagger(dataclasses.replace(config, has_pooler=False)).eval()
    onnx_model = OnnxModel.load(export_onnx(model, tmp_path / "onnx"), threads=1)
    batch = padded_batch()
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        expected = model(**batch).logits
    assert_close(onnx_model(**batch).logits[real], expected[real], atol=1e-4, rtol=1e-4)
