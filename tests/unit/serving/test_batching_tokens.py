"""Length-aware batching: a text model's batches are capped by padded tokens (rows x longest
row) as well as rows, and a batch of very different lengths runs as sub-batches of similar
length whose answers go back in request order."""

from __future__ import annotations

import asyncio
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.flavors import Tokens
from modelyard.serving.batching import SUB_BATCH_OVERHEAD_TOKENS, AdaptiveBatcher, length_groups
from modelyard.serving.validation import Rows


def text_rows(request: int, lengths: list[int]) -> Rows:
    # each token row holds (request id, row index) then padding-free filler, so a mix-up shows
    ids = [np.array([request, i, *([7] * (n - 2))], dtype=np.int64) for i, n in enumerate(lengths)]
    column = np.array([f"r{request}-{i}" for i in range(len(lengths))], dtype=object)
    return Rows(len(lengths), None, [column], Tokens(ids))


async def run_token_batches(requests, *, max_batch, max_tokens, delay_ms, batches):
    executor = ThreadPoolExecutor(1)
    gate = threading.Event()

    def model(rows: Rows, wanted: tuple[str, ...]) -> dict[str, np.ndarray]:
        gate.wait(5)  # the first batch waits until every request is queued
        assert rows.tokens is not None
        batches.append((rows.n, int(rows.tokens.lengths.max())))
        heads = np.array([[row[0], row[1]] for row in rows.tokens.ids])
        return {"predict": heads, "text": rows.columns[0]}

    batcher = AdaptiveBatcher(
        model, executor=executor, max_batch_size=max_batch, max_batch_delay_ms=delay_ms,
        max_batch_tokens=max_tokens,
    )  # fmt: skip
    batcher.start()
    futures = [
        asyncio.ensure_future(
            batcher.submit(text_rows(i, lengths), ("predict", "text"), timeout_s=10)
        )
        for i, lengths in enumerate(requests)
    ]
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(*futures)
    await batcher.close()
    executor.shutdown()
    return results


@settings(max_examples=60, deadline=None)
@given(
    requests=st.lists(
        st.lists(st.integers(2, 40), min_size=1, max_size=6), min_size=1, max_size=25
    ),
    max_batch=st.integers(1, 16),
    max_tokens=st.integers(8, 200),
    delay_ms=st.sampled_from([0.0, 2.0]),
)
def test_batches_stay_under_the_token_cap_and_callers_get_their_rows(
    requests, max_batch, max_tokens, delay_ms
) -> None:
    batches: list[tuple[int, int]] = []
    results = asyncio.run(
        run_token_batches(
            requests, max_batch=max_batch, max_tokens=max_tokens, delay_ms=delay_ms,
            batches=batches,
        )
    )  # fmt: skip
    for i, (lengths, result) in enumerate(zip(requests, results, strict=True)):
        expected = [[i, row] for row in range(len(lengths))]
        np.testing.assert_array_equal(result.outputs["predict"], expected)
        assert result.outputs["text"].tolist() == [f"r{i}-{j}" for j in range(len(lengths))]
    assert sum(rows for rows, _ in batches) == sum(len(lengths) for lengths in requests)
    alone = {(len(lengths), max(lengths)) for lengths in requests}
    for rows, longest in batches:
        # a batch fits both caps, unless it is one request larger than a cap
        assert (rows <= max_batch and rows * longest <= max_tokens) or (rows, longest) in alone


def test_a_long_text_does_not_make_the_short_ones_ahead_pad_to_it() -> None:
    batches: list[tuple[int, int]] = []
    short = [[4]] * 8
    long = [[40] * 4]  # 160 padded tokens: over the cap, so it runs alone
    results = asyncio.run(
        run_token_batches(
            [*short, *long, *short], max_batch=64, max_tokens=100, delay_ms=0.0,
            batches=batches,
        )
    )  # fmt: skip
    assert len(results) == 17
    # the short ones ahead of the long text in one batch padded to 4 (not 40), the long one
    # alone, then the short ones behind it
    assert batches == [(8, 4), (4, 40), (8, 4)]


def test_token_cap_closes_a_filling_batch() -> None:
    """With a long fill delay, a batch closes as soon as the queued tokens reach the cap."""

    async def scenario() -> float:
        executor = ThreadPoolExecutor(1)
        batcher = AdaptiveBatcher(
            lambda rows, wanted: {"predict": np.zeros(rows.n)},
            executor=executor, max_batch_size=64, max_batch_delay_ms=2000, max_batch_tokens=40,
        )  # fmt: skip
        batcher.start()
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(batcher.submit(text_rows(i, [5]), ("predict",), timeout_s=10)
                               for i in range(2)))  # fmt: skip
        started = loop.time()
        await asyncio.gather(*(batcher.submit(text_rows(i, [10]), ("predict",), timeout_s=10)
                               for i in range(4)))  # fmt: skip
        elapsed = loop.time() - started
        await batcher.close()
        executor.shutdown()
        return elapsed

    assert asyncio.run(scenario()) < 1.0  # not the 2 s fill delay


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 512), min_size=1, max_size=64))
def test_length_groups_partition_the_rows_and_save_padding(lengths) -> None:
    array = np.array(lengths, dtype=np.int64)
    groups = length_groups(array)
    one_batch = len(lengths) * max(lengths) + SUB_BATCH_OVERHEAD_TOKENS
    if groups is None:
        return
    assert len(groups) >= 2
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(lengths)))
    cost = sum(len(g) * int(array[g].max()) + SUB_BATCH_OVERHEAD_TOKENS for g in groups)
    assert cost <= 0.75 * one_batch
    # groups are runs of the sorted lengths: shortest first, no overlap
    for before, after in itertools.pairwise(groups):
        assert array[before].max() <= array[after].min()


def test_length_groups_split_mixed_lengths_and_keep_similar_ones() -> None:
    assert length_groups(np.array([12] * 64)) is None
    assert length_groups(np.array([10, 12, 11, 9, 12])) is None
    mixed = np.array([5, 300, 6, 5, 290, 7] * 8)
    groups = length_groups(mixed)
    assert groups is not None
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(mixed)))
    for group in groups:  # the short rows never pad to a long one
        assert mixed[group].max() <= 7 or mixed[group].min() >= 290
    # a call costs SUB_BATCH_OVERHEAD_TOKENS: similar lengths stay together (5 to 7, 290 to 300)
    assert len(groups) <= 4
