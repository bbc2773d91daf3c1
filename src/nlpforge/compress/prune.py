"""Pruning by surgery: remove attention heads, FFN neurons and whole layers; zero small weights.

Structured pruning (``prune_heads``, ``prune_ffn_neurons``, ``drop_layers``) replaces the
``nn.Linear`` modules of the encoder (models/bert.py) with smaller ones holding the kept rows and
columns, and writes the new sizes into the config (``layer_heads``, ``layer_intermediate``,
``num_layers``), so the model is really smaller and faster and its saved checkpoint reloads in
nlpforge (config.json carries them as ``nlpforge_*`` keys). Unstructured pruning
(``magnitude_prune_``) only sets weights to zero: the shapes stay, so it saves nothing until a
sparse kernel or a compressed format uses the zeros.

Every function works on a ``BertModel`` or on any model holding one as ``.encoder`` (the task
models of tasks/heads.py, ``BertForMaskedLM``), and updates ``model.config`` and
``model.encoder.config`` alike (they are distinct objects in the task models).

Indices always refer to the model as it is now: after removing head 0 of a layer, the former
head 1 is head 0. Surgery creates new parameters, so build the optimizer after it.

Importance scores, the inputs to ``select_lowest``:

- ``head_importance``: Michel et al. 2019 ("Are Sixteen Heads Really Better than One?"): a gate
  g_h = 1 multiplies each head's output; |dL/dg_h| summed over batches, L2-normalised per layer.
- ``ffn_importance``: the first-order Taylor estimate of the loss change when a neuron goes,
  |sum over the neuron's parameters of w * dL/dw| (its ``up`` row and bias, its ``down`` column),
  summed over batches.
- ``magnitude_head_importance`` / ``magnitude_ffn_importance``: L2 norms of the same parameters,
  no data needed.

Shapes: A heads of a layer now, D head size, H hidden, I FFN neurons of a layer now.
"""

from __future__ import annotations

import dataclasses
import operator
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from nlpforge.config import ModelConfig
from nlpforge.errors import ConfigError
from nlpforge.models.bert import EncoderLayer
from nlpforge.tasks import encoder_of

# loss_fn(model, batch, head_mask) -> scalar loss. head_mask is a list with one (A_layer,) gate per
# layer (None from ffn_importance); pass it on to the encoder as ``head_mask=``.
LossFn = Callable[[nn.Module, Any, "list[torch.Tensor] | None"], torch.Tensor]
LINEAR_NAMES = ("qkv", "out", "up", "down")


def model_loss(
    model: nn.Module, batch: Mapping[str, torch.Tensor], head_mask: list[torch.Tensor] | None
) -> torch.Tensor:
    """The default ``loss_fn``: ``model(**batch, head_mask=head_mask).loss``.

    Fits the task models of tasks/heads.py with a batch that carries its labels (``labels``, or
    ``start_positions`` / ``end_positions``), as the task collators produce it.
    """
    loss = model(**batch, head_mask=head_mask).loss
    if loss is None:
        raise ConfigError("the model returned no loss: give the batches labels, or pass a loss_fn")
    return loss


# ------------------------------------------------------------------------------------- the model
def _configs(model: nn.Module) -> list[ModelConfig]:
    """``model.config`` and ``model.encoder.config``, each object once."""
    found: list[ModelConfig] = []
    for owner in (model, encoder_of(model)):
        config = getattr(owner, "config", None)
        if isinstance(config, ModelConfig) and not any(config is seen for seen in found):
            found.append(config)
    return found


def _sync_config(model: nn.Module) -> None:
    """Write the layer count and each layer's heads / FFN width, read off the modules, into the configs.

    A list that equals the unpruned default is stored as None, so an unpruned model stays loadable
    by ``transformers``. Mutates the config objects in place: whoever holds them sees the change.
    """
    layers = encoder_of(model).layers
    heads = [layer.attn.num_heads for layer in layers]
    widths = [layer.ffn.up.out_features for layer in layers]
    for config in _configs(model):
        checked = dataclasses.replace(  # re-runs the validation of __post_init__
            config,
            num_layers=len(layers),
            layer_heads=None if all(n == config.num_heads for n in heads) else list(heads),
            layer_intermediate=None if all(n == config.intermediate_size for n in widths) else list(widths),
        )
        for name in ("num_layers", "layer_heads", "layer_intermediate"):
            setattr(config, name, getattr(checked, name))


def _own_layers(model: nn.Module) -> nn.ModuleList:
    """The encoder's layers, for surgery that resizes or drops one depth's layer."""
    encoder = encoder_of(model)
    if encoder.config.shared_layers:
        raise ConfigError("structured pruning (heads, FFN neurons, layers) is not supported for ALBERT: one set "
                          "of layer weights serves every depth; use unstructured magnitude pruning instead")
    return encoder.layers


def _layer(model: nn.Module, index: int) -> EncoderLayer:
    layers = _own_layers(model)
    try:
        position = operator.index(index)  # ints, numpy and 0-d torch integers; not "0" or 0.0
    except TypeError:
        position = -1
    if isinstance(index, bool) or not 0 <= position < len(layers):
        raise ConfigError(f"layer index {index!r} is out of range: the model has layers 0..{len(layers) - 1} "
                          "(integers)")
    return layers[position]


def _indices(values: Iterable[int], size: int, what: str) -> list[int]:
    """Validated, sorted unit indices in [0, size), each at most once."""
    indices = [int(v) for v in values]
    if any(not 0 <= i < size for i in indices):
        raise ConfigError(f"{what}: indices {sorted(indices)} out of range; there are {size} (0..{size - 1})")
    if len(set(indices)) != len(indices):
        raise ConfigError(f"{what}: indices {sorted(indices)} name a unit more than once")
    return sorted(indices)


def _plain_linear(module: nn.Module, what: str) -> nn.Linear:
    if type(module) is not nn.Linear:
        raise ConfigError(f"{what} is a {type(module).__name__}, not a plain nn.Linear: prune before wrapping "
                          "it (LoRA, quantization), or merge the wrapper into the weights first")
    return module


def _new_linear(old: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """An nn.Linear holding copies of ``weight`` (out, in) and ``bias`` (out,), like ``old`` otherwise.

    Built on the meta device and then filled, so it draws no random numbers (the RNG stream of the
    training that follows does not change) and a zero-size layer does not warn.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta", dtype=weight.dtype)
    new.weight = nn.Parameter(weight.detach().clone(), requires_grad=old.weight.requires_grad)
    if bias is not None:
        new.bias = nn.Parameter(bias.detach().clone(), requires_grad=old.bias.requires_grad)
    return new.train(old.training)


# ------------------------------------------------------------------------------ structured surgery
@torch.no_grad()
def prune_heads(model: nn.Module, heads_to_remove: Mapping[int, Sequence[int]]) -> None:
    """Remove attention heads: ``{layer: [head, ...]}``, indices of the heads the layer has now.

    Drops each head's D rows from the q, k and v blocks of the fused ``qkv`` and its D input
    columns from ``out``; removing every head of a layer leaves it adding only ``out``'s bias.
    The result equals masking those heads with ``head_mask`` zeros.
    """
    checked = {}  # validate everything before changing anything
    for index, heads in heads_to_remove.items():
        layer = _layer(model, index)
        _plain_linear(layer.attn.qkv, f"layer {index} attn.qkv")
        _plain_linear(layer.attn.out, f"layer {index} attn.out")
        checked[index] = (layer, _indices(heads, layer.attn.num_heads, f"heads of layer {index}"))
    for layer, remove in checked.values():
        attn = layer.attn
        qkv, out = attn.qkv, attn.out
        A, D = attn.num_heads, attn.head_dim
        removed = set(remove)
        keep = torch.tensor([h for h in range(A) if h not in removed], dtype=torch.long, device=qkv.weight.device)
        H_in, H_out = qkv.in_features, out.out_features
        # qkv rows are [q heads | k heads | v heads], D rows each: (3 A D, H) -> (3, A, D, H) -> (3 A' D, H)
        qkv_weight = qkv.weight.view(3, A, D, H_in)[:, keep].reshape(3 * len(keep) * D, H_in)
        qkv_bias = qkv.bias.view(3, A, D)[:, keep].reshape(3 * len(keep) * D) if qkv.bias is not None else None
        # out columns are the concatenated head contexts: (H, A D) -> (H, A, D) -> (H, A' D)
        out_weight = out.weight.view(H_out, A, D)[:, keep].reshape(H_out, len(keep) * D)
        attn.qkv = _new_linear(qkv, qkv_weight, qkv_bias)
        attn.out = _new_linear(out, out_weight, out.bias)
        attn.num_heads = len(keep)
    _sync_config(model)


@torch.no_grad()
def prune_ffn_neurons(model: nn.Module, neurons_to_remove: Mapping[int, Sequence[int]]) -> None:
    """Remove FFN neurons: ``{layer: [neuron, ...]}``, indices into the layer's current ``up`` outputs.

    Drops each neuron's ``up`` row and bias and its ``down`` input column; equals zeroing its
    ``up`` row and bias (act(0) = 0 for GELU and ReLU). Removing every neuron is allowed: the
    FFN then adds only ``down``'s bias.
    """
    checked = {}  # validate everything before changing anything
    for index, neurons in neurons_to_remove.items():
        layer = _layer(model, index)
        _plain_linear(layer.ffn.up, f"layer {index} ffn.up")
        _plain_linear(layer.ffn.down, f"layer {index} ffn.down")
        checked[index] = (layer, _indices(neurons, layer.ffn.up.out_features, f"FFN neurons of layer {index}"))
    for layer, remove in checked.values():
        up, down = layer.ffn.up, layer.ffn.down
        removed = set(remove)
        keep = torch.tensor([n for n in range(up.out_features) if n not in removed], dtype=torch.long,
                            device=up.weight.device)
        layer.ffn.up = _new_linear(up, up.weight[keep], up.bias[keep] if up.bias is not None else None)  # (I', H)
        layer.ffn.down = _new_linear(down, down.weight[:, keep], down.bias)  # (H, I')
    _sync_config(model)


def drop_layers(model: nn.Module, keep: Sequence[int]) -> None:
    """Keep only the encoder layers ``keep``, in that order (so ``[0, 2]`` drops layer 1 of 3).

    Each kept layer keeps its weights and its (possibly pruned) sizes.
    """
    layers = _own_layers(model)
    keep = [int(i) for i in keep]
    if not keep:
        raise ConfigError("drop_layers: keep at least one layer")
    if len(set(keep)) != len(keep):
        raise ConfigError(f"drop_layers: keep {keep} names a layer more than once")
    if any(not 0 <= i < len(layers) for i in keep):
        raise ConfigError(f"drop_layers: keep {keep} is out of range; the model has layers 0..{len(layers) - 1}")
    encoder_of(model).layers = nn.ModuleList(layers[i] for i in keep)
    _sync_config(model)


# ----------------------------------------------------------------------------------- importance
def _gradient_pass(model: nn.Module, batches: Iterable[Any], step: Callable[[Any], None]) -> None:
    """Run ``step(batch)`` for every batch in eval mode (no dropout noise), restoring the mode after."""
    was_training = model.training
    model.eval()
    seen = 0
    try:
        with torch.enable_grad():
            for batch in batches:
                step(batch)
                seen += 1
    finally:
        model.train(was_training)
    if not seen:
        raise ConfigError("importance needs at least one batch; batches was empty")


def head_importance(model: nn.Module, batches: Iterable[Any], loss_fn: LossFn = model_loss) -> list[torch.Tensor]:
    """Per layer an (A_layer,) tensor: sum over batches of |dL/dg| of each head's gate g (at g = 1),
    divided by the layer's L2 norm (Michel et al. 2019), so each layer's vector has norm 1.

    ``loss_fn(model, batch, head_mask)`` must run the encoder with ``head_mask`` (a list of one
    (A_layer,) gate per layer) and return the scalar loss; the default is ``model_loss``. Runs in
    eval mode; gradients are taken for the gates only (the parameters' ``.grad`` is untouched).
    A layer without heads gets an empty tensor.
    """
    encoder = encoder_of(model)
    parameter = next(encoder.parameters())
    gates = [torch.ones(layer.attn.num_heads, device=parameter.device, dtype=parameter.dtype, requires_grad=True)
             for layer in encoder.layers]
    scores = [torch.zeros(len(g), dtype=torch.float32) for g in gates]

    def step(batch: Any) -> None:
        loss = loss_fn(model, batch, gates)
        grads = torch.autograd.grad(loss, gates, allow_unused=True)  # a layer without heads has no gate in the graph
        for score, grad in zip(scores, grads, strict=True):
            if grad is not None:
                score += grad.detach().abs().float().cpu()

    _gradient_pass(model, batches, step)
    return [score / (score.norm() + 1e-20) for score in scores]


def ffn_importance(model: nn.Module, batches: Iterable[Any], loss_fn: LossFn = model_loss) -> list[torch.Tensor]:
    """Per layer an (I_layer,) tensor: sum over batches of |sum of w * dL/dw| over each neuron's
    parameters (``up`` row, ``up`` bias, ``down`` column), the first-order Taylor estimate of the
    loss change when the neuron is removed. Not normalised: the scores are comparable across layers.

    ``loss_fn`` as for ``head_importance``; it is called with ``head_mask=None``. Runs in eval
    mode; gradients are taken for the FFN weights only (their ``.grad`` is untouched).
    """
    ffns = [layer.ffn for layer in encoder_of(model).layers]
    params = [p for ffn in ffns for p in (ffn.up.weight, ffn.up.bias, ffn.down.weight)]
    if any(p is None for p in params):
        raise ConfigError("ffn_importance needs FFN up layers with a bias")
    scores = [torch.zeros(ffn.up.out_features, dtype=torch.float32) for ffn in ffns]

    def step(batch: Any) -> None:
        loss = loss_fn(model, batch, None)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for i, ffn in enumerate(ffns):
            g_up, g_bias, g_down = (g if g is not None else torch.zeros_like(p)
                                    for g, p in zip(grads[3 * i:3 * i + 3], params[3 * i:3 * i + 3], strict=True))
            taylor = ((ffn.up.weight * g_up).sum(dim=1)  # (I, H) -> (I,)
                      + ffn.up.bias * g_bias  # (I,)
                      + (ffn.down.weight * g_down).sum(dim=0))  # (H, I) -> (I,)
            scores[i] += taylor.detach().abs().float().cpu()

    frozen = [p for p in params if not p.requires_grad]
    for p in frozen:  # autograd.grad needs them in the graph
        p.requires_grad_(True)
    try:
        _gradient_pass(model, batches, step)
    finally:
        for p in frozen:
            p.requires_grad_(False)
    return scores


@torch.no_grad()
def magnitude_head_importance(model: nn.Module) -> list[torch.Tensor]:
    """Per layer an (A_layer,) tensor: the L2 norm of each head's q, k, v rows (and their biases)
    and its ``out`` columns. Needs no data."""
    scores = []
    for layer in encoder_of(model).layers:
        attn = layer.attn
        A, D = attn.num_heads, attn.head_dim
        H_in, H_out = attn.qkv.in_features, attn.out.out_features
        squares = attn.qkv.weight.float().pow(2).view(3, A, D, H_in).sum(dim=(0, 2, 3))  # (3 A D, H) -> (A,)
        if attn.qkv.bias is not None:
            squares += attn.qkv.bias.float().pow(2).view(3, A, D).sum(dim=(0, 2))  # (3 A D,) -> (A,)
        squares += attn.out.weight.float().pow(2).view(H_out, A, D).sum(dim=(0, 2))  # (H, A D) -> (A,)
        scores.append(squares.sqrt().cpu())
    return scores


@torch.no_grad()
def magnitude_ffn_importance(model: nn.Module) -> list[torch.Tensor]:
    """Per layer an (I_layer,) tensor: the L2 norm of each neuron's ``up`` row and bias and its
    ``down`` column. Needs no data."""
    scores = []
    for layer in encoder_of(model).layers:
        up, down = layer.ffn.up, layer.ffn.down
        squares = up.weight.float().pow(2).sum(dim=1) + down.weight.float().pow(2).sum(dim=0)  # (I,)
        if up.bias is not None:
            squares += up.bias.float().pow(2)
        scores.append(squares.sqrt().cpu())
    return scores


def select_lowest(importances: Sequence[torch.Tensor], count: int, keep_min_per_layer: int = 0) -> dict[int, list[int]]:
    """The ``count`` globally least important units as ``{layer: [index, ...]}`` (layers with none
    left out), for ``prune_heads`` / ``prune_ffn_neurons``; each layer keeps at least
    ``keep_min_per_layer`` units (fewer only if it has fewer now). Ties go to the lower layer, then
    the lower index.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(f"select_lowest: count must be a non-negative integer, got {count!r}")
    if keep_min_per_layer < 0:
        raise ConfigError(f"select_lowest: keep_min_per_layer must be >= 0, got {keep_min_per_layer}")
    units = []  # (score, layer, index)
    removable = []  # per layer, how many units may go
    for layer, scores in enumerate(importances):
        scores = torch.as_tensor(scores).detach().float().cpu().flatten()
        if not bool(torch.isfinite(scores).all()):
            raise ConfigError(f"select_lowest: the importances of layer {layer} are not all finite")
        units += [(score, layer, index) for index, score in enumerate(scores.tolist())]
        removable.append(max(0, len(scores) - keep_min_per_layer))
    if count > sum(removable):
        raise ConfigError(f"select_lowest: cannot remove {count} units while keeping {keep_min_per_layer} "
                          f"per layer; at most {sum(removable)} can go")
    chosen: dict[int, list[int]] = {}
    taken = 0
    for _, layer, index in sorted(units):
        if taken == count:
            break
        if len(chosen.get(layer, [])) < removable[layer]:
            chosen.setdefault(layer, []).append(index)
            taken += 1
    return {layer: sorted(indices) for layer, indices in sorted(chosen.items())}


# ----------------------------------------------------------------------- unstructured (zeros only)
def _selected_linears(model: nn.Module, include: Sequence[str]) -> dict[str, nn.Linear]:
    """The encoder layers' nn.Linear modules whose name (``layers.0.attn.qkv``) ends with an ``include`` entry."""
    include = tuple(include)
    selected = {
        f"layers.{name}": module for name, module in encoder_of(model).layers.named_modules()
        if isinstance(module, nn.Linear) and any(name == s or name.endswith(f".{s}") for s in include)
    }
    if not selected:
        raise ConfigError(f"no Linear module of the encoder layers ends with any of {list(include)}; "
                          f"the names end with {', '.join(LINEAR_NAMES)}")
    return selected


@torch.no_grad()
def magnitude_prune_(model: nn.Module, sparsity: float, include: Sequence[str] = LINEAR_NAMES) -> dict[str, Any]:
    """Set the globally smallest |w| of the selected weights to zero, in place, until a fraction
    ``sparsity`` of them is zero (zeros already there count: calling again with a higher sparsity
    prunes further). Biases are not touched. The zeros are plain values in the weights (no
    ``weight_orig`` / mask reparametrisation), so saving works as usual; training moves them again
    unless ``keep_zeros_`` masks their gradients.

    Returns ``{"sparsity": zeros / total, "zeros": n, "total": n}`` over the selected weights.
    """
    if not 0.0 <= sparsity <= 1.0:
        raise ConfigError(f"sparsity must be in [0, 1], got {sparsity}")
    weights = [m.weight for m in _selected_linears(model, include).values() if m.weight.numel()]
    if not weights:
        raise ConfigError("the selected weights are all empty (every head or neuron pruned)")
    magnitudes = torch.cat([w.detach().abs().flatten().float() for w in weights])  # (N,) over all selected
    count = round(sparsity * magnitudes.numel())
    if count:
        smallest = torch.topk(magnitudes, count, largest=False, sorted=False).indices  # exactly `count`
        zero = torch.zeros_like(magnitudes, dtype=torch.bool)
        zero[smallest] = True
        for w, part in zip(weights, zero.split([w.numel() for w in weights]), strict=True):
            w.masked_fill_(part.view_as(w).to(w.device), 0)
    zeros = sum(int((w == 0).sum()) for w in weights)
    total = sum(w.numel() for w in weights)
    return {"sparsity": zeros / total, "zeros": zeros, "total": total}


def keep_zeros_(model: nn.Module, include: Sequence[str] = LINEAR_NAMES) -> list[RemovableHandle]:
    """Keep the weights that are zero now at zero while training: a gradient hook zeroes their gradient.

    Holds for SGD, Adam and AdamW (zero gradient and zero state give no update; decoupled weight
    decay of 0 is 0) when the optimizer is built after this call (old momentum would move them).
    Call ``.remove()`` on the returned handles to lift it; structured surgery on a module drops it.
    """
    handles = []
    for module in _selected_linears(model, include).values():
        keep = (module.weight.detach() != 0).to(module.weight.dtype)  # (out, in) 1 = trainable
        handles.append(module.weight.register_hook(lambda grad, keep=keep: grad * keep))
    return handles


@torch.no_grad()
def sparsity_report(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Per nn.Linear of the model (its full module name): ``{"zeros", "total", "sparsity"}`` of its weight."""
    report = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            zeros, total = int((module.weight == 0).sum()), module.weight.numel()
            report[name] = {"zeros": zeros, "total": total, "sparsity": zeros / total if total else 0.0}
    return report


def count_parameters(model: nn.Module) -> int:
    """Number of parameter values in the model (tied parameters counted once, frozen ones included)."""
    return sum(p.numel() for p in model.parameters())
