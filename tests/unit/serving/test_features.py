"""Online features joined in the batcher (``serving.features``): one fetch per batch, each
request gets the features of its own entities, and an unknown entity or a missing feature fails
only its own request, with a message naming the key or the feature."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from modelyard.core.types import Signature, TensorSpec
from modelyard.errors import SignatureMismatchError
from modelyard.serving.batching import AdaptiveBatcher, BatchResult
from modelyard.serving.features import (
    EntityKey,
    EntityNotFoundError,
    EntityValidator,
    FeatureJoin,
    FetchedFeatures,
)
from modelyard.serving.validation import RequestValidator, Rows

SIGNATURE = Signature(
    kind="columns",
    inputs=(TensorSpec(name="tenure", dtype="float64"), TensorSpec(name="spend", dtype="float64")),
)
#: customer_id -> (tenure, spend); 7 has no spend (a feature missing online)
STORE = {i: (float(i), 10.0 * i) for i in range(1, 7)} | {7: (7.0, None)}


class TableFeatures:
    """A ``FeatureSource`` over a dict, counting its fetches and the thread they ran on."""

    label = "feature service 'churn' (in memory)"
    entity_keys = (EntityKey("customer_id", "int64"),)

    def __init__(self) -> None:
        self.fetches: list[list[Any]] = []
        self.threads: set[str] = set()

    def fetch(self, entities: dict[str, list[Any]]) -> FetchedFeatures:
        ids = entities["customer_id"]
        self.fetches.append(list(ids))
        self.threads.add(threading.current_thread().name)
        rows = [STORE.get(i, (None, None)) for i in ids]
        return FetchedFeatures(
            {"customer_id": ids, "tenure": [r[0] for r in rows], "spend": [r[1] for r in rows]},
            [i in STORE for i in ids],
        )

    def close(self) -> None:
        return None


def model(rows: Rows, wanted: tuple[str, ...]) -> dict[str, np.ndarray]:
    assert rows.matrix is not None
    return {"predict": rows.matrix[:, 0] + rows.matrix[:, 1]}


async def submit_all(ids: list[list[int]]) -> tuple[list[BatchResult | BaseException], Any, int]:
    source = TableFeatures()
    fetch_s: list[float] = []
    join = FeatureJoin(source, RequestValidator(SIGNATURE, model="churn"), on_fetch=fetch_s.append)
    keys = EntityValidator(source.entity_keys, model="churn")
    batches: list[int] = []
    executor = ThreadPoolExecutor(1, thread_name_prefix="model-churn")
    batcher = AdaptiveBatcher(
        model, executor=executor, max_batch_size=64, max_batch_delay_ms=50,
        prepare=join.prepare, on_batch=lambda rows, *_: batches.append(rows),
    )  # fmt: skip
    batcher.start()

    async def one(request: list[int]) -> BatchResult:
        rows = keys.from_tensors([("customer_id", np.array(request, dtype=np.int64))])
        return await batcher.submit(rows, ("predict",), timeout_s=5)

    # the first request runs alone; the rest queue behind it and form batches
    results = await asyncio.gather(*(one(r) for r in ids), return_exceptions=True)
    await batcher.close()
    executor.shutdown()
    assert len(fetch_s) == len(source.fetches) and all(s >= 0 for s in fetch_s)  # timed, each
    return results, source, len(batches)


def test_one_fetch_per_batch_and_each_request_gets_its_entities_features() -> None:
    requests = [[1], [2, 3], [4], [5, 6], [3], [1, 2]]
    results, source, batches = asyncio.run(submit_all(requests))
    assert len(source.fetches) == batches < len(requests)
    fetched = sorted(i for fetch in source.fetches for i in fetch)
    assert fetched == sorted(i for request in requests for i in request)
    assert source.threads == {"model-churn_0"}  # in the model's thread, off the event loop
    for request, result in zip(requests, results, strict=True):
        assert isinstance(result, BatchResult)
        assert result.outputs["predict"].tolist() == [11.0 * i for i in request]
        # the rows the model ran on (what the prediction log records) are the features
        assert result.inputs is not None and result.inputs.matrix is not None
        assert result.inputs.matrix[:, 1].tolist() == [10.0 * i for i in request]


def test_an_unknown_entity_fails_only_its_request_naming_the_key() -> None:
    results, _, _ = asyncio.run(submit_all([[1], [2, 999], [3]]))
    assert isinstance(results[0], BatchResult) and isinstance(results[2], BatchResult)
    assert results[2].outputs["predict"].tolist() == [33.0]
    error = results[1]
    assert isinstance(error, EntityNotFoundError)
    assert error.kind == "not_found"
    assert "customer_id=999" in str(error) and "feature service 'churn'" in str(error)


def test_a_missing_feature_value_fails_its_request_naming_the_feature() -> None:
    results, _, _ = asyncio.run(submit_all([[1], [7], [2]]))
    assert isinstance(results[0], BatchResult) and isinstance(results[2], BatchResult)
    error = results[1]
    assert isinstance(error, SignatureMismatchError)
    assert "'spend' has missing values" in str(error)
    assert str(error).startswith("The features from feature service 'churn'")


def test_requests_are_validated_against_the_entity_keys() -> None:
    keys = EntityValidator(TableFeatures.entity_keys, model="churn")
    with pytest.raises(SignatureMismatchError, match="missing customer_id"):
        keys.from_tensors([("tenure", np.array([1.0]))])


def test_int64_entity_keys_keep_every_digit() -> None:
    from modelyard.serving import codecs

    big = 2**60 + 1  # float64 would round it to 2**60
    keys = EntityValidator(TableFeatures.entity_keys, model="churn")
    body = {"inputs": [{"name": "customer_id", "shape": [2], "datatype": "INT64",
                        "data": [big, 3]}]}  # fmt: skip
    request, arrays = codecs.decode_v2(json.dumps(body).encode())
    rows = keys.from_request(request.inputs, arrays)
    source = TableFeatures()
    FeatureJoin(source, RequestValidator(SIGNATURE, model="churn")).prepare([rows])
    assert source.fetches == [[big, 3]]
