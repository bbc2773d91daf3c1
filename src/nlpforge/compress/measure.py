"""Measure a compressed artifact the same way for every stage: quality, latency, throughput, size.

All stages are measured in one process on the same eval examples and threads, so their numbers
compare directly. Latency is per request at batch 1 (p50/p95 over single examples in file
order); throughput is examples per second at batch 32 over length-sorted batches.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from nlpforge.data.collate import collate_inputs
from nlpforge.inference import forward_batches
from nlpforge.tasks import DataOptions, Task


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = int(position), min(int(position) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@torch.inference_mode()
def latency_ms(model: Any, features: Sequence[dict], pad_id: int, count: int = 100, warmup: int = 5) -> dict:
    """p50/p95/mean milliseconds of one forward pass on one example (the first ``count`` examples)."""
    model.eval()
    chosen = list(features[:count])
    for feature in chosen[:warmup]:
        model(**collate_inputs([feature], pad_id), packed=True)
    times = []
    for feature in chosen:
        inputs = collate_inputs([feature], pad_id)
        start = time.perf_counter()
        model(**inputs, packed=True)
        times.append(1000 * (time.perf_counter() - start))
    return {"p50": round(percentile(times, 50), 3), "p95": round(percentile(times, 95), 3),
            "mean": round(statistics.fmean(times), 3), "requests": len(times)}


def throughput(model: Any, features: Sequence[dict], pad_id: int, batch_size: int = 32, repeats: int = 2) -> float:
    """Examples per second at ``batch_size`` (best of ``repeats`` passes over all features)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _rows, _output in forward_batches(model, features, batch_size, pad_id):
            pass
        best = min(best, time.perf_counter() - start)
    return round(len(features) / best, 2)


def measure(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    examples: Sequence[Any],
    labels: list[str] | None,
    max_length: int,
    data: DataOptions,
    size_bytes: int,
) -> dict[str, Any]:
    """Quality (the task's metrics), batch-1 latency, batch-32 throughput and size of one artifact."""
    metrics = task.evaluate(model, tokenizer, examples, labels, max_length, 32, data)
    features = task.encode(tokenizer, examples, labels, max_length, data)
    return {
        "metrics": metrics,
        "metric": metrics[task.metric],
        "latency_ms_batch1": latency_ms(model, features, tokenizer.pad_token_id),
        "throughput_batch32": throughput(model, features, tokenizer.pad_token_id),
        "size_bytes": size_bytes,
        "size_mb": round(size_bytes / 2**20, 2),
    }
