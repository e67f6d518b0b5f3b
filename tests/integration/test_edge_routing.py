"""Every front door honours deployments the same way (issue 11, A1-A3; issue 12): the Open
Inference Protocol over REST and gRPC, ``POST /invocations``, ``POST /models/NAME/invocations``
and TF Serving's ``:predict``, in canary, A/B and shadow mode, through real ``yard serve``
processes."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from modelyard import rollout
from tests.integration._server import Server, server_env
from tests.integration.conftest import ServedHome

PROTOCOLS = ("v2", "invocations", "named_invocations", "tf", "grpc")
REQUESTS = 40  # per protocol; every other one has a negative x, which the candidate fails


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """``server`` once ready, stopped on the way out even when it never got ready (on a loaded
    machine a server can take a minute to start)."""
    try:
        yield server.wait_ready(timeout_s=180)
    finally:
        server.stop()


@pytest.fixture
def registry(served_home: ServedHome) -> Iterator[Any]:
    reg = served_home.registry()
    yield reg
    reg.close()


def start_candidate_anyway(registry: Any, name: str, **options: Any) -> None:
    """Start a candidate the control plane refuses as incompatible unless forced (issue 11,
    A2): these tests are about what the data plane does with it."""
    rollout.start_candidate(registry, name, force=True, **options)


GRPC_STATUS = {"INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "INTERNAL": 500, "UNAVAILABLE": 503}


@dataclass
class Reply:
    """One protocol's answer in the same terms: an HTTP status (gRPC codes mapped back), the
    first prediction, the answer's headers (gRPC: its trailing metadata) and an error."""

    status_code: int
    value: float | None
    headers: dict[str, str]
    error: str


class Caller:
    """Asks a deployment over each front door: the Open Inference Protocol over REST and gRPC,
    MLflow's two /invocations paths and TF Serving's :predict."""

    def __init__(self, server: Server) -> None:
        self.http = httpx.Client(base_url=server.url, timeout=30)
        self.channel = grpc.insecure_channel(server.grpc) if server.grpc else None

    def __enter__(self) -> Caller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        if self.channel is not None:
            self.channel.close()

    def ask(
        self, protocol: str, deployment: str, row: dict[str, float], headers: Any = None
    ) -> Reply:
        if protocol == "grpc":
            return self._grpc(deployment, row, headers or {})
        r = self.http.post(path_of(protocol, deployment), json=body_of(protocol, row),
                           headers=headers)  # fmt: skip
        if r.status_code != 200:
            return Reply(r.status_code, None, dict(r.headers), r.json()["error"])
        data = r.json()
        value = data["outputs"][0]["data"][0] if protocol == "v2" else data["predictions"][0]
        return Reply(200, value, dict(r.headers), "")

    def _grpc(self, deployment: str, row: dict[str, float], headers: dict[str, str]) -> Reply:
        assert self.channel is not None, "start the server with grpc=True"
        request = pb.ModelInferRequest(model_name=deployment)
        for name, value in row.items():
            request.inputs.add(name=name, datatype="FP64", shape=[1])
            request.raw_input_contents.append(np.array([value], "<f8").tobytes())
        stub = pb_grpc.GRPCInferenceServiceStub(self.channel)
        metadata = [(k.lower(), v) for k, v in headers.items()]
        try:
            response, call = stub.ModelInfer.with_call(request, metadata=metadata, timeout=30)
        except grpc.RpcError as exc:
            return Reply(GRPC_STATUS.get(exc.code().name, 500), None, {}, exc.details() or "")
        value = float(np.frombuffer(response.raw_output_contents[0], "<f8")[0])
        return Reply(200, value, dict(call.trailing_metadata()), "")


def path_of(protocol: str, deployment: str) -> str:
    if protocol == "v2":
        return f"/v2/models/{deployment}/infer"
    if protocol == "tf":
        return f"/v1/models/{deployment}:predict"
    return "/invocations" if protocol == "invocations" else f"/models/{deployment}/invocations"


def body_of(protocol: str, row: dict[str, float]) -> dict[str, Any]:
    if protocol == "v2":
        return {"inputs": [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]}
                           for k, v in row.items()]}  # fmt: skip
    if protocol == "tf":
        return {"instances": [row]}
    return {"dataframe_split": {"columns": list(row), "data": [list(row.values())]}}


def totals(registry: Any, name: str) -> tuple[int, int, int]:
    """(stable requests, candidate requests, candidate errors) recorded for ``name``."""
    revision = rollout.get_deployment(registry.db, name).revision
    summary = rollout.route_summary(registry.db, name, revision=revision)
    return summary.stable.requests, summary.candidate.requests, summary.candidate.errors


def wait_for(condition: Any, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


@pytest.mark.parametrize("mode", ["canary", "ab", "shadow"])
def test_every_protocol_routes_records_and_falls_back(served_home, registry, tmp_path, mode):
    name = f"flow-{mode}"
    rollout.deploy(registry, name, model_ref="echo/1")
    options: dict[str, Any] = {"shadow": {"sample": 1.0}, "ab": {"weight": 50,
                               "sticky_header": "X-User"}}.get(mode, {"weight": 50})  # fmt: skip
    rollout.start_candidate(registry, name, ref="picky/1", mode=mode, **options)
    log_root = tmp_path / "log"
    env = server_env(served_home.home, MODELYARD_MONITORING__LOG_ROOT=str(log_root))
    args = ("--deployment", name, "--trust-pickle", "--log-predictions")
    with (
        running(Server(served_home.home, *args, env=env, grpc=True)) as server,
        Caller(server) as caller,
    ):
        meta = caller.http.get(f"/v2/models/{name}").json()
        assert meta["name"] == name and meta["versions"] == ["1"]
        for protocol in PROTOCOLS:
            before = totals(registry, name)
            routes: set[str] = set()
            for i in range(REQUESTS):
                x = -1.0 - i if i % 2 else 1.0 + i
                r = caller.ask(protocol, name, {"x": x, "y": 0.0},
                               headers={"X-User": f"user-{protocol}-{i}"})  # fmt: skip
                assert r.status_code == 200, (protocol, r.error)
                assert r.value == x
                assert r.headers["x-model-version"] == "1"
                routes.add(r.headers["x-route"])
                if x < 0:  # the candidate fails negative values: stable answered
                    assert r.headers["x-route"] == "stable", (protocol, x)
            assert routes == ({"stable"} if mode == "shadow" else {"stable", "candidate"}), (
                protocol, routes,
            )  # fmt: skip

            def recorded(before: tuple[int, int, int] = before) -> bool:
                stable, candidate, errors = totals(registry, name)
                return (
                    stable > before[0] and candidate > before[1] and errors > before[2]
                    and stable - before[0] + candidate - before[1] >= REQUESTS
                )  # fmt: skip

            assert wait_for(recorded), (protocol, before, totals(registry, name))
        metrics = caller.http.get("/metrics").text
        for route in ("stable",) if mode == "shadow" else ("stable", "candidate"):
            assert f'modelyard_route_requests_total{{deployment="{name}",route="{route}"' in metrics
        # every try on each route, the candidate's failures (negative x) counted against it
        for route in ("stable", "candidate"):
            tries = f'modelyard_route_seconds_count{{deployment="{name}",route="{route}"}}'
            assert tries in metrics
        failed = re.search(
            rf'^modelyard_route_errors_total{{deployment="{name}",route="candidate"}} (\S+)$',
            metrics, re.M,
        )  # fmt: skip
        assert failed is not None and float(failed.group(1)) > 0, metrics
        # answers and failures of the deployment count under its name, not its models'
        assert f'modelyard_requests_total{{model="{name}",' in metrics
        assert 'modelyard_requests_total{model="echo",' not in metrics
    logged = pq.read_table(log_root / f"deployment={name}", columns=["deployment", "route"])
    assert set(logged.column("deployment").to_pylist()) == {name}
    expected = {"stable"} if mode == "shadow" else {"stable", "candidate"}
    assert set(logged.column("route").to_pylist()) == expected


def test_invocations_serve_the_one_deployment_and_admin_lists_its_routes(served_home, registry):
    rollout.deploy(registry, "churn-api", model_ref="echo/1")
    rollout.start_candidate(registry, "churn-api", ref="picky/1", mode="canary", weight=30)
    with running(Server(served_home.home, "--deployment", "churn-api", "--trust-pickle")) as server:
        r = httpx.post(f"{server.url}/invocations", json={"instances": [[2.0, 0.0]]})
        assert r.status_code == 200 and r.json() == {"predictions": [2.0]}
        assert r.headers["x-route"] in ("stable", "candidate")
        meta = httpx.get(f"{server.url}/v2/models/churn-api").json()
        assert meta["name"] == "churn-api"
        assert [i["name"] for i in meta["inputs"]] == ["x", "y"]
        admin = httpx.get(f"{server.url}/admin/models").json()
    assert len(admin) == 1
    entry = admin[0]
    assert (entry["name"], entry["kind"], entry["mode"], entry["weight"]) == (
        "churn-api", "deployment", "canary", 30,
    )  # fmt: skip
    routes = {r["route"]: r for r in entry["routes"]}
    assert (routes["stable"]["model"], routes["stable"]["version"]) == ("echo", "1")
    assert (routes["candidate"]["model"], routes["candidate"]["version"]) == ("picky", "1")
    assert routes["stable"]["runtime"] == "native"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_candidate_refusing_valid_input_is_answered_by_stable_and_counted(
    served_home, registry, protocol
) -> None:
    name = f"strict-{protocol.replace('_', '-')}"
    rollout.deploy(registry, name, model_ref="echo/1")
    # lin takes columns a, b, c: it refuses every request echo (x, y) accepts
    start_candidate_anyway(registry, name, ref="lin/1", mode="canary", weight=50)
    args = ("--deployment", name, "--trust-pickle")
    with (
        running(Server(served_home.home, *args, grpc=protocol == "grpc")) as server,
        Caller(server) as caller,
    ):
        for i in range(30):
            r = caller.ask(protocol, name, {"x": float(i), "y": 0.0})
            assert r.status_code == 200, r.error
            assert r.value == float(i) and r.headers["x-route"] == "stable"

        def counted() -> bool:
            stable, candidate, errors = totals(registry, name)
            return stable >= 30 and candidate > 0 and errors == candidate

        assert wait_for(counted), totals(registry, name)
        # a request stable refuses too (no y) is the client's error
        bad = caller.ask(protocol, name, {"x": 1.0})
        assert bad.status_code == 400 and "y" in bad.error, bad.error


def test_every_worker_serves_the_deployment(served_home, registry) -> None:
    rollout.deploy(registry, "two-workers", model_ref="echo/1")
    args = ("--deployment", "two-workers", "--trust-pickle", "--workers", "2")
    with (
        running(Server(served_home.home, *args)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        workers: set[str] = set()
        for i in range(500):
            # a new connection each time: the kernel spreads them over the workers
            r = httpx.post(f"{server.url}/invocations", json={"instances": [[float(i), 0.0]]})
            assert r.status_code == 200 and r.json() == {"predictions": [float(i)]}, r.text
            assert r.headers["x-route"] == "stable"
            workers.add(r.headers["x-request-id"][:16])
            if len(workers) == 2:
                break
        assert len(workers) == 2
        assert client.get("/v2/models/two-workers").json()["name"] == "two-workers"
