"""How close the fp32 quickstart model runs to this CPU's matrix-multiply speed on SST-2 dev.

An encoder's work is almost all in its linear layers: per token and layer, 4·H² multiply-adds for
the Q, K, V and output projections and 2·H·I for the feed-forward block (attention scores add
2·T·H, small next to them at SST-2's lengths). This script counts those FLOPs for the real token
counts of SST-2 dev, measures what ``torch.mm`` sustains on matrices of the same shapes with the
same threads, and divides: the result is the most sentences per second any fp32 implementation
could reach here, to set beside the measured in-process ceiling and server throughput.

    python benchmarks/compute_bound.py --out benchmarks/results/compute_bound.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "sst2"
QUICKSTART = ROOT / "benchmarks" / "work" / "quickstart"


def sgemm_gflops(rows: int, inner: int, cols: int, seconds: float = 3.0) -> float:
    """Sustained GFLOP/s of (rows, inner) @ (inner, cols) fp32 products, best of 5 timed bursts."""
    import torch

    a, b = torch.randn(rows, inner), torch.randn(inner, cols)
    for _ in range(10):
        a @ b
    best = 0.0
    for _ in range(5):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 5:
            a @ b
            count += 1
        best = max(best, 2 * rows * inner * cols * count / (time.perf_counter() - start) / 1e9)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=QUICKSTART, help="checkpoint (default: the quickstart model)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "compute_bound.json")
    args = parser.parse_args()
    if not (args.model / "nlpforge.json").is_file():
        sys.exit(f"error: {args.model} is not a checkpoint; run `nlpforge quickstart --out {args.model}` first")
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine import machine_record
    from nlpforge.checkpoint import load_checkpoint
    from nlpforge.tasks import DataOptions, get_task

    loaded = load_checkpoint(args.model)
    config = loaded.config
    hidden, inner, layers = config.hidden_size, config.intermediate_size, config.num_layers
    task = get_task("classify")
    examples = task.read(SST2 / "dev.tsv", DataOptions())
    lengths = [len(f["input_ids"]) for f in task.encode(loaded.tokenizer, examples, loaded.meta["labels"],
                                                          args.max_length, DataOptions())]
    linear_flops_per_token = 2 * layers * (4 * hidden * hidden + 2 * hidden * inner)
    flops = sum(linear_flops_per_token * t + 2 * layers * 2 * t * t * hidden for t in lengths)
    tokens_per_batch = 32 * sum(lengths) // len(lengths)  # a batch of 32 sentences, packed
    gflops = {
        "qkv/out (T,H)@(H,H)": sgemm_gflops(tokens_per_batch, hidden, hidden),
        "ffn up (T,H)@(H,I)": sgemm_gflops(tokens_per_batch, hidden, inner),
        "ffn down (T,I)@(I,H)": sgemm_gflops(tokens_per_batch, inner, hidden),
    }
    # Time-weighted mean rate over one layer's products: 4 of (H,H), one up, one down.
    work = {"qkv/out (T,H)@(H,H)": 4 * hidden * hidden, "ffn up (T,H)@(H,I)": hidden * inner,
            "ffn down (T,I)@(I,H)": hidden * inner}
    rate = sum(work.values()) / sum(w / gflops[k] for k, w in work.items())
    per_sentence = flops / len(lengths)
    result = {
        "benchmark": "compute_bound", "machine": machine_record(), "model": str(args.model),
        "threads": torch.get_num_threads(), "sentences": len(lengths),
        "mean_tokens": round(sum(lengths) / len(lengths), 1),
        "gflop_per_sentence": round(per_sentence / 1e9, 4),
        "sgemm_gflops": {k: round(v, 1) for k, v in gflops.items()}, "sgemm_gflops_layer_mix": round(rate, 1),
        "max_sentences_per_s_at_sgemm_speed": round(rate * 1e9 / per_sentence, 1),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
