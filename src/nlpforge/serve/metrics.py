"""Prometheus metrics of the server: requests by route and status, latency, batch sizes, queue depth.

Each app gets its own registry (two servers in one process, as in the tests, do not mix counts).
The ASGI middleware counts every response, including the 4xx written by error handlers and the
401/413/503 refusals, because it sees the status line as it is sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Routes are labelled by path only when known, so random URLs cannot blow up label cardinality.
KNOWN_ROUTES = ("/v1/predict", "/v1/embed", "/v1/generate", "/v1/model", "/health", "/ready", "/metrics", "/")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    """The collectors of one server; ``render()`` is the /metrics body."""

    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self, queue_depth: Callable[[], float], in_flight: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("nlpforge_requests", "HTTP responses by route and status code.",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("nlpforge_request_seconds", "Time from request to response, by route.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("nlpforge_batch_size", "Inputs per model call.", buckets=BATCH_BUCKETS,
                                    registry=self.registry)
        self.queue_wait = Histogram("nlpforge_batch_queue_seconds",
                                    "How long the oldest input of a batch waited for its model call.",
                                    buckets=LATENCY_BUCKETS, registry=self.registry)
        self.inputs = Counter("nlpforge_inputs", "Inputs run through the model.", registry=self.registry)
        self.generated_tokens = Counter("nlpforge_generated_tokens", "Tokens generated (/v1/generate).",
                                        registry=self.registry)
        depth = Gauge("nlpforge_queue_depth", "Inputs waiting for a model call.", registry=self.registry)
        depth.set_function(queue_depth)
        flight = Gauge("nlpforge_inputs_in_flight", "Inputs queued or running.", registry=self.registry)
        flight.set_function(in_flight)
        self.ready = Gauge("nlpforge_ready", "1 once the model is loaded and warmed up.", registry=self.registry)

    def on_batch(self, size: int, queue_seconds: float) -> None:
        self.batch_size.observe(size)
        self.queue_wait.observe(queue_seconds)
        self.inputs.inc(size)

    def observe(self, path: str, status: int, seconds: float) -> None:
        route = path if path in KNOWN_ROUTES else "other"
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware (no per-request task, unlike BaseHTTPMiddleware): status + latency."""

    def __init__(self, app: Any, metrics: ServerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # if the app dies before sending a status line, the server sends a 500

        async def send_and_record(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            self.metrics.observe(scope["path"], status, time.perf_counter() - start)
