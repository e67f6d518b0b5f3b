"""Adaptive batching: concurrent requests to one model run as one model call.

One worker task per model takes queued requests whenever the model is free, up to
``max_batch_size`` rows (a request larger than that runs alone), runs the model in the model's
own thread and hands each caller exactly its rows back. Batches form on their own under load:
while the model computes, requests queue, and the next batch takes them all. When the last batch
showed concurrency, the worker holds the batch open while requests keep arriving (closing it
after a 0.2 ms lull, when full, or ``max_batch_delay_ms`` after the oldest request); a lone
request never waits for company. A bounded queue turns
overload into ``OverloadedError``; a request past its deadline fails with ``BatchTimeoutError``;
a model exception fails only its batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelyard.errors import (
    BatchTimeoutError,
    ModelyardError,
    OverloadedError,
    PredictionError,
)
from modelyard.serving.validation import Rows

logger = logging.getLogger(__name__)

Array = npt.NDArray[Any]
#: A batch that is filling closes when no request arrived for this long.
FILL_GAP_S = 0.0002
#: How often deadlines are checked (a late request is failed at most this much after it).
SWEEP_S = 0.005
RunBatch = Callable[[Rows, tuple[str, ...]], dict[str, Array]]


@dataclass(slots=True)
class BatchResult:
    outputs: dict[str, Array]
    queue_wait_s: float
    compute_s: float
    batch_rows: int


@dataclass(slots=True)
class _Pending:
    rows: Rows
    outputs: tuple[str, ...]
    future: asyncio.Future[BatchResult]
    enqueued: float
    deadline: float
    timeout_s: float


class AdaptiveBatcher:
    """Merges concurrent requests for one model into batches."""

    def __init__(
        self,
        run_batch: RunBatch,
        *,
        executor: Executor,
        max_batch_size: int = 64,
        max_batch_delay_ms: float = 2.0,
        max_queue: int = 1024,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._run_batch = run_batch
        self._executor = executor
        self.max_batch_size = max_batch_size
        self._delay_s = max_batch_delay_ms / 1000
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._wake: asyncio.Event | None = None
        self._fill: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._running: list[_Pending] = []
        self._closing = False
        self._last_batch_requests = 0

    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._wake = asyncio.Event()
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._work())
            self._sweeper = loop.create_task(self._sweep())

    async def submit(
        self, rows: Rows, outputs: tuple[str, ...], *, timeout_s: float
    ) -> BatchResult:
        """Queue ``rows``; the result holds exactly this request's rows of each output."""
        if self._closing:
            raise OverloadedError("The model is shutting down; retry on another replica.")
        if len(self._queue) >= self.max_queue:
            raise OverloadedError(
                f"The model's queue is full ({self.max_queue} requests); retry shortly."
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[BatchResult] = loop.create_future()
        now = loop.time()
        self._queue.append(_Pending(rows, outputs, future, now, now + timeout_s, timeout_s))
        self._queued_rows += rows.n
        assert self._wake is not None, "start() the batcher first"
        self._wake.set()
        fill = self._fill
        if fill is not None and self._queued_rows >= self.max_batch_size and not fill.done():
            fill.set_result(None)
        return await future

    async def close(self) -> None:
        """Finish every queued request, then stop."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._fill is not None and not self._fill.done():
            self._fill.set_result(None)
        if self._task is not None:
            await self._task
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def _sweep(self) -> None:
        """Fail requests past their deadline, queued or running (one timer for all of them,
        cheaper than one per request)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_S)
            now = loop.time()
            for item in (*self._queue, *self._running):
                if now >= item.deadline and not item.future.done():
                    _expire(item.future, item.timeout_s)

    async def _work(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._delay_s > 0 and self._last_batch_requests > 1 and not self._closing:
                await self._wait_to_fill(loop)
            batch = self._take()
            if not batch:
                continue
            self._last_batch_requests = len(batch)
            await self._run(loop, batch)

    async def _wait_to_fill(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hold the batch open while requests keep arriving: close it when no new request came
        for ``FILL_GAP_S``, when it is full, or ``max_batch_delay_ms`` after its oldest
        request, whichever is first."""
        deadline = self._queue[0].enqueued + self._delay_s
        while self._queued_rows < self.max_batch_size:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            before = len(self._queue)
            self._fill = loop.create_future()
            timer = loop.call_later(min(remaining, FILL_GAP_S), _release, self._fill)
            try:
                await self._fill
            finally:
                timer.cancel()
                self._fill = None
            if len(self._queue) == before:
                return

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        rows = 0
        while self._queue:
            item = self._queue[0]
            if item.future.done():  # timed out while queued
                self._queue.popleft()
                self._queued_rows -= item.rows.n
                continue
            if batch and rows + item.rows.n > self.max_batch_size:
                break
            self._queue.popleft()
            self._queued_rows -= item.rows.n
            batch.append(item)
            rows += item.rows.n
            if rows >= self.max_batch_size:
                break
        return batch

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        merged = batch[0].rows if len(batch) == 1 else _merge([p.rows for p in batch])
        wanted = batch[0].outputs
        for item in batch[1:]:
            if item.outputs != wanted:
                wanted = tuple(dict.fromkeys(wanted + item.outputs))
        started = loop.time()
        self._running = batch
        try:
            outputs = await loop.run_in_executor(self._executor, self._run_batch, merged, wanted)
        except ModelyardError as exc:
            _fail(batch, exc)
            return
        except Exception as exc:
            logger.exception("model failed on a batch of %d rows", merged.n)
            _fail(batch, PredictionError(f"The model failed on this batch: {_first_line(exc)}."))
            return
        finally:
            self._running = []
        compute_s = loop.time() - started
        if self._on_batch is not None:
            self._on_batch(merged.n, compute_s)
        offset = 0
        for item in batch:
            end = offset + item.rows.n
            if not item.future.done():
                own = {name: outputs[name][offset:end] for name in item.outputs}
                item.future.set_result(
                    BatchResult(own, started - item.enqueued, compute_s, merged.n)
                )
            offset = end


def _merge(parts: list[Rows]) -> Rows:
    n = sum(p.n for p in parts)
    if parts[0].matrix is not None:
        return Rows(n, np.concatenate([p.matrix for p in parts if p.matrix is not None]), None)
    columns = [p.columns for p in parts if p.columns is not None]
    merged = [np.concatenate(group) for group in zip(*columns, strict=True)]
    return Rows(n, None, merged)


def _fail(batch: list[_Pending], exc: BaseException) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(exc)


def _expire(future: asyncio.Future[BatchResult], timeout_s: float) -> None:
    if not future.done():
        future.set_exception(
            BatchTimeoutError(f"The prediction did not finish within {timeout_s * 1000:.0f} ms.")
        )


def _release(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
