"""Triton's model configuration extension over REST and gRPC,
against a real ``yard serve`` process, called with the standard clients (``tritonclient.http``
and ``.grpc``: ``get_model_config``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
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


def test_server_metadata_lists_the_extensions(
    http_client: thttp.InferenceServerClient, grpc_client: tgrpc.InferenceServerClient
) -> None:
    rest = http_client.get_server_metadata()["extensions"]
    grpc = list(grpc_client.get_server_metadata().extensions)
    assert rest == grpc
    assert rest == ["binary_tensor_data", "classification", "model_configuration"]


@pytest.fixture(scope="module")
def guarded(served_home: ServedHome) -> Iterator[Server]:
    env = server_env(served_home.home)
    with Server(served_home.home, "lin/1", "--auth", env=env, grpc=True) as s:
        yield s


def test_config_takes_the_token_and_leaves_no_trace_of_made_up_names(
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
    for i in range(10):
        name = f"madeup-{i}-{uuid.uuid4().hex[:6]}"
        headers = bearer(tokens["any"]) if i % 2 else {}
        expected = ("404", "NOT_FOUND") if i % 2 else ("401", "UNAUTHENTICATED")
        assert failure(rest.get_model_config, name, headers=headers)[0] == expected[0]
        assert failure(grpc.get_model_config, name, headers=headers)[0] == expected[1]
    rest.close()
    grpc.close()
    metrics = httpx.get(f"{guarded.url}/metrics", headers=bearer(tokens["admin"])).text
    assert "madeup" not in metrics
    assert "madeup" not in guarded.log.read_text()
