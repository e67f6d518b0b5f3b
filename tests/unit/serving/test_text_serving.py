"""A text model served through the real ServedModel and AdaptiveBatcher: tokenized per request
in a thread of its own (timed), batched by padded tokens, padded to each batch's longest row,
answers in request order; bad texts fail their own request with an error naming the input."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from modelyard.errors import InvalidInputError, SignatureMismatchError
from modelyard.serving.metrics import ServingMetrics
from modelyard.serving.models import ServedModel
from modelyard.serving.validation import Rows
from modelyard.settings import ServingSettings

from ._text_model import WORDS, TinyTextPredictor, text_loaded

SHORT = ["the cat sat", "a dog ran far", "hello world", "quick brown fox"]
LONG = "the quick brown fox jumps over the lazy dog on the mat and ran far away"  # 16 + 2 tokens


def served_model(
    predictor: TinyTextPredictor, metrics: ServingMetrics | None = None, **settings: object
) -> ServedModel:
    on_tokenize = None
    if metrics is not None:
        m = metrics

        def on_tokenize(seconds: float) -> None:
            m.child(m.tokenize, "embedder").observe(seconds)

    return ServedModel(text_loaded(predictor), ServingSettings(**settings), on_tokenize=on_tokenize)


def text_rows(served: ServedModel, texts: list[object]) -> Rows:
    return served.validator.from_tensors([("text", np.array(texts, dtype=object))])


async def ask(served: ServedModel, texts: list[object]):
    return await served.predict(text_rows(served, texts), ("predict",), timeout_s=10)


def test_batched_texts_get_the_embedding_each_gets_alone_padded_to_the_batch_longest() -> None:
    predictor = TinyTextPredictor(max_length=32)
    metrics = ServingMetrics()

    async def scenario():
        served = served_model(predictor, metrics, max_batch_delay_ms=5.0)
        served.batcher.start()
        results = await asyncio.gather(*(ask(served, [text]) for text in [*SHORT, LONG] * 3))
        await served.close()
        return results

    results = asyncio.run(scenario())
    tokenize_threads = set(predictor.tokenize_threads)
    predict_threads = set(predictor.predict_threads)
    for text, result in zip([*SHORT, LONG] * 3, results, strict=True):
        np.testing.assert_allclose(result.outputs["predict"][0], predictor.embed_one(text),
                                   rtol=1e-5, atol=1e-6)  # fmt: skip
    batched = [(rows, width) for rows, width in predictor.calls if rows > 1]
    assert batched, "the concurrent requests never shared a model call"
    # each call pads to its own longest row, one of the texts' lengths, never max_length (32)
    lengths = {len(predictor.tokenize([text]).ids[0]) for text in [*SHORT, LONG]}
    assert {width for _, width in predictor.calls} <= lengths and 32 not in lengths
    # tokenized in the tokenizer thread: not the event loop's, not the model's
    assert tokenize_threads == {"tokenize-embedder_0"}
    assert all(name.startswith("model-embedder") for name in predict_threads)
    count = metrics.registry.get_sample_value(
        "modelyard_tokenize_seconds_count", {"model": "embedder"}
    )
    assert count == len(results)


def test_a_batch_of_mixed_lengths_runs_as_sorted_sub_batches_in_request_order() -> None:
    predictor = TinyTextPredictor(max_length=64)
    served = served_model(predictor)
    long = " ".join(["fox"] * 60)  # 62 tokens
    texts = [SHORT[i % 4] if i % 5 else long for i in range(40)]
    tokens = predictor.tokenize(texts)
    rows = Rows(len(texts), None, [np.array(texts, dtype=object)], tokens)
    out = served.run_batch(rows, ("predict",))["predict"]
    assert out.dtype == np.float32 and out.shape == (40, 8)
    for text, row in zip(texts, out, strict=True):
        np.testing.assert_allclose(row, predictor.embed_one(text), rtol=1e-5, atol=1e-6)
    # the 8 long rows in a call of their own padded to 62; the 32 short ones in calls padded
    # to 6 tokens at most (one call padded to 62 would cost 40 x 62 = 2480 tokens)
    calls = [c for c in predictor.calls if c[0] > 1]
    assert (8, 62) in calls and sum(rows for rows, _ in calls) == 40
    assert all(width <= 6 for rows, width in calls if (rows, width) != (8, 62))


def test_short_requests_with_a_long_one_finish_and_stay_short() -> None:
    predictor = TinyTextPredictor(max_length=64)
    long = [" ".join(["dog"] * 60)] * 8  # 8 x 62 = 496 padded tokens: over the cap, alone

    async def scenario():
        served = served_model(predictor, max_batch_tokens=256, max_batch_delay_ms=5.0)
        served.batcher.start()
        requests = [ask(served, [t]) for t in SHORT] + [ask(served, long)]
        requests += [ask(served, [t]) for t in SHORT]
        results = await asyncio.gather(*requests)
        await served.close()
        return results

    results = asyncio.run(scenario())
    assert [r.outputs["predict"].shape[0] for r in results] == [1] * 4 + [8] + [1] * 4
    for rows, width in predictor.calls:
        assert rows * width <= 256 or (rows, width) == (8, 62)
    long_calls = [c for c in predictor.calls if c[1] == 62]
    assert long_calls == [(8, 62)]  # no short text was padded to the long one's length


def test_a_text_over_max_length_fails_its_own_request_only() -> None:
    predictor = TinyTextPredictor(max_length=16)

    async def scenario():
        served = served_model(predictor, max_batch_delay_ms=5.0)
        served.batcher.start()
        # the first request is tokenized alone; the two behind it in one run, which fails on
        # the long text, so each is then tokenized alone and only the long text's fails
        results = await asyncio.gather(
            ask(served, [SHORT[0]]), ask(served, [SHORT[1], SHORT[3]]),
            ask(served, [SHORT[2], LONG]), return_exceptions=True,
        )  # fmt: skip
        await served.close()
        return results

    first, second, bad = asyncio.run(scenario())
    assert isinstance(bad, InvalidInputError)
    # row 1 of its own request (it was row 3 of the run that tokenized it with the other)
    assert "Input 'text' row 1 has 18 tokens" in str(bad) and "at most 16" in str(bad)
    assert predictor.tokenize_calls == [1, 4, 2, 2]
    np.testing.assert_allclose(first.outputs["predict"][0], predictor.embed_one(SHORT[0]),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    expected = np.stack([predictor.embed_one(t) for t in (SHORT[1], SHORT[3])])
    np.testing.assert_allclose(second.outputs["predict"], expected, rtol=1e-5, atol=1e-6)


def test_requests_waiting_for_the_tokenizer_are_tokenized_together() -> None:
    predictor = TinyTextPredictor()
    predictor.tokenize_delay_s = 0.02
    texts = [SHORT[i % 4] + " " + WORDS[i % len(WORDS)] for i in range(12)]

    async def scenario():
        served = served_model(predictor)
        served.batcher.start()
        results = await asyncio.gather(*(ask(served, [t]) for t in texts))
        await served.close()
        return results

    results = asyncio.run(scenario())
    calls = list(predictor.tokenize_calls)
    assert calls == [1, 11]  # the first alone; the eleven that queued behind it in one call
    for text, result in zip(texts, results, strict=True):
        np.testing.assert_allclose(result.outputs["predict"][0], predictor.embed_one(text),
                                   rtol=1e-5, atol=1e-6)  # fmt: skip


def test_closing_waits_for_requests_being_tokenized() -> None:
    """A hot swap closes the old version while requests that took it are still tokenizing:
    they finish on it, not with 'shutting down'."""
    predictor = TinyTextPredictor()
    predictor.tokenize_delay_s = 0.05

    async def scenario():
        served = served_model(predictor)
        served.batcher.start()
        requests = [asyncio.ensure_future(ask(served, [t])) for t in SHORT]
        await asyncio.sleep(0.01)  # the first is in the tokenizer, the others wait for it
        await served.close()
        return await asyncio.gather(*requests)

    results = asyncio.run(scenario())
    assert [r.outputs["predict"].shape for r in results] == [(1, 8)] * 4


@pytest.mark.parametrize(
    ("texts", "error", "message"),
    [
        (["a cat", 5], InvalidInputError, "Input 'text' takes text, but row 1 is 5"),
        ([None], InvalidInputError, "Input 'text' takes text, but row 0 is null"),
        ([True, False], InvalidInputError, "Input 'text' takes text, but row 0 is true"),
    ],
)
def test_values_that_are_not_text_are_refused_naming_the_input(texts, error, message) -> None:
    predictor = TinyTextPredictor()

    async def scenario():
        served = served_model(predictor)
        served.batcher.start()
        try:
            with pytest.raises(error) as caught:
                await ask(served, texts)
            ok = await ask(served, ["the cat"])  # the model still serves
        finally:
            await served.close()
        return str(caught.value), ok

    text, ok = asyncio.run(scenario())
    assert message in text
    assert ok.outputs["predict"].shape == (1, 8)
    assert predictor.calls == [(1, 4)]  # the bad requests never reached the model


def test_numbers_and_empty_batches_are_refused_before_tokenizing() -> None:
    served = served_model(TinyTextPredictor())
    with pytest.raises(SignatureMismatchError, match="Input 'text' takes text"):
        served.validator.from_tensors([("text", np.array([1.5, 2.0]))])
    with pytest.raises(InvalidInputError, match="Input 'text' has no rows"):
        served.validator.from_tensors([("text", np.array([], dtype=object))])
    asyncio.run(served.close())
