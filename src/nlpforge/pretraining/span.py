"""SpanBERT: masked spans of whole words plus the span boundary objective (SBO).

Spans are drawn as in ``masking.select_spans`` (lengths Geo(0.2) clipped to 1..10 words, 15% of
the tokens), corrupted 80/10/10 per token, and scored twice: by the masked-LM head from each
token's own state, and by the SBO head from the states of the two tokens just outside the span
plus a relative-position embedding of the token inside it:

    y_i = LayerNorm(GeLU(W2 LayerNorm(GeLU(W1 [x_{s-1}; x_{e+1}; p_{i-s}]))))
    loss = L_mlm + L_sbo        (the SBO decoder is the MLM decoder, tied to the word embeddings)

The saved checkpoint is the masked LM (transformers loads it as ``AutoModelForMaskedLM``); the
SBO head is training-only and kept in the resume state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nlpforge.config import ModelConfig
from nlpforge.models.bert import activation
from nlpforge.pretraining import masking
from nlpforge.pretraining.mlm import MaskedLMObjective
from nlpforge.pretraining.objective import MaskedLMModel, Scores, init_weights, masked_lm_from, token_scores, unwrap

LONGEST_SPAN = 10  # words
OFFSETS = LONGEST_SPAN * 4  # relative positions the SBO embeds (a word may be several tokens)


class SpanBoundaryHead(nn.Module):
    """[x_left; x_right; p_offset] (N, 3H) -> (N, E) states that the tied MLM decoder scores
    (E, the word embeddings' width, is H except for ALBERT's factorised embeddings)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        hidden, width = config.hidden_size, config.embedding_width
        self.offset = nn.Embedding(OFFSETS, hidden)
        self.mlp = nn.Sequential(
            nn.Linear(3 * hidden, hidden), activation("gelu"), nn.LayerNorm(hidden, eps=config.layer_norm_eps),
            nn.Linear(hidden, width), activation("gelu"), nn.LayerNorm(width, eps=config.layer_norm_eps),
        )

    def forward(self, left: torch.Tensor, right: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([left, right, self.offset(offset)], dim=-1))


@dataclass
class SpanObjective(MaskedLMObjective):
    """Span masking + span boundary objective."""

    whole_words: bool = True  # spans are made of whole words
    geometric_p: float = 0.2

    name: ClassVar[str] = "span"

    def new_model(self, config: ModelConfig) -> nn.Module:
        model = super().new_model(config)
        return self.extend(model.lm)

    def extend(self, model: nn.Module) -> nn.Module:
        lm = masked_lm_from(model)
        boundary = SpanBoundaryHead(lm.config)
        init_weights(boundary)
        return MaskedLMModel(lm, {"boundary": boundary})

    def select(self, input_ids: torch.Tensor, word_starts: torch.Tensor, maskable: torch.Tensor,
               generator: torch.Generator) -> torch.Tensor:
        return masking.select_spans(word_starts, maskable, self.rate, generator, self.geometric_p, LONGEST_SPAN)

    def extra_fields(self, input_ids: torch.Tensor, selected: torch.Tensor) -> dict[str, torch.Tensor]:
        return masking.boundary_targets(selected, input_ids, OFFSETS)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Scores]:
        """L_mlm + L_sbo; the Scores (perplexity, accuracy) are the masked LM's."""
        hidden = model(batch["input_ids"], batch["attention_mask"])  # (B, T, H)
        inner = unwrap(model)
        logits, targets = inner.masked_logits(hidden, batch["labels"])
        mlm_loss, scores = token_scores(logits, targets)
        rows = batch["sbo_row"]
        boundary = inner.extra["boundary"](hidden[rows, batch["sbo_left"]], hidden[rows, batch["sbo_right"]],
                                           batch["sbo_offset"])  # (N, E)
        sbo_logits = F.linear(boundary, inner.lm.encoder.embeddings.word.weight, inner.lm.mlm.bias)  # (N, V)
        sbo_loss, _ = token_scores(sbo_logits, batch["sbo_target"])
        return mlm_loss + sbo_loss, scores
