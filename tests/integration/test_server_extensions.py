"""Triton's model configuration, statistics and model repository extensions over REST and gRPC,
against a real ``yard serve`` process, called with the standard clients (``tritonclient.http``
and ``.grpc``: ``get_model_config``, ``get_inference_statistics``, ``get_model_repository_index``,
``load_model``, ``unload_model``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

from tests.integration._server import Server, bearer, server_env
from tests.integration.conftest import ServedHome


@pytest.fixture(scope="module")
def server(served_home: ServedHome) -> Iterator[Server]:
    args = ("hgb@production", "lin/1", "mixed/1", "--runtime", "native")
    with Server(served_home.home, *args, grpc=True) as s:
        yield s


@pytest.fixture(scope="module")
def http_client(server: Server) -> Iterator[thttp.InferenceServerClient]:
    client = thttp.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc_client(server: Server) -> Iterator[tgrpc.InferenceServerClient]:
    assert server.grpc is not None
    client = tgrpc.InferenceServerClient(server.grpc)
    yield client
    client.close()


def failure(call: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
    """``(status, message)`` of a failed tritonclient call: the HTTP status or gRPC code."""
    with pytest.raises(InferenceServerException) as info:
        call(*args, **kwargs)
    return str(info.value.status()).removeprefix("StatusCode."), info.value.message()


def test_model_config_from_the_signature(
    server: Server,
    http_client: thttp.InferenceServerClient,
    grpc_client: tgrpc.InferenceServerClient,
) -> None:
    meta = http_client.get_model_metadata("hgb")
    config = http_client.get_model_config("hgb")
    assert config["name"] == "hgb" and config["platform"] == meta["platform"]
    assert config["backend"] == "modelyard"
    assert config["max_batch_size"] == 64  # serving.max_batch_size's default
    assert config["dynamic_batching"] == {"max_queue_delay_microseconds": 2000}
    assert config["version_policy"] == {"specific": {"versions": [int(meta["versions"][0])]}}
    assert [i["name"] for i in config["input"]] == [f"f{i}" for i in range(20)]
    # a column: one value per row, the batch dimension left out (Triton's reshape to a scalar)
    assert config["input"][0] == {
        "name": "f0", "data_type": "TYPE_FP64", "dims": [1], "reshape": {"shape": []},
    }  # fmt: skip
    outputs = {o["name"]: o for o in config["output"]}
    assert list(outputs) == ["predict", "predict_proba"]
    assert outputs["predict_proba"]["data_type"] == "TYPE_FP64"
    proba_shape = next(o["shape"] for o in meta["outputs"] if o["name"] == "predict_proba")
    assert outputs["predict_proba"]["dims"] == proba_shape[1:]
    mixed = http_client.get_model_config("mixed")
    assert [(i["name"], i["data_type"]) for i in mixed["input"]] == [
        ("age", "TYPE_FP64"), ("city", "TYPE_STRING"),
    ]  # fmt: skip
    assert http_client.get_model_config("hgb", "1") == config
    # gRPC: the same configuration, through the protobuf messages
    answer = grpc_client.get_model_config("hgb").config
    assert (answer.name, answer.platform, answer.max_batch_size) == ("hgb", meta["platform"], 64)
    assert [i.name for i in answer.input] == [f"f{i}" for i in range(20)]
    assert answer.input[0].data_type == 12 and list(answer.input[0].dims) == [1]  # TYPE_FP64
    assert answer.input[0].HasField("reshape") and not answer.input[0].reshape.shape
    assert [o.name for o in answer.output] == ["predict", "predict_proba"]
    assert list(answer.output[1].dims) == proba_shape[1:]
    assert list(answer.version_policy.specific.versions) == [int(meta["versions"][0])]
    assert answer.dynamic_batching.max_queue_delay_microseconds == 2000
    strings = grpc_client.get_model_config("mixed", "1").config
    assert strings.input[1].data_type == 13  # TYPE_STRING
    # unknown models and versions, as the metadata routes
    assert failure(lambda: http_client.get_model_config("nope"))[0] == "404"
    status, message = failure(lambda: http_client.get_model_config("hgb", "9"))
    assert status == "404" and "version 9" in message
    assert failure(lambda: grpc_client.get_model_config("nope"))[0] == "NOT_FOUND"
    assert failure(lambda: grpc_client.get_model_config("hgb", "9"))[0] == "NOT_FOUND"
    wrong = httpx.post(f"{server.url}/v2/models/hgb/config")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, HEAD"


def test_tensors_shaped_from_the_config_are_answered(
    http_client: thttp.InferenceServerClient, grpc_client: tgrpc.InferenceServerClient
) -> None:
    """A client that builds its tensors from the configuration, as Triton's tools do (shape
    [batch] + dims, here [3, 1] for each column), is answered as with [3]."""
    config = http_client.get_model_config("lin")
    assert all(i["dims"] == [1] for i in config["input"])
    for module, client in ((thttp, http_client), (tgrpc, grpc_client)):
        items = []
        for spec in config["input"]:
            item = module.InferInput(spec["name"], [3, *spec["dims"]], "FP64")
            item.set_data_from_numpy(np.array([[1.0], [2.0], [3.0]]))
            items.append(item)
        answer = client.infer("lin", items).as_numpy("predict")
        np.testing.assert_allclose(answer.ravel(), [111.0, 222.0, 333.0])


def test_server_metadata_lists_the_extensions(
    http_client: thttp.InferenceServerClient, grpc_client: tgrpc.InferenceServerClient
) -> None:
    rest = http_client.get_server_metadata()["extensions"]
    grpc = list(grpc_client.get_server_metadata().extensions)
    assert rest == grpc
    assert rest == [
        "binary_tensor_data", "classification", "model_configuration", "statistics",
        "model_repository",
    ]  # fmt: skip


def test_the_repository_index_lists_the_served_models_and_load_is_refused(
    server: Server,
    http_client: thttp.InferenceServerClient,
    grpc_client: tgrpc.InferenceServerClient,
) -> None:
    served = [
        {"name": "hgb", "version": "1", "state": "READY", "reason": ""},
        {"name": "lin", "version": "1", "state": "READY", "reason": ""},
        {"name": "mixed", "version": "1", "state": "READY", "reason": ""},
    ]
    assert http_client.get_model_repository_index() == served
    ready = httpx.post(f"{server.url}/v2/repository/index", json={"ready": True})
    assert ready.status_code == 200 and ready.json() == served
    index = grpc_client.get_model_repository_index().models
    assert [(m.name, m.version, m.state) for m in index] == [
        (m["name"], m["version"], m["state"]) for m in served
    ]
    bad = httpx.post(f"{server.url}/v2/repository/index", json={"ready": "yes"})
    assert bad.status_code == 400 and "'ready'" in bad.json()["error"]
    assert httpx.get(f"{server.url}/v2/repository/index").status_code == 405
    # load and unload: this server serves what 'yard serve' started with
    for call in (http_client.load_model, http_client.unload_model):
        status, message = failure(call, "lin")
        assert status == "400" and "yard models alias" in message and "yard serve" in message
    for call in (grpc_client.load_model, grpc_client.unload_model):
        status, message = failure(call, "lin")
        assert status == "UNIMPLEMENTED" and "yard models alias" in message
    assert httpx.post(f"{server.url}/v2/repository/models/lin/reload").status_code == 404
    assert grpc_client.is_model_ready("lin")  # nothing was unloaded


@pytest.fixture(scope="module")
def guarded(served_home: ServedHome) -> Iterator[Server]:
    env = server_env(served_home.home)
    with Server(served_home.home, "lin/1", "--auth", env=env, grpc=True) as s:
        yield s


def test_config_and_stats_take_the_token_and_leave_no_trace_of_made_up_names(
    guarded: Server, tokens: dict[str, str]
) -> None:
    assert guarded.grpc is not None
    rest = thttp.InferenceServerClient(guarded.url.removeprefix("http://"))
    grpc = tgrpc.InferenceServerClient(guarded.grpc)
    assert failure(lambda: rest.get_model_config("lin"))[0] == "401"
    assert failure(lambda: grpc.get_model_config("lin"))[0] == "UNAUTHENTICATED"
    denied = bearer(tokens["mixed"])
    assert failure(lambda: rest.get_model_config("lin", headers=denied))[0] == "403"
    assert failure(lambda: grpc.get_model_config("lin", headers=denied))[0] == "PERMISSION_DENIED"
    assert rest.get_model_config("lin", headers=bearer(tokens["lin"]))["name"] == "lin"
    assert grpc.get_model_config("lin", headers=bearer(tokens["lin"])).config.name == "lin"
    # statistics: a token for one model reads that model's, not every model's
    lin_only = bearer(tokens["lin"])
    assert failure(rest.get_inference_statistics, "lin")[0] == "401"
    assert failure(grpc.get_inference_statistics, "lin")[0] == "UNAUTHENTICATED"
    assert rest.get_inference_statistics("lin", headers=lin_only)["model_stats"][0]["name"] == "lin"
    assert grpc.get_inference_statistics("lin", headers=lin_only).model_stats[0].name == "lin"
    assert failure(rest.get_inference_statistics, headers=lin_only)[0] == "403"
    assert failure(grpc.get_inference_statistics, headers=lin_only)[0] == "PERMISSION_DENIED"
    every = rest.get_inference_statistics(headers=bearer(tokens["any"]))["model_stats"]
    assert [s["name"] for s in every] == ["lin"]
    # the repository: its index needs a token for every model, load and unload an admin's
    assert failure(rest.get_model_repository_index)[0] == "401"
    assert failure(rest.get_model_repository_index, headers=lin_only)[0] == "403"
    assert failure(grpc.get_model_repository_index)[0] == "UNAUTHENTICATED"
    assert failure(grpc.get_model_repository_index, headers=lin_only)[0] == "PERMISSION_DENIED"
    index = rest.get_model_repository_index(headers=bearer(tokens["any"]))
    assert [m["name"] for m in index] == ["lin"]
    assert failure(rest.load_model, "lin", headers=bearer(tokens["any"]))[0] == "403"
    assert failure(grpc.unload_model, "lin", headers=bearer(tokens["any"]))[0] == (
        "PERMISSION_DENIED"
    )
    assert failure(rest.unload_model, "lin", headers=bearer(tokens["admin"]))[0] == "400"
    for i in range(10):
        name = f"madeup-{i}-{uuid.uuid4().hex[:6]}"
        headers = bearer(tokens["any"]) if i % 2 else {}
        expected = ("404", "NOT_FOUND") if i % 2 else ("401", "UNAUTHENTICATED")
        assert failure(rest.get_model_config, name, headers=headers)[0] == expected[0]
        assert failure(grpc.get_model_config, name, headers=headers)[0] == expected[1]
        assert failure(rest.get_inference_statistics, name, headers=headers)[0] == expected[0]
        assert failure(grpc.get_inference_statistics, name, headers=headers)[0] == expected[1]
        failure(rest.load_model, name, headers=headers)
        failure(grpc.unload_model, name, headers=headers)
    assert failure(grpc.unload_model, "lin", headers=bearer(tokens["admin"]))[0] == "UNIMPLEMENTED"
    rest.close()
    grpc.close()
    metrics = httpx.get(f"{guarded.url}/metrics", headers=bearer(tokens["admin"])).text
    assert "madeup" not in metrics
    assert "madeup" not in guarded.log.read_text()
    # the repository's refusals are counted over gRPC as over REST, with the HTTP status
    for status in ("400", "401", "403"):
        for protocol in ("http", "grpc"):
            line = (
                f'modelyard_requests_total{{model="",protocol="{protocol}",'
                f'route="v2_repository",status="{status}"'
            )
            assert line in metrics, line


def lin_inputs(client: Any, rows: int) -> list[Any]:
    """Inputs a, b, c of ``rows`` ones, as ``client`` (``tritonclient.http`` or ``.grpc``) sends."""
    items = []
    for name in "abc":
        item = client.InferInput(name, [rows], "FP64")
        item.set_data_from_numpy(np.ones(rows))
        items.append(item)
    return items


def counts(stat: dict[str, Any]) -> dict[str, int]:
    """The counters of one ``model_stat`` (REST's JSON or gRPC's as JSON), flat."""
    out = {key: int(stat.get(key, 0)) for key in ("inference_count", "execution_count")}
    for part, duration in stat["inference_stats"].items():
        out[f"{part}.count"] = int(duration.get("count", 0))
        out[f"{part}.ns"] = int(duration.get("ns", 0))
    return out


def test_statistics_count_what_the_server_measured(
    server: Server,
    http_client: thttp.InferenceServerClient,
    grpc_client: tgrpc.InferenceServerClient,
) -> None:
    (before,) = http_client.get_inference_statistics("lin")["model_stats"]
    assert (before["name"], before["version"]) == ("lin", "1")
    for rows in (1, 2, 3):  # 3 requests, 6 rows over REST
        http_client.infer("lin", lin_inputs(thttp, rows))
    for _ in range(2):  # 2 requests, 4 rows over gRPC
        grpc_client.infer("lin", lin_inputs(tgrpc, 2))
    wrong = lin_inputs(thttp, 1)[:2]  # input c missing: a 400, counted as a failure
    assert failure(http_client.infer, "lin", wrong)[0] == "400"
    assert failure(grpc_client.infer, "lin", lin_inputs(tgrpc, 1)[:2])[0] == "INVALID_ARGUMENT"
    old = counts(before)
    deadline = time.monotonic() + 5
    while True:  # the server adds its tallies to the metrics within 50 ms
        (after,) = http_client.get_inference_statistics("lin")["model_stats"]
        delta = {key: value - old[key] for key, value in counts(after).items()}
        if delta["success.count"] == 5 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert delta["success.count"] == 5 and delta["fail.count"] == 2
    assert delta["inference_count"] == 10  # rows, as Triton counts a batch of 64 as 64
    assert 1 <= delta["execution_count"] <= 5  # model calls: the batcher may merge requests
    assert delta["queue.count"] == 5 and delta["compute_output.count"] == 5
    assert delta["compute_infer.count"] == delta["execution_count"]
    for part in ("success", "compute_infer", "compute_output"):
        assert delta[f"{part}.ns"] > 0, part
    assert delta["queue.ns"] >= 0  # a request alone in the queue may start at once
    assert after["last_inference"] >= 0
    # gRPC answers the same numbers, through the protobuf messages
    (grpc_stat,) = grpc_client.get_inference_statistics("lin", "1", as_json=True)["model_stats"]
    assert (grpc_stat["name"], grpc_stat["version"]) == ("lin", "1")
    grpc_counts = counts(grpc_stat)
    rest_counts = counts(http_client.get_inference_statistics("lin", "1")["model_stats"][0])
    assert grpc_counts == rest_counts
    # every served model, without a name; unknown names and versions are 404 / NOT_FOUND
    every = http_client.get_inference_statistics()["model_stats"]
    assert [(s["name"], s["version"]) for s in every] == [
        ("hgb", "1"),
        ("lin", "1"),
        ("mixed", "1"),
    ]
    every_grpc = grpc_client.get_inference_statistics().model_stats
    assert [(s.name, s.version) for s in every_grpc] == [("hgb", "1"), ("lin", "1"), ("mixed", "1")]
    assert failure(http_client.get_inference_statistics, "nope")[0] == "404"
    assert failure(http_client.get_inference_statistics, "lin", "9")[0] == "404"
    assert failure(grpc_client.get_inference_statistics, "nope")[0] == "NOT_FOUND"
    assert failure(grpc_client.get_inference_statistics, "lin", "9")[0] == "NOT_FOUND"


def test_statistics_add_up_every_worker(served_home: ServedHome) -> None:
    """With several workers each request is answered by one of them; the statistics, read from
    the metrics every worker writes, count all of them whichever worker answers the call."""
    body = {
        "inputs": [{"name": n, "shape": [2], "datatype": "FP64", "data": [1, 2]} for n in "abc"]
    }
    with Server(served_home.home, "lin/1", "--workers", "2") as server:
        workers: set[str] = set()
        sent = 0
        deadline = time.monotonic() + 60  # the second worker may still be loading
        while (sent < 20 or len(workers) < 2) and time.monotonic() < deadline:
            with httpx.Client() as client:  # a new connection: either worker may answer
                answer = client.post(f"{server.url}/v2/models/lin/infer", json=body)
            answer.raise_for_status()
            workers.add(answer.headers["x-request-id"][:16])  # the worker's prefix
            sent += 1
        assert len(workers) == 2
        deadline = time.monotonic() + 10
        seen: list[tuple[int, int]] = []
        while time.monotonic() < deadline:
            with httpx.Client() as client:
                stats = client.get(f"{server.url}/v2/models/lin/stats").json()["model_stats"][0]
            seen.append((stats["inference_stats"]["success"]["count"], stats["inference_count"]))
            if len(seen) >= 10 and all(s[0] == sent for s in seen[-10:]):
                break
            time.sleep(0.05)
        # the requests' 2 rows each, and each worker's warm-up call on the 4-row input example
        assert seen[-10:] == [(sent, 2 * sent + 2 * 4)] * 10
