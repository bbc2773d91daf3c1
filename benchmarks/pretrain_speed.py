"""Pre-training throughput: nlpforge's models and objectives vs transformers' in the same loop.

    python benchmarks/pretrain_speed.py --out benchmarks/results/pretrain_speed.json

Two pairs, each of the same configuration, initial weights and batches, trained with the same
fused AdamW step and the same number of steps, timed in alternating rounds (ours, theirs, ours,
...) so that machine drift hits both sides alike:

- causal LM: nlpforge ``GPT`` under the ``clm`` objective vs ``transformers.GPT2LMHeadModel``
  (SDPA attention), 6 layers, hidden 256, 4 heads, vocabulary 8,000, blocks of 256 tokens;
- masked LM: nlpforge's ``mlm`` objective (BERT encoder + tied MLM head, scoring only the masked
  positions) vs ``transformers.BertForMaskedLM`` (SDPA) given the same corrupted ids and labels,
  6 layers, hidden 256, blocks of 128 tokens.

Tokens/s counts the tokens of the blocks (no padding on either side). Targets: >= 1.1x for the
causal LM, >= 1.0x for the masked LM.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import transformers

from machine import machine_record
from nlpforge.config import ModelConfig
from nlpforge.pretraining import get_objective
from nlpforge.pretraining.masking import corrupt, select_tokens

VOCAB = 8000


def gpt_pair(block: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    config = ModelConfig.from_name("gpt-6l-h256", vocab_size=VOCAB, bos_token_id=0, eos_token_id=0,
                                   max_positions=max(512, block))
    ours = get_objective("clm").new_model(config)
    hf_config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=256, n_layer=6, n_head=4, n_inner=1024,
                                        n_positions=max(512, block), bos_token_id=0, eos_token_id=0)
    hf_config._attn_implementation = "sdpa"
    theirs = transformers.GPT2LMHeadModel(hf_config)
    return ours, theirs


def bert_pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    config = ModelConfig.from_name("bert-6l-h256", vocab_size=VOCAB)
    ours = get_objective("mlm").new_model(config)
    hf_config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=256, num_hidden_layers=6,
                                        num_attention_heads=4, intermediate_size=1024)
    hf_config._attn_implementation = "sdpa"
    theirs = transformers.BertForMaskedLM(hf_config)
    return ours, theirs


def run_steps(step, batches: list[dict]) -> float:
    """Seconds for one optimizer step per batch."""
    start = time.perf_counter()
    for batch in batches:
        step(batch)
    return time.perf_counter() - start


def trainer(model: torch.nn.Module, loss_of) -> callable:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    model.train()

    def step(batch: dict) -> None:
        loss = loss_of(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def compare(name: str, ours_step, theirs_step, batches: list[dict], tokens_per_batch: int, rounds: int) -> dict:
    run_steps(ours_step, batches[:2])  # warm-up: allocator, kernels
    run_steps(theirs_step, batches[:2])
    ours_seconds, theirs_seconds = [], []
    for _ in range(rounds):
        ours_seconds.append(run_steps(ours_step, batches))
        theirs_seconds.append(run_steps(theirs_step, batches))
    tokens = tokens_per_batch * len(batches)
    ours_rate = [tokens / s for s in ours_seconds]
    theirs_rate = [tokens / s for s in theirs_seconds]
    result = {"ours_tokens_per_s": round(float(np.median(ours_rate)), 1),
              "transformers_tokens_per_s": round(float(np.median(theirs_rate)), 1),
              "rounds": rounds, "steps_per_round": len(batches), "tokens_per_step": tokens_per_batch,
              "ours_per_round": [round(r, 1) for r in ours_rate], "transformers_per_round": [round(r, 1) for r in
                                                                                            theirs_rate]}
    result["speedup"] = round(result["ours_tokens_per_s"] / result["transformers_tokens_per_s"], 3)
    print(name, json.dumps({k: v for k, v in result.items() if "per_round" not in k}), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/pretrain_speed.json")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    results = {}

    # causal LM
    block = 256
    ours, theirs = gpt_pair(block)
    clm = get_objective("clm")
    batches = [{"input_ids": torch.randint(VOCAB, (args.batch_size, block), generator=generator)}
               for _ in range(args.steps)]
    results["clm_gpt_6l_h256"] = compare(
        "clm", trainer(ours, lambda m, b: clm.loss(m, b)[0]),
        trainer(theirs, lambda m, b: m(input_ids=b["input_ids"], labels=b["input_ids"]).loss),
        batches, args.batch_size * block, args.rounds)

    # masked LM: the same corrupted ids and labels for both
    block = 128
    ours, theirs = bert_pair()
    mlm = get_objective("mlm")
    batches = []
    for _ in range(args.steps):
        ids = torch.randint(5, VOCAB, (args.batch_size, block), generator=generator)
        ids[:, 0], ids[:, -1] = 2, 3
        maskable = (ids != 2) & (ids != 3)
        inputs, labels = corrupt(ids, select_tokens(maskable, 0.15, generator), 4, VOCAB, generator)
        batches.append({"input_ids": inputs, "attention_mask": torch.ones_like(inputs), "labels": labels})
    results["mlm_bert_6l_h256"] = compare(
        "mlm", trainer(ours, lambda m, b: mlm.loss(m, b)[0]),
        trainer(theirs, lambda m, b: m(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                                        labels=b["labels"]).loss),
        batches, args.batch_size * block, args.rounds)

    record = {"results": results, "targets": {"clm_speedup": 1.1, "mlm_speedup": 1.0},
              "machine": machine_record(), "command": "python benchmarks/pretrain_speed.py",
              "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
