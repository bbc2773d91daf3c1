"""The task-conditioned prompt generator: from a task's description and its K labelled examples to a
soft prompt for a frozen encoder, with no gradient step on the encoder.

    task tokens   "description | label: text | label: text | ..."  -> frozen word embeddings (1, L, E)
    task encoder  BiLSTM over them                                   -> memory (1, L, W)
    decoder       P learnt queries attend to the memory (Transformer decoder, 2 layers) -> (P, W)
                  -> linear -> the soft prompt (P, H), inserted after [CLS] (adapt/prompt.py)
    classifier    prototypes: the mean unit-length embedding (mean-pooled, with the prompt) of each
                  class's examples; logits = scale * cos(query, prototype)

Meta-training (recipes/fewshot.py ``meta_train``) draws N-way K-shot episodes from many tasks and
minimises the cross-entropy of query examples against the support prototypes, so the generator
learns to write prompts under which a task's classes separate. On a task it has never seen,
adapting is one generator call and one encoding of the K examples (seconds on a CPU); optionally a
few gradient steps on the generated prompt, or a reward-only refinement (``refine_by_reward``: an
evolution strategy whose reward is leave-one-out accuracy on the K examples) that calls the encoder
forward only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedTokenizerBase

from nlpforge.adapt.prompt import SoftPrompt
from nlpforge.checkpoint import write_directory_atomically
from nlpforge.data.collate import collate_inputs
from nlpforge.embed import pool
from nlpforge.errors import CheckpointError
from nlpforge.models.bert import BertModel

GENERATOR_WEIGHTS, GENERATOR_CONFIG = "generator.safetensors", "generator.json"
EXAMPLE_TOKENS = 48  # tokens of one example in the task sequence
TASK_TOKENS = 512  # tokens of the whole task sequence


@dataclass
class GeneratorSettings:
    embedding_width: int  # E of the backbone's word embeddings (the task encoder's input)
    hidden_size: int  # H of the backbone (the prompt's width)
    prompt_length: int = 10
    width: int = 256
    layers: int = 2
    heads: int = 4


class PromptGenerator(nn.Module):
    def __init__(self, settings: GeneratorSettings) -> None:
        super().__init__()
        self.settings = settings
        W = settings.width
        self.project_in = nn.Linear(settings.embedding_width, W)
        self.task_encoder = nn.LSTM(W, W // 2, batch_first=True, bidirectional=True)
        self.queries = nn.Parameter(torch.randn(settings.prompt_length, W) * 0.02)  # (P, W)
        layer = nn.TransformerDecoderLayer(W, settings.heads, 2 * W, dropout=0.1, batch_first=True)
        self.decoder = nn.TransformerDecoder(layer, settings.layers)
        self.project_out = nn.Linear(W, settings.hidden_size)
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))  # of the cosine logits

    def forward(self, task_embeddings: torch.Tensor) -> torch.Tensor:
        """(1, L, E) embedded task tokens -> (P, H) soft prompt."""
        memory, _ = self.task_encoder(self.project_in(task_embeddings))  # (1, L, W)
        decoded = self.decoder(self.queries.unsqueeze(0), memory)  # (1, P, W)
        return self.project_out(decoded)[0]  # (P, H)


def task_ids(tokenizer: PreTrainedTokenizerBase, description: str, texts: Sequence[str],
             labels: Sequence[str]) -> list[int]:
    """The task as one token sequence: its description, then ``label: text`` per example."""
    ids = tokenizer(description, add_special_tokens=False, truncation=True, max_length=64)["input_ids"]
    for text, label in zip(texts, labels, strict=True):
        ids += tokenizer(f"{label}: {text}", add_special_tokens=False, truncation=True,
                         max_length=EXAMPLE_TOKENS)["input_ids"]
    return ids[:TASK_TOKENS]


def generate_prompt(generator: PromptGenerator, encoder: BertModel, ids: list[int]) -> torch.Tensor:
    """(P, H) prompt of a task sequence; the encoder's word embeddings are read, never trained."""
    with torch.no_grad():
        embedded = encoder.embeddings.word(torch.tensor([ids]))  # (1, L, E)
    return generator(embedded)


def prompted_embeddings(encoder: BertModel, prompt: torch.Tensor, features: Sequence[dict[str, Any]],
                        pad_id: int, batch_size: int = 32, unit: bool = True) -> torch.Tensor:
    """(N, H) mean-pooled embeddings (unit length unless ``unit=False``) of tokenized texts with
    ``prompt`` (P, H) attached."""
    encoder.prompt = SoftPrompt(prompt)
    try:
        vectors = []
        for start in range(0, len(features), batch_size):
            batch = collate_inputs(features[start : start + batch_size], pad_id)
            hidden = encoder(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")).last_hidden_state
            vectors.append(pool(hidden, batch["attention_mask"], "mean"))  # the prompt is trimmed off
        return F.normalize(torch.cat(vectors), dim=-1) if unit else torch.cat(vectors)
    finally:
        encoder.prompt = None


def prototypes(support: torch.Tensor, label_ids: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, H) unit-length class means of (N, H) unit embeddings."""
    return F.normalize(torch.stack([support[label_ids == c].mean(dim=0) for c in range(num_classes)]), dim=-1)


def leave_one_out_logits(support: torch.Tensor, label_ids: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, C) cosine of each example to the prototypes, its own class's built without it."""
    sums = torch.zeros(num_classes, support.shape[1], dtype=support.dtype).index_add_(0, label_ids, support)
    counts = torch.bincount(label_ids, minlength=num_classes).to(support.dtype)  # (C,)
    means = sums.unsqueeze(0).expand(len(support), -1, -1).clone()  # (N, C, H)
    own = torch.arange(len(support))
    means[own, label_ids] -= support
    sizes = counts.unsqueeze(0).expand(len(support), -1).clone()
    sizes[own, label_ids] -= 1
    means = F.normalize(means / sizes.clamp(min=1).unsqueeze(-1), dim=-1)
    return torch.einsum("nh,nch->nc", support, means)


def loo_reward(support: torch.Tensor, label_ids: torch.Tensor, num_classes: int) -> float:
    """Leave-one-out accuracy on the K examples, plus 1% of the mean cosine margin as a tie-break
    (accuracy alone is flat between most nearby prompts)."""
    logits = leave_one_out_logits(support, label_ids, num_classes)
    accuracy = (logits.argmax(dim=-1) == label_ids).float().mean()
    own = logits.gather(1, label_ids[:, None]).squeeze(1)
    rival = logits.scatter(1, label_ids[:, None], -2.0).max(dim=1).values
    return float(accuracy + 0.01 * (own - rival).mean())


def refine_by_reward(prompt: torch.Tensor, reward: Callable[[torch.Tensor], float], iterations: int,
                     population: int = 8, sigma: float = 0.05, learning_rate: float = 0.5,
                     seed: int = 0) -> tuple[torch.Tensor, list[float]]:
    """Evolution strategy (antithetic, rank-normalised; Salimans et al. 2017) on a (P, H) prompt using
    only ``reward(prompt)`` calls; returns the best prompt seen and the reward after each iteration."""
    generator = torch.Generator().manual_seed(seed)
    scale = prompt.std().item()
    best, best_reward = prompt.clone(), reward(prompt)
    current, history = prompt.clone(), [best_reward]
    for _ in range(iterations):
        noise = torch.randn((population, *prompt.shape), generator=generator)  # (N, P, H)
        rewards = torch.tensor([[reward(current + sigma * scale * n), reward(current - sigma * scale * n)]
                                for n in noise])  # (N, 2)
        ranks = rewards.flatten().argsort().argsort().float().view_as(rewards)
        ranks = ranks / (ranks.numel() - 1) - 0.5  # centred ranks in [-0.5, 0.5]
        step = ((ranks[:, 0] - ranks[:, 1]).view(-1, 1, 1) * noise).mean(dim=0)  # (P, H)
        current = current + learning_rate * sigma * scale * step
        value = reward(current)
        if value > best_reward:
            best, best_reward = current.clone(), value
        history.append(value)
    return best, history


def save_generator(out_dir: str | Path, generator: PromptGenerator, record: dict[str, Any]) -> Path:
    """generator.safetensors + generator.json (its settings and ``record``: backbone, tasks, curve)."""

    def write(tmp: Path) -> None:
        weights = {k: v.detach().contiguous() for k, v in generator.state_dict().items()}
        save_file(weights, str(tmp / GENERATOR_WEIGHTS), metadata={"format": "pt"})
        (tmp / GENERATOR_CONFIG).write_text(json.dumps({"settings": asdict(generator.settings), **record}, indent=2,
                                                       ensure_ascii=False) + "\n", encoding="utf-8")

    return write_directory_atomically(Path(out_dir), write, last=GENERATOR_CONFIG)


def load_generator(directory: str | Path) -> tuple[PromptGenerator, dict[str, Any]]:
    directory = Path(directory)
    if not (directory / GENERATOR_CONFIG).is_file():
        raise CheckpointError(f"{directory}: no {GENERATOR_CONFIG}; train a generator with nlpforge fewshot "
                              "meta-train --tasks FILE... --out DIR")
    record = json.loads((directory / GENERATOR_CONFIG).read_text(encoding="utf-8"))
    generator = PromptGenerator(GeneratorSettings(**record["settings"]))
    generator.load_state_dict(load_file(str(directory / GENERATOR_WEIGHTS)), strict=True)
    return generator.eval(), record
