"""The model instances behind ``/v1/generate``: one generation at a time on each, in its own thread.

A generation is a loop of model calls whose text a client may read as it is produced (server-sent
events), so it does not go through the dynamic batcher: a request takes a free instance, waiting
in a bounded line for one (``QueueFullError`` past ``max_waiting`` -> 503 + Retry-After,
``TimeoutError`` after the request timeout -> 504), runs its steps in that instance's thread (the
event loop keeps answering meanwhile), and gives the instance back when it ends, fails or its
client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from nlpforge.predictor import Predictor
from nlpforge.serve.batcher import QueueFullError, ShuttingDownError

T = TypeVar("T")


class GenerationPool:
    """``len(predictors)`` model instances, each with one thread, handed out one request at a time."""

    def __init__(self, predictors: Sequence[Predictor], max_waiting: int) -> None:
        self.predictors = list(predictors)
        self.max_waiting = max_waiting
        self.waiting = 0  # requests waiting for an instance
        self.running = 0  # instances generating
        self._free: asyncio.Queue[int] = asyncio.Queue()
        for index in range(len(self.predictors)):
            self._free.put_nowait(index)
        self._executors = [ThreadPoolExecutor(1, thread_name_prefix=f"nlpforge-generate-{i}")
                           for i in range(len(self.predictors))]
        self._closing = False

    async def acquire(self, timeout: float | None) -> int:
        """The index of a free instance, once one is free (at most ``timeout`` seconds)."""
        if self._closing:
            raise ShuttingDownError
        if self.waiting >= self.max_waiting:
            raise QueueFullError
        self.waiting += 1
        try:
            index = await asyncio.wait_for(self._free.get(), timeout)
        finally:
            self.waiting -= 1
        self.running += 1
        return index

    def release(self, index: int) -> None:
        self.running -= 1
        self._free.put_nowait(index)

    async def run(self, index: int, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in instance ``index``'s thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executors[index], function, *args)

    def finish(self, index: int, steps: Iterator[Any]) -> None:
        """Close ``steps`` in the instance's thread (after a step that may still be running there),
        then free the instance. Safe to call from a ``finally`` of a cancelled request."""
        loop = asyncio.get_running_loop()

        def freed(_: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: the server is stopping
                loop.call_soon_threadsafe(self.release, index)

        close = getattr(steps, "close", None)
        self._executors[index].submit(close if close is not None else (lambda: None)).add_done_callback(freed)

    async def close(self) -> None:
        """Refuse new requests, let running generations end, then stop the threads."""
        self._closing = True
        while self.running:
            await asyncio.sleep(0.01)
        for executor in self._executors:
            executor.shutdown(wait=True)
