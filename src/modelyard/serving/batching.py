"""Adaptive batching: concurrent requests to one model run as one model call.

One worker task per model takes queued requests whenever the model is free, up to
``max_batch_size`` rows and, for a text model, ``max_batch_tokens`` padded tokens (rows times the
batch's longest row; a request larger than either cap runs alone), runs the model in the model's
own thread and hands each caller exactly its rows back. Requests are taken in arrival order, so a
long text closes the batch before it rather than making the short ones ahead of it pad to its
length. Batches form on their own under load:
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
import sys
import time
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
    first_line,
)
from modelyard.flavors import CALL_COST_TOKENS, Tokens
from modelyard.serving.validation import Rows

logger = logging.getLogger(__name__)

try:  # per-thread counts: Linux
    import resource

    _RUSAGE_THREAD: int | None = getattr(resource, "RUSAGE_THREAD", None)
except ImportError:  # Windows
    _RUSAGE_THREAD = None

Array = npt.NDArray[Any]
#: A batch that is filling closes when no request arrived for this long. Measured: libuv keeps
#: timers in whole milliseconds, so under uvloop (the server's loop) a 0.2 ms timer fires on the
#: loop's next pass (3 us later), i.e. the batch closes once a pass brought no request; asyncio's
#: own loop rounds the wait up to 1 ms (epoll's unit), 1.09 ms measured.
FILL_GAP_S = 0.0002
#: How often deadlines are checked (a late request is failed at most this much after it).
SWEEP_S = 0.005
#: A batch runs on the event loop itself, not in the model's thread, when the model's recent
#: batches say it takes at most this much CPU: handing a batch to the thread and its answer back
#: costs more than that here (a future chained across threads, a wake-up of each thread, a
#: switch of the interpreter lock). Measured with 1-row requests at c=32 on one core, a
#: 100-tree model on the tree kernel (72 us per batch of 31 rows): 7-10% more requests per
#: CPU-second on the loop, in interleaved runs. A slower model, or a batch of features fetched
#: online, keeps its thread.
INLINE_MAX_S = 0.0002
#: A model's per-row cost is the median of its last this many batches': one batch slowed by
#: what is not the model (the garbage collector, caches another thread has just emptied) moves
#: it no more than a typical one. With a moving average, on a noisy machine (1-row requests at
#: c=32, the tree kernel's 32-row batches at about 0.1 ms, near the loop's 0.2 ms budget), 7% to
#: 73% of a cheap model's batches ran in its thread, five seconds by five; with the median and
#: the waits below left out, 0 to 15%, most often under 1%.
ROW_COST_SAMPLES = 5
#: A batch on the loop that takes longer than this sends its model to its thread at once, with
#: no wait for the median to follow: the loop answers nobody meanwhile.
INLINE_ESCAPE_S = 10 * INLINE_MAX_S
#: How fast a model's wall-over-CPU ratio, measured on the loop, fades back to 1 while its
#: batches run in the thread (per batch): a runtime computing in threads of its own tries the
#: loop again only now and then, and a batch on the loop slowed by a passing preemption does not
#: keep a cheap model off the loop for long.
WALL_PER_CPU_DECAY = 0.9
#: How many switch intervals (``sys.getswitchinterval``) a batch on the loop may wait off its
#: CPU and still be costed by its CPU time alone: a thread that wants the interpreter lock gets
#: it one interval after asking and may hold it one more before the loop has it back.
PREEMPTION_SWITCHES = 3
RunBatch = Callable[[Rows, tuple[str, ...]], dict[str, Array]]
#: Turns each request's rows into the model's rows, or the error that fails that request only
#: (online features fetched once per batch: ``serving.features.FeatureJoin``).
PrepareBatch = Callable[[list[Rows]], list["Rows | ModelyardError"]]
#: What one more model call costs, in padded tokens (``flavors.CALL_COST_TOKENS``, measured): a
#: batch is split into sub-batches of similar lengths only where that saves more padding than
#: this per extra call.
SUB_BATCH_OVERHEAD_TOKENS = CALL_COST_TOKENS
#: ... and only where the split costs at most this share of the batch padded as one.
SUB_BATCH_MIN_GAIN = 0.75


@dataclass(slots=True)
class BatchResult:
    outputs: dict[str, Array]
    queue_wait_s: float
    compute_s: float
    batch_rows: int
    #: This request's share (by rows) of the CPU time the model's thread spent on the batch.
    cpu_s: float = 0.0
    #: The rows the model ran on when the batcher prepared them (the fetched features).
    inputs: Rows | None = None


class Reply:
    """How the batcher answers a caller that takes a callback instead of a future (the HTTP
    short path): ``callback(argument, result, error)`` runs on the loop as soon as the batch is
    done, without a future's scheduling. It has the three methods of a future the batcher
    calls; an exception in the callback is logged and fails no other request of the batch."""

    __slots__ = ("_argument", "_callback", "_done")

    def __init__(
        self,
        callback: Callable[[Any, BatchResult | None, BaseException | None], None],
        argument: Any,
    ) -> None:
        self._callback = callback
        self._argument = argument
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, result: BatchResult) -> None:
        self._answer(result, None)

    def set_exception(self, error: BaseException) -> None:
        self._answer(None, error)

    def _answer(self, result: BatchResult | None, error: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._callback(self._argument, result, error)
        except Exception:
            logger.exception("answering a request failed")


@dataclass(slots=True)
class _Pending:
    rows: Rows
    outputs: tuple[str, ...]
    future: asyncio.Future[BatchResult] | Reply
    enqueued: float
    deadline: float
    timeout_s: float
    #: The request's longest token row (0 without tokens): a batch pads to its longest.
    longest: int = 0


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
        max_batch_tokens: int | None = None,
        on_batch: Callable[[int, float, float], None] | None = None,
        prepare: PrepareBatch | None = None,
    ) -> None:
        """``on_batch(rows, compute_s, cpu_s)`` hears of every batch that ran: its rows, its
        wall time and the CPU time of the model's thread on it. ``prepare`` runs in the model's
        thread first, once per batch, on each request's rows."""
        self._run_batch = run_batch
        self._prepare = prepare
        self._executor = executor
        self.max_batch_size = max_batch_size
        #: The most padded tokens (rows x longest row) a batch of tokenized rows may hold.
        self.max_batch_tokens = max_batch_tokens
        self._delay_s = max_batch_delay_ms / 1000
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        #: The queued requests' padded tokens, each padded to its own longest row (a lower
        #: bound of what they cost together).
        self._queued_tokens = 0
        self._wake: asyncio.Event | None = None
        #: The loop ``start`` ran on: ``asyncio.get_running_loop`` makes a ``getpid`` system
        #: call on every call in Python 3.11 (0.27 us here), once a request in ``enqueue``.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fill: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._running: list[_Pending] = []
        self._closing = False
        self._last_batch_requests = 0
        #: The model's time per row, the median of its last batches' (``None`` before the
        #: first): whether a batch runs on the event loop (``INLINE_MAX_S``). A batch on the
        #: loop counts the wall time the loop waited for it, less a wait another thread caused
        #: (``_compute``); a batch in the thread counts the thread's CPU time (wall time would
        #: count the loop's own work on a shared core), scaled by ``_wall_per_cpu`` for a
        #: runtime that computes in threads of its own.
        self._row_cost_s: float | None = None
        self._row_costs: deque[float] = deque(maxlen=ROW_COST_SAMPLES)
        #: The wall time over the CPU time of the last batch on the loop (at least 1), which a
        #: batch in the thread multiplies its CPU time by; it fades back to 1 batch by batch.
        self._wall_per_cpu = 1.0

    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._wake = asyncio.Event()
            self._loop = loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._work())
            self._sweeper = loop.create_task(self._sweep())

    async def submit(
        self, rows: Rows, outputs: tuple[str, ...], *, timeout_s: float
    ) -> BatchResult:
        """Queue ``rows``; the result holds exactly this request's rows of each output."""
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self.enqueue(rows, outputs, timeout_s=timeout_s, reply=future)
        return await future

    def enqueue(
        self,
        rows: Rows,
        outputs: tuple[str, ...],
        *,
        timeout_s: float,
        reply: asyncio.Future[BatchResult] | Reply,
    ) -> None:
        """``submit`` for a caller that is answered through ``reply`` (a future it awaits, or
        a callback); raises at once when the request cannot join the queue."""
        if self._closing:
            raise OverloadedError("The model is shutting down; retry on another replica.")
        if len(self._queue) >= self.max_queue:
            raise OverloadedError(
                f"The model's queue is full ({self.max_queue} requests); retry shortly."
            )
        assert self._loop is not None and self._wake is not None, "start() the batcher first"
        now = self._loop.time()
        tokens = rows.tokens
        longest = int(tokens.lengths.max()) if tokens is not None and tokens.n else 0
        self._queue.append(_Pending(rows, outputs, reply, now, now + timeout_s, timeout_s, longest))
        self._queued_rows += rows.n
        self._queued_tokens += rows.n * longest
        self._wake.set()
        fill = self._fill
        if fill is not None and self._full() and not fill.done():
            fill.set_result(None)

    def _full(self) -> bool:
        """Whether the queue holds at least one full batch (by rows or by tokens)."""
        cap = self.max_batch_tokens
        return self._queued_rows >= self.max_batch_size or (
            cap is not None and self._queued_tokens >= cap
        )

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
        while not self._full():
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
        """The next batch, in arrival order: it closes before the request that would take it
        past ``max_batch_size`` rows or ``max_batch_tokens`` padded tokens."""
        batch: list[_Pending] = []
        rows = 0
        longest = 0
        cap = self.max_batch_tokens if self.max_batch_tokens is not None else -1
        while self._queue:
            item = self._queue[0]
            if item.future.done():  # timed out while queued
                self._pop()
                continue
            n = rows + item.rows.n
            padded = n * max(longest, item.longest)
            if batch and (n > self.max_batch_size or 0 <= cap < padded):
                break
            self._pop()
            batch.append(item)
            rows = n
            longest = max(longest, item.longest)
            if rows >= self.max_batch_size or 0 <= cap <= padded:
                break
        return batch

    def _pop(self) -> None:
        item = self._queue.popleft()
        self._queued_rows -= item.rows.n
        self._queued_tokens -= item.rows.n * item.longest

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        wanted = batch[0].outputs
        for item in batch[1:]:
            if item.outputs != wanted:
                wanted = tuple(dict.fromkeys(wanted + item.outputs))
        started = loop.time()
        self._running = batch
        try:
            prepared, merged, outputs, cpu_s = await self._compute(loop, batch, wanted)
        except ModelyardError as exc:
            _fail(batch, exc)
            return
        except Exception as exc:
            logger.exception("model failed on a batch of %d requests", len(batch))
            _fail(batch, PredictionError(f"The model failed on this batch: {first_line(exc)}."))
            return
        finally:
            self._running = []
        now = loop.time()
        compute_s = now - started
        if self._on_batch is not None and merged.n:
            self._on_batch(merged.n, compute_s, cpu_s)
        per_row_s = cpu_s / merged.n if merged.n else 0.0
        # A batch on the loop held it (no sweep ran): a request whose deadline passed meanwhile
        # fails as it would have in the thread.
        offset = 0
        for i, item in enumerate(batch):
            rows = item.rows
            inputs: Rows | None = None
            if prepared is not None:
                ready = prepared[i]
                if isinstance(ready, ModelyardError):
                    _fail([item], ready)
                    continue
                rows = inputs = ready
            end = offset + rows.n
            if now >= item.deadline:
                _expire(item.future, item.timeout_s)
            elif not item.future.done():
                own = {name: outputs[name][offset:end] for name in item.outputs}
                share = per_row_s * rows.n
                item.future.set_result(
                    BatchResult(own, started - item.enqueued, compute_s, merged.n, share, inputs)
                )
            offset = end

    async def _compute(
        self, loop: asyncio.AbstractEventLoop, batch: list[_Pending], wanted: tuple[str, ...]
    ) -> tuple[list[Rows | ModelyardError] | None, Rows, dict[str, Array], float]:
        """The model on ``batch``: each request's prepared rows (or ``None`` without
        ``prepare``), the rows it ran on, its outputs and its thread's CPU time. A model cheap
        enough runs on the loop (``INLINE_MAX_S``), any other in its thread."""
        if self._prepare is not None:
            return await loop.run_in_executor(
                self._executor, _prepared_on_cpu, self._prepare, self._run_batch,
                [p.rows for p in batch], wanted,
            )  # fmt: skip
        merged = batch[0].rows if len(batch) == 1 else _merge([p.rows for p in batch])
        cost = self._row_cost_s
        costs = self._row_costs
        if cost is not None and cost * merged.n <= INLINE_MAX_S:
            preempted = _preemptions()
            began = time.perf_counter()
            outputs, cpu_s = _on_cpu(self._run_batch, merged, wanted)
            wall_s = time.perf_counter() - began
            # The time the loop spent off its CPU counts (a runtime's own threads, a model
            # that sleeps) unless a hand-over of the interpreter lock explains it, or the
            # system gave the CPU to another thread meanwhile (the prediction log's writer
            # on the same core). Counted, each such wait also set ``_wall_per_cpu`` and kept
            # a cheap model in its thread for some 30 batches: with the log on, 5 to 8 waits
            # over 1.5 ms in 5 s, and 140 to 260 batches in the thread.
            waited_s = wall_s - cpu_s
            if (
                waited_s > PREEMPTION_SWITCHES * sys.getswitchinterval()
                and _preemptions() == preempted
            ):
                spent_s = wall_s
                self._wall_per_cpu = max(1.0, wall_s / cpu_s) if cpu_s > 0 else 1.0
            else:
                spent_s = cpu_s
                self._wall_per_cpu = 1.0
            if spent_s > INLINE_ESCAPE_S:
                costs.clear()
        else:
            outputs, cpu_s = await loop.run_in_executor(
                self._executor, _on_cpu, self._run_batch, merged, wanted
            )
            spent_s = cpu_s * self._wall_per_cpu
            self._wall_per_cpu = 1.0 + (self._wall_per_cpu - 1.0) * WALL_PER_CPU_DECAY
        if merged.n:
            costs.append(spent_s / merged.n)
            self._row_cost_s = sorted(costs)[len(costs) // 2]
        return None, merged, outputs, cpu_s


def _preemptions() -> int:
    """How many times the system has taken the CPU from this thread (its involuntary context
    switches; 0 where the platform does not count them per thread)."""
    if _RUSAGE_THREAD is None:
        return 0
    return resource.getrusage(_RUSAGE_THREAD).ru_nivcsw


def _on_cpu(
    run_batch: RunBatch, rows: Rows, wanted: tuple[str, ...]
) -> tuple[dict[str, Array], float]:
    """``run_batch`` in the model's thread, with the CPU time that thread spent on it (the
    cost figures: threads a runtime starts itself, such as onnxruntime's, are not counted)."""
    started = time.thread_time()
    outputs = run_batch(rows, wanted)
    return outputs, time.thread_time() - started


def _prepared_on_cpu(
    prepare: PrepareBatch, run_batch: RunBatch, parts: list[Rows], wanted: tuple[str, ...]
) -> tuple[list[Rows | ModelyardError], Rows, dict[str, Array], float]:
    """``prepare`` the batch's requests, then run the model on the rows of those it kept; the
    CPU time counts both."""
    started = time.thread_time()
    prepared = prepare(parts)
    kept = [rows for rows in prepared if not isinstance(rows, ModelyardError)]
    if not kept:
        return prepared, Rows(0, None, None), {}, time.thread_time() - started
    merged = kept[0] if len(kept) == 1 else _merge(kept)
    outputs = run_batch(merged, wanted)
    return prepared, merged, outputs, time.thread_time() - started


def length_groups(
    lengths: Array, *, overhead_tokens: int = SUB_BATCH_OVERHEAD_TOKENS
) -> list[Array] | None:
    """Row indices of sub-batches of similar length, shortest first, that cost clearly less
    padding than one batch (each sub-batch pads to its own longest row, and each extra model
    call is charged ``overhead_tokens``); ``None`` when one batch is as good.

    The split is the cheapest one over the rows sorted by length (dynamic programming over the
    cut points, O(n^2) numpy steps on the batch's rows, which the row cap bounds)."""
    n = len(lengths)
    if n < 2:
        return None
    one_batch = n * int(lengths.max())
    if one_batch - int(lengths.sum()) <= overhead_tokens:
        return None  # little padding to save
    order = np.argsort(lengths, kind="stable")
    ordered = lengths[order].astype(np.float64)
    best = np.zeros(n + 1)
    cut = np.zeros(n + 1, dtype=np.int64)
    starts = np.arange(n)
    for end in range(1, n + 1):
        # the last sub-batch holds sorted rows start..end-1 and pads to row end-1's length
        costs = best[:end] + (end - starts[:end]) * ordered[end - 1] + overhead_tokens
        start = int(costs.argmin())
        best[end], cut[end] = costs[start], start
    if cut[n] == 0 or best[n] > SUB_BATCH_MIN_GAIN * (one_batch + overhead_tokens):
        return None
    groups: list[Array] = []
    end = n
    while end > 0:
        start = int(cut[end])
        groups.append(order[start:end])
        end = start
    groups.reverse()
    return groups


def _merge(parts: list[Rows]) -> Rows:
    n = sum(p.n for p in parts)
    if parts[0].matrix is not None:
        return Rows(n, np.concatenate([p.matrix for p in parts if p.matrix is not None]), None)
    columns = [p.columns for p in parts if p.columns is not None]
    merged = [np.concatenate(group) for group in zip(*columns, strict=True)]
    tokens = [p.tokens for p in parts if p.tokens is not None]
    return Rows(n, None, merged, Tokens.concat(tokens) if len(tokens) == len(parts) else None)


def _fail(batch: list[_Pending], exc: BaseException) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(exc)


def _expire(future: asyncio.Future[BatchResult] | Reply, timeout_s: float) -> None:
    if not future.done():
        future.set_exception(
            BatchTimeoutError(f"The prediction did not finish within {timeout_s * 1000:.0f} ms.")
        )


def _release(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
