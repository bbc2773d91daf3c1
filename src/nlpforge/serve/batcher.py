"""Dynamic batching: gather the inputs of many requests into one model call, off the event loop.

Requests arrive on the asyncio loop and wait in one bounded FIFO (counted in inputs, not requests,
because an input is the unit of work). One collector coroutine per model instance takes the
oldest requests until ``max_batch_size`` inputs are gathered or ``max_wait_ms`` has passed since
the oldest of them arrived, runs the batch in that instance's own worker thread (the predictor
groups the inputs by token length inside it), and hands each request its slice of the results.

A full queue refuses new work at once (``QueueFullError`` -> 503 + Retry-After), so memory stays
bounded and nothing hangs; a request whose caller gave up (timeout) is skipped, not computed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

# (kind, inputs) -> one result per input, in order. ``kind`` tells the runner which model call
# to make ("predict", "embed"); a batch only ever holds one kind.
RunBatch = Callable[[str, list[Any]], list[Any]]


class QueueFullError(Exception):
    """The queue holds ``max_queue`` inputs already; the caller should retry later."""


class ShuttingDownError(Exception):
    """The batcher is draining for shutdown and takes no new work."""


@dataclass
class _Request:
    kind: str
    inputs: list[Any]
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    """Queue + collectors for ``len(runners)`` model instances (one worker thread each)."""

    def __init__(self, runners: Sequence[RunBatch], max_batch_size: int = 32, max_wait_ms: float = 5.0,
                 max_queue: int = 256, on_batch: Callable[[int, float], None] | None = None) -> None:
        """``on_batch(inputs, seconds the oldest of them waited)`` is called per model call (metrics)."""
        if max_batch_size < 1 or max_queue < 1 or max_wait_ms < 0 or not runners:
            raise ValueError("need max_batch_size >= 1, max_queue >= 1, max_wait_ms >= 0 and one runner")
        self.runners = list(runners)
        self.max_batch_size, self.max_wait, self.max_queue = max_batch_size, max_wait_ms / 1000, max_queue
        self.on_batch = on_batch
        self._waiting: deque[_Request] = deque()
        self._queued_inputs = 0  # inputs in _waiting (the bound applies to these)
        self._running_inputs = 0  # inputs inside a model call right now
        self._arrived: asyncio.Event | None = None
        self._collectors: list[asyncio.Task] = []
        self._executors = [ThreadPoolExecutor(1, thread_name_prefix=f"nlpforge-model-{i}")
                           for i in range(len(self.runners))]
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start one collector per model instance on the running event loop."""
        self._arrived = asyncio.Event()
        self._collectors = [asyncio.create_task(self._collect(i)) for i in range(len(self.runners))]

    async def stop(self) -> None:
        """Refuse new work, finish every queued and running request, then stop the threads."""
        self._closing = True
        while self._waiting or self._running_inputs:
            await asyncio.sleep(0.01)
        for task in self._collectors:
            task.cancel()
        await asyncio.gather(*self._collectors, return_exceptions=True)
        for executor in self._executors:
            executor.shutdown(wait=True)

    @property
    def queue_depth(self) -> int:
        """Inputs waiting for a model call."""
        return self._queued_inputs

    @property
    def in_flight(self) -> int:
        """Inputs waiting or running."""
        return self._queued_inputs + self._running_inputs

    # ------------------------------------------------------------------ requests

    async def submit(self, kind: str, inputs: list[Any], timeout: float | None = None) -> list[Any]:
        """Queue one request's inputs and wait for their results (in order).

        Raises QueueFullError when they do not fit, ShuttingDownError while draining, TimeoutError after
        ``timeout`` seconds (the inputs are then dropped if no model call took them yet), and
        whatever the model call raised.
        """
        if self._closing:
            raise ShuttingDownError
        if self._queued_inputs + len(inputs) > self.max_queue:
            raise QueueFullError
        request = _Request(kind, inputs, asyncio.get_running_loop().create_future())
        self._waiting.append(request)
        self._queued_inputs += len(inputs)
        assert self._arrived is not None, "call start() first"
        self._arrived.set()
        try:
            return await asyncio.wait_for(asyncio.shield(request.future), timeout)
        except TimeoutError:
            request.future.cancel()  # a collector that has not taken it yet will skip it
            raise

    async def _collect(self, instance: int) -> None:
        # One batch at a time per instance: while it runs, arrivals queue up and form the next
        # batch, which then starts at once (its oldest request has waited longer than the window).
        # Gathering the next batch early instead closes it before most clients have sent their
        # next request: smaller batches, measured 8 % lower throughput.
        while True:
            batch = await self._gather()
            if batch:
                await self._run(instance, batch)

    async def _run(self, instance: int, batch: list[_Request]) -> None:
        size = sum(len(r.inputs) for r in batch)
        self._running_inputs += size

        def work() -> tuple[list[_Request], list[Any], float]:
            # Runs in the worker thread: requests whose callers gave up (timeout) between gathering
            # and the model call are dropped here, not computed.
            live = [r for r in batch if not r.future.done()]
            waited = time.perf_counter() - batch[0].enqueued
            if not live:
                return live, [], waited
            return live, self.runners[instance](batch[0].kind, [x for r in live for x in r.inputs]), waited

        try:
            live, results, waited = await asyncio.get_running_loop().run_in_executor(self._executors[instance], work)
        except Exception as error:  # the model call failed: every request of the batch gets the error
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(error)
        else:
            if live and self.on_batch is not None:
                self.on_batch(sum(len(r.inputs) for r in live), waited)
            start = 0
            for request in live:
                if not request.future.done():
                    request.future.set_result(results[start: start + len(request.inputs)])
                start += len(request.inputs)
        finally:
            self._running_inputs -= size

    async def _gather(self) -> list[_Request]:
        """Wait for work, then for more until the oldest request has waited max_wait (at once when it
        already has, as under load); take the oldest requests of one kind."""
        assert self._arrived is not None
        while not self._live_head():
            self._arrived.clear()
            await self._arrived.wait()
        deadline = self._waiting[0].enqueued + self.max_wait
        while self._queued_inputs < self.max_batch_size and (remaining := deadline - time.perf_counter()) > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        batch: list[_Request] = []
        size = 0
        while self._waiting:
            request = self._waiting[0]
            if request.future.done():  # timed out while queued
                self._pop()
                continue
            if batch and (request.kind != batch[0].kind or size + len(request.inputs) > self.max_batch_size):
                break
            batch.append(self._pop())
            size += len(request.inputs)
        if self._waiting:
            self._arrived.set()  # let another idle collector take the rest
        return batch

    def _live_head(self) -> bool:
        while self._waiting and self._waiting[0].future.done():
            self._pop()
        return bool(self._waiting)

    def _pop(self) -> _Request:
        request = self._waiting.popleft()
        self._queued_inputs -= len(request.inputs)
        return request
