"""Pruning by surgery: the pruned model equals the masked one, shrinks, saves and reloads."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.testing import assert_close

from nlpforge.checkpoint import load_checkpoint, save_checkpoint
from nlpforge.compress.prune import (
    count_parameters,
    drop_layers,
    ffn_importance,
    head_importance,
    keep_zeros_,
    magnitude_ffn_importance,
    magnitude_head_importance,
    magnitude_prune_,
    prune_ffn_neurons,
    prune_heads,
    select_lowest,
    sparsity_report,
)
from nlpforge.config import ModelConfig
from nlpforge.errors import ConfigError
from nlpforge.models.bert import BertForMaskedLM, BertModel, padding_mask
from nlpforge.models.gpt import GPT
from nlpforge.tasks.classify import SequenceClassifier

HEADS, INTERMEDIATE, HIDDEN = 4, 37, 32  # the tiny-bert preset


def tiny_config(**overrides) -> ModelConfig:
    return ModelConfig.from_name("tiny-bert", dropout=0.0, attention_dropout=0.0, **overrides)


def tiny_encoder(seed: int = 0, **overrides) -> BertModel:
    torch.manual_seed(seed)
    return BertModel(tiny_config(**overrides)).eval()


def tiny_classifier(seed: int = 0) -> SequenceClassifier:
    """As task models are built (tasks.task_model_from_encoder, load_checkpoint): without a pooler."""
    torch.manual_seed(seed)
    return SequenceClassifier(tiny_config(has_pooler=False)).eval()


def inputs(seed: int = 1) -> dict[str, torch.Tensor]:
    """Three sequences of 7 tokens; the last two are padded (mask 0 at the end)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 99, (3, 7), generator=generator)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask}


def labelled_batches(n: int = 2) -> list[dict[str, torch.Tensor]]:
    return [{**inputs(seed), "labels": torch.tensor([0, 1, 1])} for seed in range(n)]


def gates_without(removed: dict[int, list[int]], num_layers: int = 2) -> list[torch.Tensor]:
    gates = [torch.ones(HEADS) for _ in range(num_layers)]
    for layer, heads in removed.items():
        gates[layer][heads] = 0.0
    return gates


# --------------------------------------------------------------------------- heads: the invariant
@pytest.mark.parametrize("removed", [{0: [1]}, {0: [0, 3], 1: [2]}, {0: [1, 2], 1: [0, 1, 2, 3]}],
                         ids=["one", "both-layers", "whole-layer"])
@pytest.mark.parametrize("need_probs", [False, True], ids=["sdpa", "explicit"])
def test_pruning_heads_equals_masking_them(removed, need_probs):
    model = tiny_encoder()
    batch = inputs()
    masked = model(**batch, head_mask=gates_without(removed), output_attentions=need_probs)
    pruned = copy.deepcopy(model)
    prune_heads(pruned, removed)
    out = pruned(**batch, output_attentions=need_probs)
    assert_close(out.last_hidden_state, masked.last_hidden_state, atol=1e-5, rtol=1e-5)
    assert_close(out.pooler_output, masked.pooler_output, atol=1e-5, rtol=1e-5)
    expected_heads = [HEADS - len(removed.get(i, [])) for i in range(2)]
    assert [layer.attn.num_heads for layer in pruned.layers] == expected_heads
    assert pruned.config.layer_heads == expected_heads
    assert [pruned.config.heads_of_layer(i) for i in range(2)] == expected_heads


def test_pruning_heads_of_a_task_model_equals_masking_them_and_keeps_both_configs_in_step():
    model = tiny_classifier()
    assert model.config is not model.encoder.config  # the task model's encoder has its own (no pooler)
    removed = {1: [3, 0]}
    masked = model(**inputs(), head_mask=gates_without(removed)).logits
    prune_heads(model, removed)
    assert_close(model(**inputs()).logits, masked, atol=1e-5, rtol=1e-5)
    assert model.config.layer_heads == model.encoder.config.layer_heads == [4, 2]
    assert model.encoder.config.has_pooler is False


def test_pruning_twice_uses_the_current_head_indices():
    model = tiny_encoder()
    masked = model(**inputs(), head_mask=gates_without({0: [0, 1], 1: [3]})).last_hidden_state
    prune_heads(model, {0: [0]})
    prune_heads(model, {0: [0], 1: [3]})  # head 0 now is the original head 1
    assert model.config.layer_heads == [2, 3]
    assert_close(model(**inputs()).last_hidden_state, masked, atol=1e-5, rtol=1e-5)
    prune_heads(model, {0: [0, 1]})  # then the whole layer
    assert model.config.layer_heads == [0, 3]
    assert model(**inputs()).last_hidden_state.isfinite().all()


def test_pruning_heads_shrinks_the_parameters_exactly():
    model = tiny_encoder()
    before = count_parameters(model)
    prune_heads(model, {0: [2], 1: [0, 1]})
    D = HIDDEN // HEADS
    per_head = 3 * D * HIDDEN + 3 * D + HIDDEN * D  # q, k, v rows + biases, out columns
    assert count_parameters(model) == before - 3 * per_head
    assert model.layers[0].attn.qkv.weight.shape == (3 * 3 * D, HIDDEN)
    assert model.layers[1].attn.out.weight.shape == (HIDDEN, 2 * D)


def test_bert_for_masked_lm_shares_one_config_and_prunes():
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_config()).eval()
    assert model.config is model.encoder.config
    masked = model.encoder(**inputs(), head_mask=gates_without({0: [1]})).last_hidden_state
    prune_heads(model, {0: [1]})
    assert model.config.layer_heads == [3, 4]
    assert_close(model.encoder(**inputs()).last_hidden_state, masked, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------ FFN neurons
@pytest.mark.parametrize("removed", [{0: [0, 5, 36]}, {0: [1], 1: list(range(INTERMEDIATE))}],
                         ids=["some", "whole-layer"])
def test_pruning_ffn_neurons_equals_zeroing_them(removed):
    model = tiny_encoder()
    zeroed = copy.deepcopy(model)
    with torch.no_grad():
        for layer, neurons in removed.items():
            zeroed.layers[layer].ffn.up.weight[neurons] = 0.0  # GELU(0) = 0: their down columns add nothing
            zeroed.layers[layer].ffn.up.bias[neurons] = 0.0
    before = count_parameters(model)
    prune_ffn_neurons(model, removed)
    assert_close(model(**inputs()).last_hidden_state, zeroed(**inputs()).last_hidden_state, atol=1e-5, rtol=1e-5)
    widths = [INTERMEDIATE - len(removed.get(i, [])) for i in range(2)]
    assert model.config.layer_intermediate == widths
    assert [layer.ffn.down.in_features for layer in model.layers] == widths
    removed_count = sum(len(v) for v in removed.values())
    assert count_parameters(model) == before - removed_count * (2 * HIDDEN + 1)


# ------------------------------------------------------------------------------------- checkpoints
def save_and_reload(model, directory):
    save_checkpoint(directory, model, model.config, None, "classify", meta={"labels": ["a", "b"]})
    return load_checkpoint(directory)


def test_pruned_classifier_saves_and_reloads_with_identical_outputs(tmp_path):
    model = tiny_classifier()
    prune_heads(model, {0: [1, 2], 1: [0, 1, 3]})
    prune_ffn_neurons(model, {1: [0, 3, 7]})
    expected = model(**inputs()).logits
    loaded = save_and_reload(model, tmp_path / "pruned")
    assert loaded.head == "classify" and loaded.meta["labels"] == ["a", "b"]
    assert loaded.config.layer_heads == [2, 1]
    assert loaded.config.layer_intermediate == [INTERMEDIATE, INTERMEDIATE - 3]
    assert count_parameters(loaded.model) == count_parameters(model)
    assert_close(loaded.model(**inputs()).logits, expected, atol=1e-6, rtol=1e-6)
    # and it can be pruned further after reloading
    prune_heads(loaded.model, {0: [0]})
    assert loaded.config.layer_heads == [1, 1]  # the Checkpoint's config is the model's config


def test_a_layer_without_heads_saves_and_reloads(tmp_path):
    model = tiny_classifier()
    prune_heads(model, {1: [0, 1, 2, 3]})
    expected = model(**inputs()).logits
    loaded = save_and_reload(model, tmp_path / "no-heads")
    assert loaded.config.layer_heads == [4, 0]
    assert_close(loaded.model(**inputs()).logits, expected, atol=1e-6, rtol=1e-6)


def test_unpruned_sizes_leave_the_config_lists_unset():
    model = tiny_encoder()
    prune_heads(model, {})
    drop_layers(model, [1, 0])
    assert model.config.layer_heads is None and model.config.layer_intermediate is None


# ------------------------------------------------------------------------------------ importances
def test_head_importance_shapes_norm_and_no_side_effects():
    model = tiny_classifier()
    model.train()
    scores = head_importance(model, labelled_batches())
    assert [s.shape for s in scores] == [(HEADS,), (HEADS,)]
    for s in scores:
        assert s.isfinite().all() and (s >= 0).all()
        assert_close(s.norm(), torch.tensor(1.0))
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())  # gradients taken for the gates only


def test_head_importance_follows_pruning_and_skips_empty_layers():
    model = tiny_classifier()
    prune_heads(model, {0: [0, 1, 2, 3], 1: [1]})
    scores = head_importance(model, labelled_batches())
    assert [s.shape for s in scores] == [(0,), (3,)]
    assert_close(scores[1].norm(), torch.tensor(1.0))


def test_head_importance_with_a_custom_loss_on_a_bare_encoder():
    model = tiny_encoder()

    def loss_fn(encoder, batch, head_mask):
        return encoder(**batch, head_mask=head_mask).last_hidden_state.pow(2).mean()

    scores = head_importance(model, [inputs(0), inputs(1)], loss_fn)
    assert [s.shape for s in scores] == [(HEADS,), (HEADS,)]
    with pytest.raises(ConfigError, match="at least one batch"):
        head_importance(model, [], loss_fn)


def test_ffn_importance_is_the_taylor_score_of_the_neuron():
    model = tiny_classifier()
    batches = labelled_batches(1)
    scores = ffn_importance(model, batches)
    assert [s.shape for s in scores] == [(INTERMEDIATE,), (INTERMEDIATE,)]
    assert all(s.isfinite().all() and (s >= 0).all() for s in scores)
    assert all(p.grad is None for p in model.parameters())
    # By hand for neuron 4 of layer 1: |w . dL/dw| over its up row, up bias and down column.
    model.zero_grad()
    model(**batches[0]).loss.backward()
    ffn = model.encoder.layers[1].ffn
    by_hand = (ffn.up.weight[4] @ ffn.up.weight.grad[4] + ffn.up.bias[4] * ffn.up.bias.grad[4]
               + ffn.down.weight[:, 4] @ ffn.down.weight.grad[:, 4]).abs()
    assert_close(scores[1][4], by_hand.detach(), rtol=1e-4, atol=1e-7)


def test_magnitude_importances_need_no_data():
    model = tiny_encoder()
    prune_heads(model, {1: [0]})
    heads, neurons = magnitude_head_importance(model), magnitude_ffn_importance(model)
    assert [s.shape for s in heads] == [(4,), (3,)]
    assert [s.shape for s in neurons] == [(INTERMEDIATE,), (INTERMEDIATE,)]
    attn, D = model.layers[0].attn, HIDDEN // HEADS
    rows = [attn.qkv.weight[b * HEADS * D + 2 * D: b * HEADS * D + 3 * D] for b in range(3)]
    biases = [attn.qkv.bias[b * HEADS * D + 2 * D: b * HEADS * D + 3 * D] for b in range(3)]
    by_hand = torch.cat([*(r.flatten() for r in rows), *biases, attn.out.weight[:, 2 * D: 3 * D].flatten()]).norm()
    assert_close(heads[0][2], by_hand.detach())


def test_select_lowest_takes_the_global_minimum_and_keeps_a_floor():
    importances = [torch.tensor([0.1, 0.2, 0.9]), torch.tensor([0.01, 0.02])]
    assert select_lowest(importances, 3) == {0: [0], 1: [0, 1]}
    assert select_lowest(importances, 3, keep_min_per_layer=1) == {0: [0, 1], 1: [0]}
    assert select_lowest(importances, 0) == {}
    assert select_lowest(importances, 5) == {0: [0, 1, 2], 1: [0, 1]}
    with pytest.raises(ConfigError, match="at most 3"):
        select_lowest(importances, 4, keep_min_per_layer=1)
    with pytest.raises(ConfigError, match="non-negative"):
        select_lowest(importances, -1)
    with pytest.raises(ConfigError, match="finite"):
        select_lowest([torch.tensor([float("nan")])], 1)


def test_importance_select_prune_compose():
    model = tiny_classifier()
    heads = select_lowest(head_importance(model, labelled_batches()), 3, keep_min_per_layer=1)
    prune_heads(model, heads)
    neurons = select_lowest(ffn_importance(model, labelled_batches()), 20)
    prune_ffn_neurons(model, neurons)
    assert sum(model.config.layer_heads) == 2 * HEADS - 3 and min(model.config.layer_heads) >= 1
    assert sum(model.config.layer_intermediate) == 2 * INTERMEDIATE - 20
    assert model(**inputs()).logits.shape == (3, 2)


# ----------------------------------------------------------------------------------------- layers
@pytest.mark.parametrize("keep", [[0, 2], [3, 1], [2]])
def test_drop_layers_equals_running_only_the_kept_layers(keep):
    model = tiny_encoder(num_layers=4)
    prune_heads(model, {1: [0], 2: [1, 2]})
    expected_heads = [[4, 3, 2, 4][i] for i in keep]
    batch = inputs()
    with torch.no_grad():
        x, mask = model.embeddings(batch["input_ids"]), padding_mask(batch["attention_mask"])
        for i in keep:
            x, _ = model.layers[i](x, mask)
    drop_layers(model, keep)
    assert model.config.num_layers == len(keep) == len(model.layers)
    assert model.config.layer_heads == (None if all(n == 4 for n in expected_heads) else expected_heads)
    assert_close(model(**batch).last_hidden_state, x, atol=1e-6, rtol=1e-6)


def test_drop_layers_updates_both_configs_of_a_task_model(tmp_path):
    model = tiny_classifier()
    prune_ffn_neurons(model, {0: [1, 2]})
    drop_layers(model, [0])
    assert model.config.num_layers == model.encoder.config.num_layers == 1
    assert model.config.layer_intermediate == model.encoder.config.layer_intermediate == [INTERMEDIATE - 2]
    expected = model(**inputs()).logits
    assert_close(save_and_reload(model, tmp_path / "short").model(**inputs()).logits, expected, atol=1e-6, rtol=1e-6)


# ------------------------------------------------------------------------------ unstructured zeros
def test_magnitude_prune_reaches_the_sparsity_and_the_zeros_stay(tmp_path):
    model = tiny_classifier()
    report = magnitude_prune_(model, 0.5)
    assert abs(report["sparsity"] - 0.5) < 0.01
    per_module = sparsity_report(model)
    selected = {k: v for k, v in per_module.items() if k.startswith("encoder.layers.")}
    assert len(selected) == 8  # qkv, out, up, down of 2 layers
    assert sum(v["zeros"] for v in selected.values()) == report["zeros"]
    assert sum(v["total"] for v in selected.values()) == report["total"]
    assert per_module["head.out"]["sparsity"] == 0.0  # outside the encoder layers: untouched
    assert not any("weight_orig" in k or "mask" in k for k in model.state_dict())  # zeros baked in
    zero = {k: v == 0 for k, v in model.state_dict().items() if k.startswith("encoder.layers.") and "weight" in k}

    # Training keeps them zero once their gradients are masked (AdamW with weight decay).
    handles = keep_zeros_(model)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for batch in labelled_batches(3):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    state = model.state_dict()
    for key, was_zero in zero.items():
        assert (state[key][was_zero] == 0).all(), key
    assert (state["encoder.layers.0.ffn.up.weight"] != 0).sum() > 0
    for handle in handles:
        handle.remove()

    # Zeros survive a checkpoint; pruning further counts the zeros already there.
    model.eval()
    loaded = save_and_reload(model, tmp_path / "sparse").model
    assert sparsity_report(loaded)["encoder.layers.1.attn.qkv"] == sparsity_report(model)["encoder.layers.1.attn.qkv"]
    again = magnitude_prune_(loaded, 0.8, include=("up", "down"))
    assert abs(again["sparsity"] - 0.8) < 0.01
    assert all((loaded.state_dict()[k][z] == 0).all() for k, z in zero.items())


def test_magnitude_prune_selects_modules_by_name():
    model = tiny_encoder()
    report = magnitude_prune_(model, 0.3, include=("attn.qkv",))
    assert report["total"] == 2 * 3 * HIDDEN * HIDDEN
    assert sparsity_report(model)["layers.0.ffn.up"]["zeros"] == 0
    with pytest.raises(ConfigError, match="ends with"):
        magnitude_prune_(model, 0.3, include=("query",))
    with pytest.raises(ConfigError, match="sparsity"):
        magnitude_prune_(model, 1.5)


# ----------------------------------------------------------------------------------------- errors
def test_user_errors_are_config_errors_and_change_nothing():
    model = tiny_encoder()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match="layer index 2"):
        prune_heads(model, {2: [0]})
    with pytest.raises(ConfigError, match="out of range"):
        prune_heads(model, {0: [0], 1: [4]})  # layer 0 is not touched either
    with pytest.raises(ConfigError, match="more than once"):
        prune_heads(model, {0: [1, 1]})
    with pytest.raises(ConfigError, match="out of range"):
        prune_heads(model, {0: [-1]})
    with pytest.raises(ConfigError, match="out of range"):
        prune_ffn_neurons(model, {0: [INTERMEDIATE]})
    with pytest.raises(ConfigError, match="at least one"):
        drop_layers(model, [])
    with pytest.raises(ConfigError, match="more than once"):
        drop_layers(model, [0, 0])
    with pytest.raises(ConfigError, match="out of range"):
        drop_layers(model, [0, 2])
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert model.config.layer_heads is None and model.config.num_layers == 2
    with pytest.raises(ConfigError, match="encoder-family"):
        prune_heads(GPT(ModelConfig.from_name("tiny-gpt")), {0: [0]})
