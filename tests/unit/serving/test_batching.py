"""The adaptive batcher: every caller gets exactly its rows, whatever the sizes and timing."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.errors import BatchTimeoutError, OverloadedError, PredictionError
from modelyard.serving.batching import AdaptiveBatcher
from modelyard.serving.validation import Rows
from modelyard.settings import Settings


def rows_for(request: int, n: int) -> Rows:
    # each row carries (request id, row index) so any mix-up is visible
    matrix = np.column_stack([np.full(n, request, dtype=float), np.arange(n, dtype=float)])
    return Rows(n, matrix, None)


def echo(rows: Rows, wanted: tuple[str, ...]) -> dict[str, np.ndarray]:
    assert rows.matrix is not None
    return {"predict": rows.matrix * 1.0, "rows": np.full(rows.n, rows.n)}


async def run(sizes, delays, max_batch, delay_ms, calls):
    executor = ThreadPoolExecutor(1)

    def counting(rows: Rows, wanted: tuple[str, ...]) -> dict[str, np.ndarray]:
        calls.append(rows.n)
        return echo(rows, wanted)

    batcher = AdaptiveBatcher(
        counting, executor=executor, max_batch_size=max_batch, max_batch_delay_ms=delay_ms
    )
    batcher.start()

    async def one(i: int, n: int, wait: float):
        await asyncio.sleep(wait)
        return await batcher.submit(rows_for(i, n), ("predict", "rows"), timeout_s=10)

    results = await asyncio.gather(
        *(one(i, n, d) for i, (n, d) in enumerate(zip(sizes, delays, strict=True)))
    )
    await batcher.close()
    executor.shutdown()
    return results


@settings(max_examples=60, deadline=None)
@given(
    requests=st.lists(
        st.tuples(st.integers(1, 20), st.sampled_from([0.0, 0.0, 0.0005, 0.002])),
        min_size=1,
        max_size=40,
    ),
    max_batch=st.integers(1, 16),
    delay_ms=st.sampled_from([0.0, 1.0, 3.0]),
)
def test_every_caller_gets_exactly_its_rows(requests, max_batch, delay_ms) -> None:
    sizes = [n for n, _ in requests]
    delays = [d for _, d in requests]
    calls: list[int] = []
    results = asyncio.run(run(sizes, delays, max_batch, delay_ms, calls))
    for i, (n, result) in enumerate(zip(sizes, results, strict=True)):
        np.testing.assert_array_equal(result.outputs["predict"], rows_for(i, n).matrix)
        assert result.batch_rows == result.outputs["rows"][0]
    assert sum(calls) == sum(sizes)
    # a batch never exceeds the limit, except a single request larger than it
    assert all(c <= max_batch or c in sizes for c in calls)


def test_concurrent_requests_share_model_calls() -> None:
    calls: list[int] = []
    results = asyncio.run(run([1] * 32, [0.0] * 32, 64, 2.0, calls))
    assert len(results) == 32 and len(calls) < 32


def test_overload_timeout_and_model_failure() -> None:
    async def scenario():
        executor = ThreadPoolExecutor(1)

        def slow(rows: Rows, wanted: tuple[str, ...]) -> dict[str, np.ndarray]:
            # slow in CPU time, which is what the batcher measures: a model that only slept
            # looked cheap to it, and a batch sometimes ran on the event loop, where no
            # deadline fires until it ends (the 50 ms request below was then answered)
            end = time.thread_time() + 0.2
            while time.thread_time() < end:
                pass
            if rows.matrix is not None and (rows.matrix[:, 0] < 0).any():
                raise RuntimeError("bad row")
            return echo(rows, wanted)

        batcher = AdaptiveBatcher(slow, executor=executor, max_batch_size=1, max_queue=2)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(rows_for(1, 1), ("predict",), timeout_s=5))
        await asyncio.sleep(0.01)  # the first is running; two more fill the queue
        queued = [
            asyncio.ensure_future(batcher.submit(rows_for(i, 1), ("predict",), timeout_s=5))
            for i in (2, 3)
        ]
        await asyncio.sleep(0)
        with pytest.raises(OverloadedError, match="queue is full"):
            await batcher.submit(rows_for(4, 1), ("predict",), timeout_s=5)
        await asyncio.gather(first, *queued)
        with pytest.raises(BatchTimeoutError, match="within 50 ms"):
            await batcher.submit(rows_for(5, 1), ("predict",), timeout_s=0.05)
        with pytest.raises(PredictionError, match="bad row"):
            await batcher.submit(rows_for(-1, 1), ("predict",), timeout_s=5)
        ok = await batcher.submit(rows_for(6, 1), ("predict",), timeout_s=5)
        assert ok.outputs["predict"][0, 0] == 6
        await batcher.close()
        executor.shutdown()

    asyncio.run(scenario())


def test_a_cheap_model_runs_on_the_loop_and_a_slow_one_in_its_thread() -> None:
    """The first batch runs in the model's thread; a model that takes little time per batch
    then runs on the event loop (no hand-off to the thread and back); one that takes long, or a
    batch too large for the loop, stays in the thread. A runtime that computes in threads of its
    own looks cheap from its thread's CPU time; its first batch on the loop is timed whole and
    sends it back to the thread. (A wait of the loop's that a hand-over of the interpreter lock
    explains is not timed: the scenario runs with the switch interval ``yard serve`` sets.)

    The costs are measured, so a busy machine moves them (two pytest workers share two cores):
    a batch preempted on the loop looks slow and sends a cheap model back to its thread for a
    while, as it should. So the cheap and the threaded model get up to 40 one-row batches to
    reach the loop, where an idle machine takes one."""

    async def scenario() -> None:
        loop_thread = threading.get_ident()
        ran_on: list[tuple[str, int]] = []

        def model(kind: str, sleep_s: float = 0.0, spin_s: float = 0.0):  # type: ignore[no-untyped-def]
            def run_batch(rows: Rows, wanted: tuple[str, ...]) -> dict[str, np.ndarray]:
                ran_on.append((kind, rows.n))
                if threading.get_ident() == loop_thread:
                    ran_on[-1] = (kind + "@loop", rows.n)
                if spin_s:
                    end = time.thread_time() + spin_s
                    while time.thread_time() < end:
                        pass
                time.sleep(sleep_s)  # waits as for threads of the runtime's own: no CPU here
                return echo(rows, wanted)

            return run_batch

        async def until_on_loop(batcher: AdaptiveBatcher, kind: str) -> None:
            for i in range(40):
                await batcher.submit(rows_for(i, 1), ("predict",), timeout_s=10)
                if ran_on[-1] == (kind + "@loop", 1):
                    return

        executor = ThreadPoolExecutor(1)
        # the thread's start and its first allocations (a new malloc arena) are no model's cost
        executor.submit(np.ones, 1024).result()
        kinds = (("cheap", {}), ("busy", {"spin_s": 0.002}), ("threaded", {"sleep_s": 0.005}))
        for kind, kwargs in kinds:
            batcher = AdaptiveBatcher(model(kind, **kwargs), executor=executor)  # type: ignore[arg-type]
            batcher.start()
            if kind == "busy":
                for i in range(4):
                    await batcher.submit(rows_for(i, 1), ("predict",), timeout_s=10)
            else:
                await until_on_loop(batcher, kind)
            if kind == "threaded":
                # its batch on the loop took its 5 ms: back to the thread
                await batcher.submit(rows_for(7, 1), ("predict",), timeout_s=10)
            await batcher.submit(rows_for(9, 10_000), ("predict",), timeout_s=10)
            await batcher.close()
        executor.shutdown()
        runs = {kind: [(k, n) for k, n in ran_on if k.split("@")[0] == kind] for kind, _ in kinds}
        cheap = runs["cheap"]
        assert cheap[0] == ("cheap", 1) and ("cheap@loop", 1) in cheap, cheap
        assert cheap[-1] == ("cheap", 10_000), cheap  # too many rows for the loop
        assert runs["busy"] == [("busy", 1)] * 4 + [("busy", 10_000)], runs["busy"]
        threaded = runs["threaded"]
        assert threaded[0] == ("threaded", 1) and threaded.count(("threaded@loop", 1)) == 1
        assert threaded[-3:] == [("threaded@loop", 1), ("threaded", 1), ("threaded", 10_000)]

    interval = sys.getswitchinterval()
    sys.setswitchinterval(Settings().serving.gil_switch_s)
    try:
        asyncio.run(scenario())
    finally:
        sys.setswitchinterval(interval)


def test_a_cheap_model_stays_on_the_loop_through_a_batch_slowed_once() -> None:
    """One batch on the loop slowed by what is not the model, or by the model once, does not
    send a cheap model to its thread: not another thread of the server taking the interpreter
    lock meanwhile (as the prediction log's writer does; the loop waits a switch interval, 2 ms
    here, for it back), not one batch that spins 1 ms, past the loop's budget but short of
    sending the model off at once (the per-row cost is the median of the last batches'). Each
    check retries a few times: a busy machine can preempt the batches around it too."""

    async def scenario() -> list[list[str]]:
        loop_thread = threading.get_ident()
        places: list[str] = []
        slow = {"gil": False, "spin": False}
        wanted, started, stop = threading.Event(), threading.Event(), threading.Event()

        def holder() -> None:  # another thread that takes the lock when told to, and keeps it
            while not stop.is_set():
                if wanted.wait(0.05):
                    wanted.clear()
                    started.set()
                    end = time.perf_counter() + 0.003
                    while time.perf_counter() < end:
                        pass

        def run_batch(rows: Rows, wanted_outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
            places.append("loop" if threading.get_ident() == loop_thread else "thread")
            if slow["gil"]:  # lets the lock go, as a runtime does, to the other thread
                started.clear()
                wanted.set()
                started.wait(1)
            if slow["spin"]:
                end = time.thread_time() + 0.001
                while time.thread_time() < end:
                    pass
            return echo(rows, wanted_outputs)

        other = threading.Thread(target=holder, daemon=True)
        other.start()
        executor = ThreadPoolExecutor(1)
        executor.submit(np.ones, 1024).result()
        batcher = AdaptiveBatcher(run_batch, executor=executor)
        batcher.start()
        outcomes = []
        try:
            for kind in ("gil", "spin"):
                for _ in range(5):
                    for i in range(40):  # to the loop, and a few cheap batches there
                        await batcher.submit(rows_for(i, 1), ("predict",), timeout_s=10)
                        if places[-6:] == ["loop"] * 6:
                            break
                    slow[kind] = True
                    await batcher.submit(rows_for(1, 1), ("predict",), timeout_s=10)
                    slow[kind] = False
                    await batcher.submit(rows_for(2, 1), ("predict",), timeout_s=10)
                    outcomes.append([kind, *places[-2:]])
                    if places[-2:] == ["loop", "loop"]:
                        break
        finally:
            stop.set()
            await batcher.close()
            executor.shutdown()
            other.join()
        return outcomes

    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.002)
    try:
        outcomes = asyncio.run(scenario())
    finally:
        sys.setswitchinterval(interval)
    # the slowed batch ran on the loop, and so did the next one
    assert [o for o in outcomes if o[0] == "gil"][-1] == ["gil", "loop", "loop"], outcomes
    assert [o for o in outcomes if o[0] == "spin"][-1] == ["spin", "loop", "loop"], outcomes


def test_a_batch_on_the_loop_that_ends_past_a_deadline_fails_that_request() -> None:
    """No answer after a request's deadline, on the loop as in the thread: a batch on the loop
    holds the loop (no deadline sweep runs meanwhile), so the batch's own end checks it."""

    async def scenario() -> tuple[list[str], BaseException | None]:
        loop_thread = threading.get_ident()
        places: list[str] = []

        def run_batch(rows: Rows, wanted: tuple[str, ...]) -> dict[str, np.ndarray]:
            places.append("loop" if threading.get_ident() == loop_thread else "thread")
            assert rows.matrix is not None
            if rows.matrix[0, 0] == 99:  # this request's batch takes 20 ms
                end = time.perf_counter() + 0.02
                while time.perf_counter() < end:
                    pass
            return echo(rows, wanted)

        executor = ThreadPoolExecutor(1)
        executor.submit(np.ones, 1024).result()
        batcher = AdaptiveBatcher(run_batch, executor=executor)
        batcher.start()
        failure: BaseException | None = None
        try:
            for i in range(40):
                await batcher.submit(rows_for(i, 1), ("predict",), timeout_s=10)
                if places[-3:] == ["loop"] * 3:
                    break
            try:
                await batcher.submit(rows_for(99, 1), ("predict",), timeout_s=0.005)
            except BatchTimeoutError as exc:
                failure = exc
            await batcher.submit(rows_for(1, 1), ("predict",), timeout_s=10)  # still serving
        finally:
            await batcher.close()
            executor.shutdown()
        return places, failure

    places, failure = asyncio.run(scenario())
    assert places[-2] == "loop", places  # the slow batch ran on the loop
    assert isinstance(failure, BatchTimeoutError), places


def test_callers_answered_through_a_callback_get_their_rows_and_a_failing_one_harms_none() -> None:
    """``Reply`` (the HTTP short path): each callback gets its own rows, at once, in the batch;
    one that raises is logged, and the rest of the batch is answered."""
    from modelyard.serving.batching import Reply

    async def scenario() -> list[object]:
        executor = ThreadPoolExecutor(1)
        batcher = AdaptiveBatcher(echo, executor=executor, max_batch_delay_ms=50)
        batcher.start()
        answers: list[object] = []
        done = asyncio.Event()

        def answer(request: int, result, error) -> None:  # type: ignore[no-untyped-def]
            if request == 2:
                raise RuntimeError("a broken callback")
            answers.append((request, result.outputs["predict"][:, 0].tolist(), error))
            if len(answers) == 4:
                done.set()

        for request in range(5):
            batcher.enqueue(rows_for(request, request + 1), ("predict",), timeout_s=10,
                            reply=Reply(answer, request))  # fmt: skip
        await asyncio.wait_for(done.wait(), 10)
        ok = await batcher.submit(rows_for(9, 1), ("predict",), timeout_s=10)  # still working
        await batcher.close()
        executor.shutdown()
        return [*sorted(answers), ok.outputs["predict"][:, 0].tolist()]  # type: ignore[type-var]

    assert asyncio.run(scenario()) == [
        (0, [0.0], None), (1, [1.0, 1.0], None), (3, [3.0] * 4, None), (4, [4.0] * 5, None),
        [9.0],
    ]  # fmt: skip
