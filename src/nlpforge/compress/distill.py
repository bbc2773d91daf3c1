"""Knowledge distillation: the losses as plain functions, and student initialisation.

The training loop (recipes/distill.py) combines them visibly:

    loss = (1 - a) * ce + a * kd * T**2 + b * sum(hidden_mse) + c * sum(attention_kl)

Shapes: B batch, T tokens, C classes, H hidden, A heads. ``mask`` (B, T) marks real tokens.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nlpforge.errors import ConfigError
from nlpforge.tasks import encoder_of


def soft_targets(teacher_logits: Sequence[torch.Tensor], temperature: float) -> torch.Tensor:
    """Teacher probabilities at temperature T, averaged over several teachers: mean_k softmax(z_k / T)."""
    return torch.stack([(z.float() / temperature).softmax(dim=-1) for z in teacher_logits]).mean(dim=0)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_probs: torch.Tensor,
    temperature: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft-target loss (Hinton et al., 2015) before its T^2 scaling (the recipe multiplies by T^2, so
    the gradients keep their size as T grows):

        kd = KL(p_teacher || softmax(z_student / T)),  averaged over examples (or masked tokens)

    ``student_logits`` (..., C), ``teacher_probs`` (..., C) from ``soft_targets``; ``mask`` (...)
    selects the positions that count (tagging: labelled tokens; QA: real tokens).
    """
    log_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    per_position = (teacher_probs * (teacher_probs.clamp_min(1e-12).log() - log_student)).sum(dim=-1)
    if mask is not None:
        per_position = per_position[mask.bool()]
    return per_position.mean()


def annealed_targets(teacher_probs: torch.Tensor, gold: torch.Tensor, progress: float) -> torch.Tensor:
    """Teacher annealing (Clark et al., 2019): targets move from the teacher's distribution to the
    gold labels as training progresses (``progress`` 0 -> 1):  y = progress * onehot + (1 - progress) * p_t.

    ``gold`` holds class ids (-100 = no label: the teacher's distribution is kept there).
    """
    onehot = F.one_hot(gold.clamp_min(0), teacher_probs.shape[-1]).to(teacher_probs.dtype)
    mixed = progress * onehot + (1 - progress) * teacher_probs
    return torch.where((gold >= 0).unsqueeze(-1), mixed, teacher_probs)


def hidden_mse(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    mask: torch.Tensor,
    projection: nn.Module | None = None,
) -> torch.Tensor:
    """MSE between (B, T, H_s) student and (B, T, H_t) teacher hidden states over real tokens; a learned
    ``projection`` (H_s -> H_t) maps a narrower student onto the teacher's width (TinyBERT)."""
    if projection is not None:
        student_hidden = projection(student_hidden)
    real = mask.bool()
    return F.mse_loss(student_hidden[real].float(), teacher_hidden[real].float())


def attention_kl(student_probs: torch.Tensor, teacher_probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) between (B, A, T, T) attention distributions over keys, averaged over heads
    and real query tokens (MiniLM-style). Student and teacher need the same head count."""
    if student_probs.shape != teacher_probs.shape:
        raise ConfigError(f"attention KL needs equal head counts: student {tuple(student_probs.shape)} "
                          f"vs teacher {tuple(teacher_probs.shape)}; drop attention matching or match the heads")
    log_ratio = teacher_probs.clamp_min(1e-12).log() - student_probs.clamp_min(1e-12).log()
    per_query = (teacher_probs * log_ratio).sum(dim=-1)  # (B, A, T)
    real = mask.bool()[:, None, :].expand_as(per_query)
    return per_query[real].mean()


def uniform_layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher layers (1-based) each student layer imitates: 12 -> 4 gives [3, 6, 9, 12]."""
    if not 0 < student_layers <= teacher_layers:
        raise ConfigError(f"a student of {student_layers} layers cannot be distilled from a teacher of "
                          f"{teacher_layers}; choose 1..{teacher_layers} layers")
    return [round((i + 1) * teacher_layers / student_layers) for i in range(student_layers)]


def student_from_teacher(teacher: nn.Module, layers: Sequence[int]) -> nn.Module:
    """A copy of ``teacher`` (task model or encoder) keeping only the given 1-based encoder layers,
    in order; embeddings and head are copied too (as in DistilBERT / TextBrewer's initialisation)."""
    encoder = encoder_of(teacher)
    if encoder.config.shared_layers:
        raise ConfigError("a student cannot keep some of an ALBERT teacher's layers (one set of weights serves "
                          "every depth); distil into a fresh student of a preset instead (--student PRESET)")
    depth = len(encoder.layers)
    bad = [i for i in layers if not 1 <= i <= depth]
    if bad or not layers:
        raise ConfigError(f"layer map {list(layers)} out of range: the teacher has layers 1..{depth}")
    student = copy.deepcopy(teacher)
    student_encoder = encoder_of(student)
    student_encoder.layers = nn.ModuleList(copy.deepcopy(encoder.layers[i - 1]) for i in layers)
    old = encoder.config
    kept = [i - 1 for i in layers]
    config = dataclasses.replace(
        old, num_layers=len(layers),
        layer_heads=[old.layer_heads[i] for i in kept] if old.layer_heads is not None else None,
        layer_intermediate=[old.layer_intermediate[i] for i in kept] if old.layer_intermediate is not None else None,
    )
    student_encoder.config = config
    if student is not student_encoder:
        student.config = dataclasses.replace(student.config, num_layers=len(layers), layer_heads=config.layer_heads,
                                             layer_intermediate=config.layer_intermediate)
    return student
