"""The decoder family: GPT-2 layout in one file, with a KV cache and ``generate()``.

Pre-LN causal blocks over token + learned position embeddings, LM head tied to the token
embeddings:

    h = x + Attention(LayerNorm(x))        (causal, cached keys/values when generating)
    y = h + W2 GELU_tanh(W1 LayerNorm(h))

Shapes: B batch, T new tokens, S = past + T keys, H hidden, A heads, D = H / A, V vocabulary.
Weights load from Hugging Face checkpoints through ``nlpforge.convert.gpt``.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from nlpforge.config import ModelConfig
from nlpforge.errors import ConfigError
from nlpforge.models.bert import activation
from nlpforge.models.outputs import CausalLMOutput, DecoderOutput, KVCache


def causal_mask(attention_mask: torch.Tensor, past_length: int, new_length: int) -> torch.Tensor:
    """(B, S) 1/0 key mask -> (B, 1, T, S) boolean "may attend" mask for the T newest queries.

    A query sees keys at or before its own position that are not padding. A query with no such
    key (left padding) sees itself instead, so that it gets finite values rather than NaN; the
    real tokens never attend to padding, so their outputs are unaffected.
    """
    total = attention_mask.shape[1]
    query_pos = torch.arange(past_length, past_length + new_length, device=attention_mask.device)
    key_pos = torch.arange(total, device=attention_mask.device)
    causal = key_pos[None, :] <= query_pos[:, None]  # (T, S)
    mask = causal[None, None] & attention_mask.bool()[:, None, None, :]  # (B, 1, T, S)
    blind = ~mask.any(dim=-1, keepdim=True)  # (B, 1, T, 1)
    return mask | (blind & (key_pos[None, :] == query_pos[:, None]))


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting token t+1 from positions <= t: (B, T, V) logits against
    (B, T) labels, shifted here; positions labelled -100 (padding, say) are not targets."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,  # (B, 1, T, S) "may attend", or None: plain causal, no cache
        past: tuple[torch.Tensor, torch.Tensor] | None,
        need_probs: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor | None]:
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if past is not None:  # prepend cached (B, A, S - T, D) keys and values
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        dropout_p = self.dropout_p if self.training else 0.0
        probs = None
        if need_probs:
            if mask is None:  # plain causal: (T, T) lower triangle
                mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            scores = (q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)).masked_fill(
                ~mask, torch.finfo(q.dtype).min
            )
            probs = scores.softmax(dim=-1)  # (B, A, T, S)
            context = F.dropout(probs, dropout_p, self.training) @ v
        else:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                                     is_causal=mask is None)
        context = context.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim)
        return self.resid_dropout(self.out(context)), (k, v), probs


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act)
        self.down = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(self.act(self.up(x))))


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = CausalSelfAttention(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        past: tuple[torch.Tensor, torch.Tensor] | None,
        need_probs: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor | None]:
        attended, present, probs = self.attn(self.norm1(x), mask, past, need_probs)
        x = x + attended
        return x + self.mlp(self.norm2(x)), present, probs


class Embeddings(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.token = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position = nn.Embedding(config.max_positions, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.token(input_ids) + self.position(position_ids))  # (B, T, H)


class GPT(nn.Module):
    """GPT-2 style language model: ids (B, T) -> CausalLMOutput with logits (B, T, V)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.family != "gpt":
            raise ConfigError(f"GPT needs a decoder config, got model_type {config.model_type!r}")
        self.config = config
        self.embed = Embeddings(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        use_cache: bool = False,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> CausalLMOutput:
        body = self.body(input_ids, attention_mask, position_ids, past_key_values, output_hidden_states,
                         output_attentions)
        logits = self.lm_logits(body.last_hidden_state)  # (B, T, V)
        return CausalLMOutput(
            logits=logits,
            loss=next_token_loss(logits, labels) if labels is not None else None,
            past_key_values=body.past_key_values if use_cache else None,
            hidden_states=body.hidden_states,
            attentions=body.attentions,
        )

    def body(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> DecoderOutput:
        """The blocks without the LM head: (B, T, H) states after the final LayerNorm (a task head
        reads them without paying for the (B, T, V) vocabulary logits)."""
        B, T = input_ids.shape
        past_length = past_key_values[0][0].shape[2] if past_key_values else 0
        # Unpadded, uncached input (training blocks): no mask tensor, so attention runs SDPA's causal
        # kernel, which skips the masked half instead of computing and discarding it.
        mask = None
        if attention_mask is not None or past_length:
            if attention_mask is None:  # (B, S): covers the cached tokens and the new ones
                attention_mask = torch.ones(B, past_length + T, dtype=torch.long, device=input_ids.device)
            mask = causal_mask(attention_mask, past_length, T)
        if position_ids is None:
            position_ids = torch.arange(past_length, past_length + T, device=input_ids.device)[None]
        x = self.embed(input_ids, position_ids)
        hidden_states = [x] if output_hidden_states else None
        attentions = [] if output_attentions else None
        presents: KVCache = []
        for i, block in enumerate(self.blocks):
            past = past_key_values[i] if past_key_values else None
            x, present, probs = block(x, mask, past, need_probs=output_attentions)
            presents.append(present)
            if attentions is not None:
                attentions.append(probs)
            if hidden_states is not None:
                hidden_states.append(x)
        x = self.final_norm(x)
        if hidden_states is not None:  # as in GPT-2, the last entry is after the final LayerNorm
            hidden_states[-1] = x
        return DecoderOutput(
            last_hidden_state=x,
            past_key_values=presents,
            hidden_states=tuple(hidden_states) if hidden_states is not None else None,
            attentions=tuple(attentions) if attentions is not None else None,
        )

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The tied LM head: (B, T, H) states -> (B, T, V) next-token logits."""
        return F.linear(hidden, self.embed.token.weight)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 20,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        stop_token_ids: Iterable[int] | None = None,
        pad_token_id: int | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        repetition_penalty: float = 1.0,
    ) -> torch.Tensor:
        """Continue (B, T) prompts; returns (B, T + new) ids.

        Batched prompts must be left-padded, with ``attention_mask`` marking the real tokens.
        ``temperature == 0`` is greedy decoding; otherwise tokens are sampled from the softmax at
        that temperature, restricted to the ``top_k`` most likely (0 = all) and to the smallest
        set whose probability reaches ``top_p``. ``repetition_penalty`` (CTRL, as transformers)
        lowers the scores of tokens already in the sequence. A sequence stops at any of
        ``stop_token_ids`` (default: the config's eos) and is padded with ``pad_token_id`` until
        all have stopped. The tokens come from ``stream``, one step at a time.
        """
        steps = self.stream(input_ids, attention_mask, max_new_tokens, temperature, top_k, top_p, stop_token_ids,
                            pad_token_id, use_cache, generator, repetition_penalty)
        return torch.cat([input_ids, *(token[:, None] for token in steps)], dim=1)

    def stream(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 20,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        stop_token_ids: Iterable[int] | None = None,
        pad_token_id: int | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        repetition_penalty: float = 1.0,
    ) -> Generator[torch.Tensor, torch.Tensor | None, None]:
        """``generate`` one step at a time: yields each step's (B,) new tokens as they are produced.

        Rows that have stopped get ``pad_token_id``. The caller may ``send`` a (B,) bool tensor of
        rows to stop now (a stop string matched in their text, say); the stream ends when every row
        has stopped or after ``max_new_tokens`` steps. Closing it early is fine. Settings are
        checked here, before the first step.
        """
        if temperature < 0 or top_k < 0 or not 0 < top_p <= 1:
            raise ConfigError("generate: need temperature >= 0, top_k >= 0 and 0 < top_p <= 1")
        if not repetition_penalty > 0:
            raise ConfigError(f"generate: repetition_penalty must be > 0, got {repetition_penalty}")
        return self._steps(input_ids, attention_mask, max_new_tokens, temperature, top_k, top_p, stop_token_ids,
                           pad_token_id, use_cache, generator, repetition_penalty)

    @torch.no_grad()  # on a generator function: torch enters no_grad around every step
    def _steps(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        max_new_tokens: int,
        temperature: float,
        top_k: int,
        top_p: float,
        stop_token_ids: Iterable[int] | None,
        pad_token_id: int | None,
        use_cache: bool,
        generator: torch.Generator | None,
        repetition_penalty: float,
    ) -> Generator[torch.Tensor, torch.Tensor | None, None]:
        eos = self.config.eos_token_id
        stops = set(stop_token_ids) if stop_token_ids is not None else ({eos} if eos is not None else set())
        stop_ids = torch.tensor(sorted(stops), dtype=torch.long, device=input_ids.device)
        pad = pad_token_id if pad_token_id is not None else (eos if eos is not None else 0)
        tokens = input_ids
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.long()
        finished = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
        past: KVCache | None = None
        was_training = self.training
        self.eval()
        try:
            for _ in range(max_new_tokens):
                # Left padding: a token's position counts only the real tokens before it.
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                if past is None:
                    out = self(tokens, mask, positions, use_cache=use_cache)
                else:
                    out = self(tokens[:, -1:], mask, positions[:, -1:], past, use_cache=True)
                past = out.past_key_values
                # The penalty counts the tokens under the mask: the prompts' (not their padding) and every new one.
                next_token = pick_next_token(out.logits[:, -1].float(), temperature, top_k, top_p, generator,
                                             repetition_penalty, tokens, mask)
                next_token = torch.where(finished, torch.full_like(next_token, pad), next_token)
                tokens = torch.cat([tokens, next_token[:, None]], dim=1)
                mask = torch.cat([mask, torch.ones_like(next_token)[:, None]], dim=1)
                finished |= torch.isin(next_token, stop_ids)
                stop_rows = yield next_token
                if stop_rows is not None:
                    finished |= stop_rows.to(finished.device, torch.bool)
                if bool(finished.all()):
                    break
        finally:
            self.train(was_training)


def apply_repetition_penalty(
    logits: torch.Tensor, previous_ids: torch.Tensor, penalty: float, previous_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """CTRL's repetition penalty, as transformers' ``RepetitionPenaltyLogitsProcessor``: the (B, V)
    scores of tokens that occur in (B, S) ``previous_ids`` (where ``previous_mask`` is 1; default
    everywhere) are divided by ``penalty`` when positive and multiplied by it when negative."""
    weights = torch.ones_like(previous_ids) if previous_mask is None else previous_mask.to(previous_ids.dtype)
    counts = torch.zeros(logits.shape, dtype=previous_ids.dtype, device=logits.device)
    present = counts.scatter_add_(-1, previous_ids, weights) > 0  # (B, V); duplicates add up, none overwrite
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(present, penalised, logits)


def pick_next_token(
    logits: torch.Tensor,
    temperature: float,
    top_k: int,
    top_p: float,
    generator: torch.Generator | None = None,
    repetition_penalty: float = 1.0,
    previous_ids: torch.Tensor | None = None,
    previous_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, V) logits -> (B,) token ids: argmax when temperature is 0, else a filtered sample.

    With ``repetition_penalty != 1`` the scores of the tokens in ``previous_ids`` (B, S) are
    penalised first (``apply_repetition_penalty``), before the temperature, as in transformers.
    """
    if repetition_penalty != 1.0 and previous_ids is not None:
        logits = apply_repetition_penalty(logits, previous_ids, repetition_penalty, previous_mask)
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k:
        kth_best = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p (keeps at least one).
        drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(-1)
