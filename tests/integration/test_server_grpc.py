"""The Open Inference Protocol over gRPC (issue 12), against a real ``yard serve --grpc-port``
process, called with the standard clients: tritonclient.grpc, and the stubs tritonclient ships
for typed ``contents`` (which tritonclient's own helpers never send)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

from tests.integration._server import YARD, Server, bearer, free_port, server_env
from tests.integration.conftest import ServedHome


@pytest.fixture(scope="module")
def server(served_home: ServedHome) -> Iterator[Server]:
    args = ("hgb@production", "lin/1", "mixed/1", "slow/1", "picky/1", "--trust-pickle")
    with Server(served_home.home, *args, "--runtime", "native", grpc=True) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[triton.InferenceServerClient]:
    assert server.grpc is not None
    c = triton.InferenceServerClient(server.grpc)
    yield c
    c.close()


@pytest.fixture(scope="module")
def stub(server: Server) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    assert server.grpc is not None
    with grpc.insecure_channel(server.grpc) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def tensor(name: str, values: Any, datatype: str) -> triton.InferInput:
    array = np.asarray(values, dtype=object if datatype == "BYTES" else None)
    item = triton.InferInput(name, list(array.shape), datatype)
    item.set_data_from_numpy(array)
    return item


def lin_inputs(a: list[float], b: list[float], c: list[float]) -> list[triton.InferInput]:
    return [
        tensor(n, np.asarray(v, dtype=np.float64), "FP64")
        for n, v in zip("abc", (a, b, c), strict=True)
    ]


def code_of(call: Any) -> tuple[str, str]:
    """``(status code name, message)`` of a failed tritonclient call."""
    with pytest.raises(InferenceServerException) as info:
        call()
    return str(info.value.status()).removeprefix("StatusCode."), info.value.message()


def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("hgb") and client.is_model_ready("hgb", "1")
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "modelyard" and meta["version"]
    model = client.get_model_metadata("hgb", as_json=True)
    assert model["name"] == "hgb" and model["versions"] == ["1"]
    assert [i["name"] for i in model["inputs"]] == [f"f{i}" for i in range(20)]
    assert {i["datatype"] for i in model["inputs"]} == {"FP64"}
    assert [o["name"] for o in model["outputs"]] == ["predict", "predict_proba"]
    mixed = client.get_model_metadata("mixed", as_json=True)
    assert [(i["name"], i["datatype"]) for i in mixed["inputs"]] == [
        ("age", "FP64"), ("city", "BYTES"),
    ]  # fmt: skip
    assert code_of(lambda: client.is_model_ready("nope"))[0] == "NOT_FOUND"
    code, message = code_of(lambda: client.get_model_metadata("hgb", "9"))
    assert code == "NOT_FOUND" and "version 9" in message


def test_raw_tensors_as_columns_or_one_matrix(
    client: triton.InferenceServerClient, served_home: ServedHome
) -> None:
    X = served_home.X.iloc[:5]
    model = served_home.registry().load("hgb/1")
    proba = model.predict_proba(X)
    wanted = [triton.InferRequestedOutput("predict"), triton.InferRequestedOutput("predict_proba")]
    columns = [tensor(c, X[c].to_numpy(), "FP64") for c in X.columns]
    result = client.infer("hgb", columns, outputs=wanted, request_id="req-7")
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("hgb", "1", "req-7")
    assert len(response.raw_output_contents) == 2  # a raw request is answered raw
    np.testing.assert_allclose(result.as_numpy("predict_proba"), proba, rtol=1e-6)
    np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(X))
    matrix = tensor("input", X.to_numpy(np.float32), "FP32")
    only = client.infer("hgb", [matrix], model_version="1")
    assert only.get_response().outputs[0].name == "predict"  # the default output
    np.testing.assert_array_equal(only.as_numpy("predict"), model.predict(X))


def test_typed_contents_are_answered_typed(
    stub: pb_grpc.GRPCInferenceServiceStub, served_home: ServedHome
) -> None:
    request = pb.ModelInferRequest(model_name="lin", id="typed")
    for name, values in zip("abc", ([1.0, 0.0], [0.0, 1.0], [0.0, 1.0]), strict=True):
        item = request.inputs.add(name=name, datatype="FP64", shape=[2])
        item.contents.fp64_contents.extend(values)
    response = stub.ModelInfer(request)
    assert not response.raw_output_contents and response.id == "typed"
    (output,) = response.outputs
    assert output.datatype == "FP64" and list(output.shape) == [2]
    np.testing.assert_allclose(output.contents.fp64_contents, [1.0, 110.0], atol=1e-6)
    # BYTES in bytes_contents; INT32 in int_contents for a float column
    mixed = pb.ModelInferRequest(model_name="mixed")
    age = mixed.inputs.add(name="age", datatype="INT32", shape=[3])
    age.contents.int_contents.extend([30, 40, 50])
    city = mixed.inputs.add(name="city", datatype="BYTES", shape=[3])
    city.contents.bytes_contents.extend([b"rome", b"oslo", b"rome"])
    answer = stub.ModelInfer(mixed).outputs[0]
    rows = pd.DataFrame({"age": [30.0, 40.0, 50.0], "city": ["rome", "oslo", "rome"]})
    expected = served_home.registry().load("mixed/1").predict(rows)
    assert list(answer.contents.int64_contents) == expected.tolist()


def test_bytes_raw_with_length_prefixes(
    client: triton.InferenceServerClient, server: Server
) -> None:
    ages = tensor("age", np.array([30.0, 40.0]), "FP64")
    cities = tensor("city", np.array([b"rome", b"oslo"], dtype=object), "BYTES")
    result = client.infer("mixed", [ages, cities]).as_numpy("predict").tolist()
    rest = httpx.post(f"{server.url}/v2/models/mixed/infer", json={"inputs": [
        {"name": "age", "shape": [2], "datatype": "FP64", "data": [30.0, 40.0]},
        {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["rome", "oslo"]},
    ]}).json()  # fmt: skip
    assert result == rest["outputs"][0]["data"] == [1, 0]  # the model learned city == rome


def test_errors_are_the_rest_statuses_as_grpc_codes(
    client: triton.InferenceServerClient, stub: pb_grpc.GRPCInferenceServiceStub, server: Server
) -> None:
    row = lin_inputs([1.0], [0.0], [0.0])
    assert code_of(lambda: client.infer("nope", row))[0] == "NOT_FOUND"
    assert code_of(lambda: client.infer("lin", row, model_version="7"))[0] == "NOT_FOUND"
    wrong = [*row[:2], tensor("z", np.array([0.0]), "FP64")]
    code, message = code_of(lambda: client.infer("lin", wrong))
    assert code == "INVALID_ARGUMENT" and "z" in message and "c" in message
    text = [*row[:2], tensor("c", np.array([b"x"], dtype=object), "BYTES")]
    code, message = code_of(lambda: client.infer("lin", text))
    assert code == "INVALID_ARGUMENT" and "Input 'c' is BYTES" in message
    unknown_output = [triton.InferRequestedOutput("proba")]
    code, message = code_of(lambda: client.infer("lin", row, outputs=unknown_output))
    assert code == "NOT_FOUND" and "'proba'" in message
    # a failing model: the REST 500 is INTERNAL
    negative = [tensor("x", np.array([-1.0]), "FP64"), tensor("y", np.array([0.0]), "FP64")]
    assert code_of(lambda: client.infer("picky", negative))[0] == "INTERNAL"

    def ask(request: Any) -> tuple[str, str]:
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request)
        return info.value.code().name, info.value.details()

    cut = pb.ModelInferRequest(model_name="lin")
    for name in "abc":
        cut.inputs.add(name=name, datatype="FP64", shape=[2])
        cut.raw_input_contents.append(np.zeros(2).tobytes()[:-8] if name == "b" else bytes(16))
    code, message = ask(cut)
    assert code == "INVALID_ARGUMENT" and "Input 'b' has 8 binary bytes" in message
    misplaced = pb.ModelInferRequest(model_name="lin")
    for name in "abc":
        item = misplaced.inputs.add(name=name, datatype="FP64", shape=[1])
        if name == "c":
            item.contents.int64_contents.append(1)
        else:
            item.contents.fp64_contents.append(1.0)
    code, message = ask(misplaced)
    assert code == "INVALID_ARGUMENT"
    assert (
        message
        == "Input 'c' is FP64 but its values are in int64_contents; send them in fp64_contents."
    )
    narrow = pb.ModelInferRequest(model_name="lin")
    for name in "abc":
        item = narrow.inputs.add(name=name, datatype="INT8", shape=[1])
        item.contents.int_contents.append(300 if name == "a" else 0)
    code, message = ask(narrow)
    assert (
        code == "INVALID_ARGUMENT" and "Input 'a' has 300 where INT8 holds -128 to 127" in message
    )
    short = pb.ModelInferRequest(model_name="lin")
    for name in "abc":
        short.inputs.add(name=name, datatype="FP64", shape=[3]).contents.fp64_contents.extend([1.0])
    code, message = ask(short)
    assert code == "INVALID_ARGUMENT" and "Input 'a' has 1 values but shape [3] needs 3" in message
    assert ask(pb.ModelInferRequest(model_name="lin"))[0] == "INVALID_ARGUMENT"  # no inputs
    # bytes that are not a ModelInferRequest at all
    assert server.grpc is not None
    with grpc.insecure_channel(server.grpc) as channel:
        garbage = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as info:
            garbage(b"\xff\xff\xff\xff")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid inference.ModelInferRequest" in (info.value.details() or "")


def test_compressed_requests_are_answered(client: triton.InferenceServerClient) -> None:
    """tritonclient's ``compression_algorithm`` (grpc-encoding, and the message's compressed
    flag) was refused with UNIMPLEMENTED; the answer comes uncompressed, which grpc reads."""
    rows = lin_inputs([1.0, 2.0], [0.0, 1.0], [0.0, 0.0])
    plain = client.infer("lin", rows).as_numpy("predict")
    for algorithm in ("gzip", "deflate"):
        answer = client.infer("lin", rows, compression_algorithm=algorithm)
        np.testing.assert_array_equal(answer.as_numpy("predict"), plain)
    big = lin_inputs([1.0] * 5000, [0.0] * 5000, [2.0] * 5000)  # 120 KB: inflated in a thread
    answer = client.infer("lin", big, compression_algorithm="gzip").as_numpy("predict")
    assert answer.shape == (5000,)
    np.testing.assert_allclose(answer, np.full(5000, 201.0))


def test_a_streaming_call_is_refused_not_left_waiting(server: Server) -> None:
    """tritonclient's ``start_stream`` opens ModelStreamInfer, which this server lacks: the
    callback hears UNIMPLEMENTED at once (it waited for ever before)."""
    import queue

    assert server.grpc is not None
    heard: queue.Queue[Any] = queue.Queue()
    client = triton.InferenceServerClient(server.grpc)
    client.start_stream(callback=lambda result, error: heard.put(error))
    try:
        # the refusal may come before the first message is sent: the client then says so
        with contextlib.suppress(InferenceServerException):
            client.async_stream_infer("lin", lin_inputs([1.0], [0.0], [0.0]))
        error = heard.get(timeout=10)
    finally:
        client.stop_stream()
        client.close()
    assert isinstance(error, InferenceServerException)
    assert str(error.status()) == "StatusCode.UNIMPLEMENTED"
    assert "ModelStreamInfer" in error.message()


def test_the_client_deadline_bounds_the_prediction(
    client: triton.InferenceServerClient, server: Server
) -> None:
    slow = [tensor("x", np.array([1.0]), "FP64"), tensor("y", np.array([0.0]), "FP64")]
    code, _ = code_of(lambda: client.infer("slow", slow, client_timeout=0.1))
    assert code == "DEADLINE_EXCEEDED"
    line = 'modelyard_requests_total{model="slow",protocol="grpc",route="v2_infer",status="504"'

    def counted() -> bool:  # the server gave up at the deadline too (its own limit is 10 s)
        return line in httpx.get(f"{server.url}/metrics").text

    deadline = time.monotonic() + 10
    while not counted() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert counted()
    assert client.infer("slow", slow, client_timeout=30).as_numpy("predict").tolist() == [1.0]


def test_one_bad_request_never_fails_another(client: triton.InferenceServerClient) -> None:
    def call(i: int) -> Any:
        if i % 4 == 0:  # a wrong shape, in the same burst as the good ones
            bad = lin_inputs([1.0, 2.0], [0.0], [0.0])
            return code_of(lambda: client.infer("lin", bad))[0]
        result = client.infer("lin", lin_inputs([float(i)], [1.0], [0.0]))
        return float(result.as_numpy("predict")[0])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(call, range(64)))
    for i, got in enumerate(answers):
        if i % 4 == 0:
            assert got == "INVALID_ARGUMENT", i
        else:
            assert got == pytest.approx(i + 10.0, abs=1e-6), i


def test_grpc_calls_are_counted_with_their_protocol(
    client: triton.InferenceServerClient, server: Server
) -> None:
    client.infer("lin", lin_inputs([1.0], [0.0], [0.0]))
    text = httpx.get(f"{server.url}/metrics").text
    assert (
        'modelyard_requests_total{model="lin",protocol="grpc",route="v2_infer",status="200",'
        'version="1"}'
    ) in text
    assert 'modelyard_request_seconds_count{model="lin",protocol="grpc",route="v2_infer"}' in text


# -- under --auth, logging predictions, with a 4 KiB message limit ------------------------------


@pytest.fixture(scope="module")
def log_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("grpc-log")


@pytest.fixture(scope="module")
def guarded(served_home: ServedHome, log_root: Path) -> Iterator[Server]:
    env = server_env(
        served_home.home, MODELYARD_MONITORING__LOG_ROOT=str(log_root),
        MODELYARD_SERVING__MAX_BODY_BYTES="4096", MODELYARD_MONITORING__FLUSH_INTERVAL_S="0.2",
    )  # fmt: skip
    with Server(served_home.home, "lin/1", "--auth", "--log-predictions", env=env, grpc=True) as s:
        yield s


def test_tokens_ride_in_the_authorization_metadata(guarded: Server, tokens: dict[str, str]) -> None:
    assert guarded.grpc is not None
    client = triton.InferenceServerClient(guarded.grpc)
    row = lin_inputs([1.0], [1.0], [1.0])
    assert client.is_server_live() and client.is_server_ready()  # probes need no token
    code, message = code_of(lambda: client.infer("lin", row))
    assert code == "UNAUTHENTICATED" and message
    assert code_of(lambda: client.infer("lin", row, headers=bearer("my-ydt")))[0] == (
        "UNAUTHENTICATED"
    )
    assert code_of(lambda: client.infer("lin", row, headers=bearer(tokens["mixed"])))[0] == (
        "PERMISSION_DENIED"
    )
    assert code_of(lambda: client.get_model_metadata("lin"))[0] == "UNAUTHENTICATED"
    assert client.get_model_metadata("lin", headers=bearer(tokens["lin"])).name == "lin"
    for token in (tokens["lin"], tokens["any"]):
        answer = client.infer("lin", row, headers=bearer(token))
        assert answer.as_numpy("predict").tolist() == [pytest.approx(111.0)]
    client.close()


def test_made_up_names_and_refused_calls_leave_no_trace(
    guarded: Server, tokens: dict[str, str]
) -> None:
    assert guarded.grpc is not None
    client = triton.InferenceServerClient(guarded.grpc)
    row = lin_inputs([1.0], [1.0], [1.0])
    for i in range(30):
        name = f"madeup-{i}-{uuid.uuid4().hex[:6]}\nforged line"
        headers = bearer(tokens["any"]) if i % 2 else {}
        call = lambda name=name, headers=headers: client.infer(name, row, headers=headers)  # noqa: E731
        code, _ = code_of(call)
        assert code == ("NOT_FOUND" if i % 2 else "UNAUTHENTICATED")
        assert code_of(lambda name=name: client.is_model_ready(name))[0] == "UNAUTHENTICATED"
    code_of(lambda: client.infer("lin", row))  # no token for a served name: no label either
    client.close()
    metrics = httpx.get(f"{guarded.url}/metrics", headers=bearer(tokens["admin"])).text
    assert "madeup" not in metrics and "forged" not in metrics
    refused = [m for m in metrics.splitlines() if 'model="lin"' in m and 'status="401"' in m]
    assert not refused, refused
    assert "madeup" not in guarded.log.read_text()


def test_a_message_over_the_limit_is_refused(guarded: Server, tokens: dict[str, str]) -> None:
    assert guarded.grpc is not None
    client = triton.InferenceServerClient(guarded.grpc)
    big = lin_inputs([1.0] * 400, [1.0] * 400, [1.0] * 400)  # 9.6 KB of raw tensors
    code, _ = code_of(lambda: client.infer("lin", big, headers=bearer(tokens["any"])))
    assert code == "RESOURCE_EXHAUSTED"
    # what inflates past the limit, however small it came: 9.6 KB of ones is a few hundred bytes
    code, message = code_of(
        lambda: client.infer(
            "lin", big, headers=bearer(tokens["any"]), compression_algorithm="gzip"
        )
    )
    assert code == "RESOURCE_EXHAUSTED" and "serving.max_body_bytes" in message
    small = client.infer("lin", lin_inputs([1.0], [0.0], [0.0]), headers=bearer(tokens["any"]))
    assert small.as_numpy("predict").tolist() == [pytest.approx(1.0)]
    client.close()


def test_predictions_and_failures_reach_the_log(
    guarded: Server, tokens: dict[str, str], log_root: Path
) -> None:
    assert guarded.grpc is not None
    client = triton.InferenceServerClient(guarded.grpc)
    auth = bearer(tokens["lin"])
    ids = [f"grpc-log-{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    for i, request_id in enumerate(ids):
        client.infer("lin", lin_inputs([float(i)], [0.0], [1.0]), headers=auth | {
            "x-request-id": request_id})  # fmt: skip
    bad = lin_inputs([1.0, 2.0], [0.0], [0.0])
    code_of(lambda: client.infer("lin", bad, headers=auth | {"x-request-id": "grpc-log-bad"}))
    client.close()

    def logged() -> dict[str, Any]:
        # the written files only: a flush makes its hour's folder before its first file is in
        # (under a hidden name until complete), and a folder of no file reads as no columns
        files = sorted((log_root / "deployment=lin").glob("hour=*/[!.]*.parquet"))
        columns = ["request_id", "route", "status"]
        rows = [r for f in files for r in pq.read_table(f, columns=columns).to_pylist()]
        return {r["request_id"]: r for r in rows if r["request_id"].startswith("grpc-log")}

    deadline = time.monotonic() + 20
    while len(logged()) < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    rows = logged()
    assert {rows[i]["route"] for i in ids} == {"v2_infer"}
    assert (rows["grpc-log-bad"]["route"], rows["grpc-log-bad"]["status"]) == ("error", 400)


def test_a_taken_grpc_port_stops_the_start_naming_it(
    served_home: ServedHome, server: Server
) -> None:
    assert server.grpc is not None
    port = server.grpc.rsplit(":", 1)[1]
    done = subprocess.run(
        [YARD, "serve", "lin/1", "--port", str(free_port()), "--grpc-port", port],
        env=server_env(served_home.home), capture_output=True, text=True, timeout=180,
        check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert f"gRPC cannot listen on 127.0.0.1:{port}" in done.stdout + done.stderr


def test_every_worker_answers_grpc(served_home: ServedHome) -> None:
    with Server(served_home.home, "lin/1", "--workers", "2", grpc=True) as server:
        assert server.grpc is not None
        workers: set[str] = set()
        # a new connection each time: the kernel spreads them over the workers that listen
        # (the second may still be loading its models on a busy machine: up to a minute)
        deadline = time.monotonic() + 60
        for i in itertools.count():
            if len(workers) == 2 or time.monotonic() > deadline:
                break
            with grpc.insecure_channel(server.grpc) as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                request = pb.ModelInferRequest(model_name="lin")
                for name in "abc":
                    item = request.inputs.add(name=name, datatype="FP64", shape=[1])
                    item.contents.fp64_contents.append(float(i) if name == "a" else 0.0)
                response, call = stub.ModelInfer.with_call(request, timeout=30)
            assert response.outputs[0].contents.fp64_contents[0] == pytest.approx(i)
            workers.add(dict(call.trailing_metadata())["x-request-id"][:16])
        assert len(workers) == 2


def test_h2load_drives_the_grpc_door_without_a_failure(server: Server) -> None:
    """nghttp2's h2load (the reference HTTP/2 implementation's load generator) on 4 connections
    of 16 concurrent streams: every call answered, each with the one correct message."""
    h2load = shutil.which("h2load")
    if h2load is None:
        message = "h2load is not on PATH (apt-get install nghttp2-client, or make system)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI=true, so this is a failure")
        pytest.skip(message)
    assert server.grpc is not None
    request = pb.ModelInferRequest(model_name="lin")
    for name in "abc":
        request.inputs.add(name=name, datatype="FP64", shape=[1])
        request.raw_input_contents.append(np.array([1.0], "<f8").tobytes())
    with grpc.insecure_channel(server.grpc) as channel:
        answer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert np.frombuffer(answer.raw_output_contents[0], "<f8").tolist() == [pytest.approx(111.0)]
    message = request.SerializeToString()
    calls = 2000
    with tempfile.NamedTemporaryFile(suffix=".bin") as body:
        body.write(b"\x00" + len(message).to_bytes(4, "big") + message)
        body.flush()
        done = subprocess.run(
            [h2load, "-n", str(calls), "-c", "4", "-m", "16", "-d", body.name,
             "-H", "content-type: application/grpc", "-H", "te: trailers",
             f"http://{server.grpc}/inference.GRPCInferenceService/ModelInfer"],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{calls} succeeded, 0 failed, 0 errored, 0 timeout" in done.stdout, done.stdout
    # a gRPC error is an HTTP 200 without a message: the bytes received tell them apart
    traffic = next(line for line in done.stdout.splitlines() if line.startswith("traffic:"))
    data = int(re.search(r"\((\d+)\) data", traffic).group(1))  # type: ignore[union-attr]
    assert data == calls * (5 + answer.ByteSize()), traffic


def test_sigterm_drains_grpc_and_http_at_once(served_home: ServedHome) -> None:
    """At SIGTERM the gRPC door stops taking calls at once, while HTTP drains (uvicorn runs the
    shutdown only after its drain; the two drains overlap, so a pod's grace counts one)."""
    server = Server(served_home.home, "sleepy/1", "--trust-pickle", grpc=True)
    server.wait_ready()
    assert server.grpc is not None
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [7.0]},
                       {"name": "y", "shape": [1], "datatype": "FP64", "data": [3.0]}]}  # fmt: skip
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(
                httpx.post, f"{server.url}/v2/models/sleepy/infer", json=body, timeout=30
            )
            time.sleep(0.8)  # the request is in the model (3 s)
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            late = triton.InferenceServerClient(server.grpc)
            with pytest.raises(InferenceServerException):
                late.is_server_live(client_timeout=2)  # refused while HTTP still drains
            late.close()
            assert server.proc.poll() is None  # still draining the HTTP request
            answer = slow.result()
        assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [7.0]
        assert server.proc.wait(30) == 0
    finally:
        server.stop()
