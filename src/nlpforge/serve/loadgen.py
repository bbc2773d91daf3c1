"""A bounded load generator for any nlpforge server (``nlpforge bench-serve``).

Closed loop (default): ``concurrency`` clients, each sends a request, waits for the answer and
sends the next, for ``duration`` seconds. Open loop (``rate``): requests start at a fixed rate
whatever the answers, as real traffic does, with at most ``max_in_flight`` outstanding (beyond
that a start is counted as ``dropped_by_client``, so the generator itself never grows without
bound). Each request carries ``inputs_per_request`` inputs taken in turn from the input list.

Latency percentiles are over requests that got a response; counts are by HTTP status, with
transport failures (refused, reset, client timeout) counted by exception name.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class LoadResult:
    """What one load run measured."""

    url: str
    mode: str
    concurrency: int
    rate: float | None
    duration_s: float
    requests: int
    inputs_per_request: int
    by_status: dict[str, int]
    latency_ms: dict[str, float]  # p50/p95/p99/max of 200 responses
    all_latency_ms: dict[str, float] = field(default_factory=dict)  # the same over every response

    @property
    def ok(self) -> int:
        return self.by_status.get("200", 0)

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return self.ok / self.duration_s

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "mode": self.mode, "concurrency": self.concurrency, "rate": self.rate,
                "duration_s": round(self.duration_s, 2), "requests": self.requests,
                "inputs_per_request": self.inputs_per_request, "by_status": self.by_status,
                "ok_per_s": round(self.throughput, 1),
                "inputs_per_s": round(self.throughput * self.inputs_per_request, 1),
                "latency_ms_ok": self.latency_ms, "latency_ms_all": self.all_latency_ms}

    def summary(self) -> str:
        lat, inputs_per_s = self.latency_ms, self.throughput * self.inputs_per_request
        lines = [f"{self.url}  {self.mode}, {self.duration_s:.1f} s, {self.requests} requests",
                 f"  throughput  {self.throughput:.1f} req/s ({inputs_per_s:.1f} inputs/s)",
                 f"  latency ms  p50 {lat.get('p50', float('nan')):.1f}  p95 {lat.get('p95', float('nan')):.1f}"
                 f"  p99 {lat.get('p99', float('nan')):.1f}  max {lat.get('max', float('nan')):.1f}  (200 responses)",
                 "  by status   " + "  ".join(f"{k}: {v}" for k, v in sorted(self.by_status.items()))]
        return "\n".join(lines)


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    array = np.asarray(values) * 1000
    return {name: round(float(np.percentile(array, q)), 2) for name, q in
            (("p50", 50), ("p95", 95), ("p99", 99))} | {"max": round(float(array.max()), 2)}


async def run_load(url: str, inputs: list[Any], concurrency: int = 32, duration: float = 20.0,
                   rate: float | None = None, max_in_flight: int = 1024, inputs_per_request: int = 1,
                   api_key: str | None = None, timeout: float = 60.0) -> LoadResult:
    """Drive ``url`` (POST ``{"inputs": [...]}``) and measure; see the module docstring."""
    import aiohttp

    if not inputs:
        raise ValueError("no inputs to send")
    # Bodies are encoded once up front so the generator spends its CPU on requests, not JSON.
    bodies = [json.dumps({"inputs": [inputs[(i * inputs_per_request + j) % len(inputs)]
                                     for j in range(inputs_per_request)]}, ensure_ascii=False).encode()
              for i in range(min(len(inputs), 4096))]
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    statuses: Counter[str] = Counter()
    ok_latency: list[float] = []
    all_latency: list[float] = []
    sent = 0
    connector = aiohttp.TCPConnector(limit=max(concurrency, max_in_flight if rate else 0), force_close=False)
    client_timeout = aiohttp.ClientTimeout(total=timeout)

    async def one(session: aiohttp.ClientSession, body: bytes) -> None:
        start = time.perf_counter()
        try:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                status = str(response.status)
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            statuses[type(error).__name__] += 1
            return
        elapsed = time.perf_counter() - start
        statuses[status] += 1
        all_latency.append(elapsed)
        if status == "200":
            ok_latency.append(elapsed)

    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        start = time.perf_counter()
        end = start + duration
        if rate is None:
            async def client(offset: int) -> None:
                nonlocal sent
                i = offset
                while time.perf_counter() < end:
                    sent += 1
                    await one(session, bodies[i % len(bodies)])
                    i += concurrency
            await asyncio.gather(*(client(k) for k in range(concurrency)))
        else:
            tasks: set[asyncio.Task] = set()
            interval = 1.0 / rate
            next_start = start
            i = 0
            while (now := time.perf_counter()) < end:
                if now < next_start:
                    await asyncio.sleep(next_start - now)
                    continue
                next_start += interval
                sent += 1
                if len(tasks) >= max_in_flight:
                    statuses["dropped_by_client"] += 1
                    continue
                task = asyncio.create_task(one(session, bodies[i % len(bodies)]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            if tasks:
                await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return LoadResult(url, "open loop" if rate else "closed loop", concurrency, rate, elapsed, sent,
                      inputs_per_request, dict(statuses), _percentiles(ok_latency), _percentiles(all_latency))
