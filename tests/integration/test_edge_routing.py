"""Every front door honours deployments the same way (issue 11, A1-A3): the Open Inference
Protocol, ``POST /invocations`` and ``POST /models/NAME/invocations``, in canary, A/B and shadow
mode, through real ``yard serve`` processes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from modelyard import rollout
from tests.integration._server import Server, server_env
from tests.integration.conftest import ServedHome

PROTOCOLS = ("v2", "invocations", "named_invocations")
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


def ask(client: httpx.Client, protocol: str, deployment: str, x: float, **kw: Any) -> Any:
    return client.post(path_of(protocol, deployment), json=body_of(protocol, {"x": x, "y": 0.0}),
                       **kw)  # fmt: skip


def path_of(protocol: str, deployment: str) -> str:
    if protocol == "v2":
        return f"/v2/models/{deployment}/infer"
    return "/invocations" if protocol == "invocations" else f"/models/{deployment}/invocations"


def body_of(protocol: str, row: dict[str, float]) -> dict[str, Any]:
    if protocol == "v2":
        return {"inputs": [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]}
                           for k, v in row.items()]}  # fmt: skip
    return {"dataframe_split": {"columns": list(row), "data": [list(row.values())]}}


def answer(protocol: str, response: httpx.Response) -> float:
    data = response.json()
    return data["outputs"][0]["data"][0] if protocol == "v2" else data["predictions"][0]


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
        running(Server(served_home.home, *args, env=env)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        meta = client.get(f"/v2/models/{name}").json()
        assert meta["name"] == name and meta["versions"] == ["1"]
        for protocol in PROTOCOLS:
            before = totals(registry, name)
            routes: set[str] = set()
            for i in range(REQUESTS):
                x = -1.0 - i if i % 2 else 1.0 + i
                r = ask(client, protocol, name, x, headers={"X-User": f"user-{protocol}-{i}"})
                assert r.status_code == 200, (protocol, r.text)
                assert answer(protocol, r) == x
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
        metrics = client.get("/metrics").text
        for route in ("stable",) if mode == "shadow" else ("stable", "candidate"):
            assert f'modelyard_route_requests_total{{deployment="{name}",route="{route}"' in metrics
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
    with (
        running(Server(served_home.home, "--deployment", name, "--trust-pickle")) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        for i in range(30):
            r = ask(client, protocol, name, float(i))
            assert r.status_code == 200, r.text
            assert answer(protocol, r) == float(i) and r.headers["x-route"] == "stable"

        def counted() -> bool:
            stable, candidate, errors = totals(registry, name)
            return stable >= 30 and candidate > 0 and errors == candidate

        assert wait_for(counted), totals(registry, name)
        # a request stable refuses too (no y) is the client's error
        bad = client.post(path_of(protocol, name), json=body_of(protocol, {"x": 1.0}))
        assert bad.status_code == 400 and "y" in bad.json()["error"], bad.text


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
