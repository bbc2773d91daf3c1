"""The encoder family: BERT, RoBERTa / XLM-R, DistilBERT, MiniLM, E5, ALBERT, in one file.

Post-LN transformer blocks over word + learned position (+ token type) embeddings:

    h = LayerNorm(x + Dropout(Attention(x)))
    y = LayerNorm(h + Dropout(W2 GELU(W1 h)))

ALBERT (``model_type`` albert) differs in two places only: its embeddings are E < H wide and a
linear layer projects them to H (factorised embeddings; the masked-LM head maps back to E before
the tied decoder), and one layer's weights are applied at every depth (``config.shared_layers``).
ALBERT has no dropout after the FFN; ours has, which only matters in training with dropout > 0
(ALBERT's configs set 0).

Shapes: B batch, T tokens, H hidden, E embedding width (= H except ALBERT), A heads,
D = H / A head size, V vocabulary.
Weights load from Hugging Face checkpoints through ``nlpforge.convert.bert``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nlpforge.config import ModelConfig
from nlpforge.models.outputs import EncoderOutput, MaskedLMOutput


def activation(name: str) -> nn.Module:
    """The FFN non-linearity named in the config (``gelu`` is the exact erf form)."""
    if name == "gelu":
        return nn.GELU()
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return nn.GELU(approximate="tanh")
    return nn.ReLU()


def padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, T) 1/0 mask -> (B, 1, 1, T) boolean "may attend" mask; None when nothing is padded.

    Returning None for an all-ones mask lets scaled_dot_product_attention pick its fastest kernel.
    """
    if attention_mask is None or bool(attention_mask.all()):
        return None
    return attention_mask.bool()[:, None, None, :]


class Embeddings(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        width = config.embedding_width  # E
        self.word = nn.Embedding(config.vocab_size, width)
        self.position = nn.Embedding(config.max_positions, width)
        # DistilBERT has no token types (type_vocab_size 0).
        self.token_type = nn.Embedding(config.type_vocab_size, width) if config.type_vocab_size else None
        self.norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)
        # ALBERT's factorised embeddings: E -> H (present whenever embedding_size is set, even E = H).
        self.project = nn.Linear(width, config.hidden_size) if config.embedding_size is not None else None
        self.pad_token_id = config.pad_token_id
        self.position_offset = config.position_offset

    def position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) positions. RoBERTa/XLM-R count only non-pad tokens, starting at pad_id + 1."""
        if self.position_offset:
            not_pad = input_ids.ne(self.pad_token_id).int()
            return (torch.cumsum(not_pad, dim=1) * not_pad).long() + self.position_offset - 1
        return torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        x = self.word(input_ids) + self.position(self.position_ids(input_ids))  # (B, T, E)
        if self.token_type is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.token_type(token_type_ids)
        x = self.dropout(self.norm(x))
        return self.project(x) if self.project is not None else x  # (B, T, H)


class SelfAttention(nn.Module):
    """Bidirectional multi-head attention with one fused QKV projection (one GEMM instead of 3).

    A pruned layer keeps A' <= A heads of the original size D: its projections are A' * D wide.
    """

    def __init__(self, config: ModelConfig, num_heads: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, config.head_dim
        self.qkv = nn.Linear(config.hidden_size, 3 * num_heads * config.head_dim)
        self.out = nn.Linear(num_heads * config.head_dim, config.hidden_size)
        self.dropout_p = config.attention_dropout

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        need_probs: bool = False,
        head_mask: torch.Tensor | None = None,
        prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``prefix``: (B, A', P, D) keys and values every query also attends to (deep prompt tuning)."""
        B, T, _ = x.shape
        if self.num_heads == 0:  # every head pruned: the block only adds the output bias
            return self.out.bias.expand(B, T, -1), None
        # (B, T, 3 A' D) -> 3 x (B, A', T, D)
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if prefix is not None:  # keys and values (B, A', P + T, D); the prefix is never padding
            k, v = torch.cat([prefix[0], k], dim=2), torch.cat([prefix[1], v], dim=2)
            if mask is not None:
                mask = torch.cat([mask.new_ones(B, 1, 1, prefix[0].shape[2]), mask], dim=-1)
        dropout_p = self.dropout_p if self.training else 0.0
        probs = None
        if need_probs:
            # Explicit path: distillation and analysis need the (B, A, T, T) probabilities.
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
            if mask is not None:
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            probs = scores.softmax(dim=-1)
            context = F.dropout(probs, dropout_p, self.training) @ v
        else:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        if head_mask is not None:  # (A',) 1/0 or importance gates: scale each head's context
            context = context * head_mask.to(context.dtype)[None, :, None, None]
        context = context.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim)  # (B, T, A' D)
        return self.out(context), probs

    def forward_packed(
        self, x: torch.Tensor, rows: torch.Tensor, shape: tuple[int, int], mask: torch.Tensor
    ) -> torch.Tensor:
        """Inference on packed tokens: x (N, H) holds the real tokens of a ``shape`` = (B, T) batch
        at ``rows`` of its flattened B * T positions. Projections run on the N tokens only; attention scatters
        Q, K, V back to (B, A', T, D) with zeros at padding, which ``mask`` hides as keys."""
        B, T = shape
        if self.num_heads == 0:
            return self.out.bias.expand(x.shape[0], -1)
        qkv = self.qkv(x)  # (N, 3 A' D)
        padded = qkv.new_zeros(B * T, qkv.shape[1]).index_copy_(0, rows, qkv)
        q, k, v = padded.view(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, A', T, D)
        context = context.transpose(1, 2).reshape(B * T, self.num_heads * self.head_dim).index_select(0, rows)
        return self.out(context)  # (N, H)


class FeedForward(nn.Module):
    def __init__(self, config: ModelConfig, intermediate_size: int) -> None:
        super().__init__()
        self.up = nn.Linear(config.hidden_size, intermediate_size)
        self.act = activation(config.hidden_act)
        self.down = nn.Linear(intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))


class EncoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, index: int) -> None:
        super().__init__()
        self.attn = SelfAttention(config, config.heads_of_layer(index))
        self.attn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config, config.intermediate_of_layer(index))
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        need_probs: bool = False,
        head_mask: torch.Tensor | None = None,
        prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, probs = self.attn(x, mask, need_probs, head_mask, prefix)
        h = self.attn_norm(x + self.dropout(attended))  # post-LN
        return self.ffn_norm(h + self.dropout(self.ffn(h))), probs

    def forward_packed(
        self, x: torch.Tensor, rows: torch.Tensor, shape: tuple[int, int], mask: torch.Tensor
    ) -> torch.Tensor:
        """The same block on packed real tokens (N, H), for inference (no dropout)."""
        h = self.attn_norm(x + self.attn.forward_packed(x, rows, shape, mask))
        return self.ffn_norm(h + self.ffn(h))


class Pooler(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # (B, T, H) -> (B, H)


class BertModel(nn.Module):
    """The encoder: ids (B, T) -> EncoderOutput with last_hidden_state (B, T, H).

    ``layers`` holds the distinct layers: one per depth, or ALBERT's single shared layer, which
    ``depth()`` applies ``num_layers`` times.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        stored = 1 if config.shared_layers else config.num_layers
        self.layers = nn.ModuleList(EncoderLayer(config, i) for i in range(stored))
        self.pooler = Pooler(config) if config.has_pooler else None
        # Prompt tuning (adapt/prompt.py) attaches trainable prompts here; they are no part of the
        # checkpoint's weights (an adapter directory holds them).
        self.prompt: nn.Module | None = None

    def depth(self) -> list[EncoderLayer]:
        """The layer applied at each depth, first to last (ALBERT: the shared layer num_layers times)."""
        if self.config.shared_layers:
            return [self.layers[0]] * self.config.num_layers
        return list(self.layers)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        head_mask: Sequence[torch.Tensor] | torch.Tensor | None = None,
        packed: bool = False,
    ) -> EncoderOutput:
        """``head_mask``: per layer an (A_layer,) gate on each head's output (1 keeps, 0 masks).

        ``packed=True`` (inference callers: batched prediction, embedding, measurement) runs a padded
        batch on its real tokens only (see ``forward_packed``): no dropout, and the padding positions
        of ``last_hidden_state`` are zeros, not values computed from pad tokens. It applies in eval
        mode to batches with padding when no hidden states, attentions or head mask are asked for.
        """
        x = self.embeddings(input_ids, token_type_ids)
        if self.prompt is not None:  # soft prompt tokens join the input: (B, T + P, H) and its mask
            x, attention_mask = self.prompt.extend(x, attention_mask)
        mask = padding_mask(attention_mask)
        if (packed and mask is not None and attention_mask is not None and not self.training and self.prompt is None
                and not (output_hidden_states or output_attentions or head_mask is not None)):
            x = self.forward_packed(x, attention_mask, mask)
            return EncoderOutput(last_hidden_state=x, pooler_output=self.pooler(x) if self.pooler is not None else None)
        hidden_states = [x] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for i, layer in enumerate(self.depth()):
            prefix = self.prompt.prefix(i, x.shape[0]) if self.prompt is not None else None
            x, probs = layer(x, mask, output_attentions, head_mask[i] if head_mask is not None else None, prefix)
            if hidden_states is not None:
                hidden_states.append(x)
            if attentions is not None:
                attentions.append(probs)
        if self.prompt is not None:  # back to the input's positions: (B, T, H)
            x = self.prompt.trim(x)
            hidden_states = [self.prompt.trim(h) for h in hidden_states] if hidden_states is not None else None
        return EncoderOutput(
            last_hidden_state=x,
            pooler_output=self.pooler(x) if self.pooler is not None else None,
            hidden_states=tuple(hidden_states) if hidden_states is not None else None,
            attentions=tuple(attentions) if attentions is not None else None,
        )


    def forward_packed(self, x: torch.Tensor, attention_mask: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Run the layers on real tokens only: (B, T, H) embeddings -> (B, T, H), zeros at padding.

        Every position-wise step (QKV and output projections, FFN, LayerNorm) costs in proportion to
        the tokens it sees, so packing removes the work a padded batch spends on pad positions
        (about half of it for a batch of short and long sentences); only attention runs padded.
        """
        B, T, H = x.shape
        rows = attention_mask.flatten().nonzero().squeeze(1)  # (N,) real-token positions in B * T
        packed = x.reshape(B * T, H).index_select(0, rows)  # (N, H)
        for layer in self.depth():
            packed = layer.forward_packed(packed, rows, (B, T), mask)
        return packed.new_zeros(B * T, H).index_copy_(0, rows, packed).view(B, T, H)


class MaskedLMHead(nn.Module):
    """dense -> act -> LayerNorm -> decoder tied to the word embeddings, plus a vocabulary bias.

    ``dense`` maps H -> E, the width of the word embeddings (ALBERT's E < H; E = H otherwise).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.transform = nn.Linear(config.hidden_size, config.embedding_width)
        self.act = activation(config.hidden_act)
        self.norm = nn.LayerNorm(config.embedding_width, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.act(self.transform(hidden)))  # (B, T, H) -> (B, T, E)
        return F.linear(h, word_embeddings, self.bias)  # (B, T, V)


class BertForMaskedLM(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = BertModel(config)
        self.mlm = MaskedLMHead(config)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        packed: bool = False,
    ) -> MaskedLMOutput:
        encoded = self.encoder(
            input_ids, attention_mask, token_type_ids, output_hidden_states, output_attentions, packed=packed
        )
        logits = self.mlm(encoded.last_hidden_state, self.encoder.embeddings.word.weight)
        loss = None
        if labels is not None:  # labels (B, T), -100 where no prediction is scored
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return MaskedLMOutput(
            logits=logits, loss=loss,
            hidden_states=encoded.hidden_states, attentions=encoded.attentions,
        )
