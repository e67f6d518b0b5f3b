"""Batching, hot swaps, overload, deadlines, model failures, SIGTERM and tokens, against real
``yard serve`` processes on loopback."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.integration._server import Server, server_env
from tests.integration.conftest import ServedHome


def lin_body(rows: np.ndarray) -> dict[str, object]:
    return {"inputs": [{"name": "x", "shape": list(rows.shape), "datatype": "FP64",
                        "data": rows.ravel().tolist()}]}  # fmt: skip


def xy_body(values: list[float]) -> dict[str, object]:
    return {"inputs": [{"name": "x", "shape": [len(values)], "datatype": "FP64", "data": values},
                       {"name": "y", "shape": [len(values)], "datatype": "FP64",
                        "data": [0.0] * len(values)}]}  # fmt: skip


@pytest.fixture(scope="module")
def lin_server(served_home: ServedHome):
    with Server(served_home.home, "lin/1", "--max-batch-size", "8",
                "--max-batch-delay-ms", "3") as server:  # fmt: skip
        yield server


@settings(max_examples=12, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=2, max_size=24),
    gaps=st.lists(st.sampled_from([0.0, 0.0, 0.001, 0.004]), min_size=24, max_size=24),
    seed=st.integers(0, 2**16),
)
def test_concurrent_callers_get_exactly_their_rows(lin_server: Server, sizes, gaps, seed) -> None:
    rng = np.random.default_rng(seed)
    inputs = [rng.integers(0, 50, size=(n, 3)).astype(float) for n in sizes]

    async def one(client: httpx.AsyncClient, rows: np.ndarray, gap: float) -> list[float]:
        await asyncio.sleep(gap)
        response = await client.post(f"{lin_server.url}/v2/models/lin/infer", json=lin_body(rows))
        assert response.status_code == 200, response.text
        return response.json()["outputs"][0]["data"]

    async def main() -> list[list[float]]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *(one(client, rows, gap) for rows, gap in zip(inputs, gaps, strict=False))
            )

    for rows, answer in zip(inputs, asyncio.run(main()), strict=True):
        expected = rows[:, 0] + 10 * rows[:, 1] + 100 * rows[:, 2]
        np.testing.assert_allclose(answer, expected, atol=1e-6)


def test_batches_form_under_load(lin_server: Server) -> None:
    async def main() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            rows = np.ones((1, 3))
            await asyncio.gather(
                *(client.post(f"{lin_server.url}/v2/models/lin/infer", json=lin_body(rows))
                  for _ in range(64))
            )  # fmt: skip

    asyncio.run(main())
    metrics = httpx.get(f"{lin_server.url}/metrics").text
    count = _metric(metrics, 'modelyard_batch_rows_count{model="lin"}')
    total = _metric(metrics, 'modelyard_batch_rows_sum{model="lin"}')
    assert total > count  # some model calls took several requests' rows


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def test_hot_swap_under_load_fails_no_request(served_home: ServedHome) -> None:
    env = server_env(served_home.home, MODELYARD_SERVING__POLL_INTERVAL_S="0.2")
    registry = served_home.registry()
    registry.set_alias("hgb/1", "production", reason="test start")
    X = served_home.X.head(2)
    body = {"inputs": [{"name": "x", "shape": [2, 20], "datatype": "FP64",
                        "data": X.to_numpy().tolist()}]}  # fmt: skip
    seen: list[tuple[float, int, str]] = []
    with Server(served_home.home, "hgb@production", env=env) as server:

        async def client_loop(client: httpx.AsyncClient, stop: float) -> None:
            while time.monotonic() < stop:
                r = await client.post(f"{server.url}/v2/models/hgb/infer", json=body)
                seen.append((time.monotonic(), r.status_code, r.headers.get("x-model-version")))

        async def main() -> float:
            async with httpx.AsyncClient(timeout=30) as client:
                stop = time.monotonic() + 5.0
                tasks = [asyncio.ensure_future(client_loop(client, stop)) for _ in range(8)]
                await asyncio.sleep(1.0)
                moved = time.monotonic()
                await asyncio.to_thread(registry.set_alias, "hgb/2", "production")
                await asyncio.gather(*tasks)
                return moved

        moved_at = asyncio.run(main())
        statuses = {status for _, status, _ in seen}
        assert statuses == {200}, f"failed requests: {[s for s in seen if s[1] != 200][:5]}"
        assert len(seen) > 100
        first_new = min(t for t, _, v in seen if v == "2")
        assert first_new - moved_at < 2.0
        assert all(v == "2" for t, _, v in seen if t > first_new + 0.5)
        admin = httpx.get(f"{server.url}/admin/models").json()
        assert admin[0]["version"] == "2" and admin[0]["swaps"] == 1

        # a version that cannot load leaves the old one serving and ready
        v3 = registry.register(
            served_home.registry().load("hgb/1").predictor.model,
            name="hgb",  # type: ignore[attr-defined]
            data=served_home.X,
        )
        blob = Path(registry.artifacts.path_of(v3.file("model").sha256))  # type: ignore[union-attr]
        blob.write_bytes(b"corrupted")
        registry.set_alias("hgb/3", "production")
        deadline = time.monotonic() + 10
        failed = 0.0
        while time.monotonic() < deadline and failed == 0:
            time.sleep(0.3)
            metrics = httpx.get(f"{server.url}/metrics").text
            failed = _metric_or_zero(
                metrics, 'modelyard_model_loads_total{model="hgb",result="failed",version="3"}'
            )
        assert failed == 1
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
        still = httpx.post(f"{server.url}/v2/models/hgb/infer", json=body)
        assert still.status_code == 200 and still.headers["x-model-version"] == "2"
        assert "could not swap" in server.log.read_text()
    registry.set_alias("hgb/1", "production", reason="test end")


def _metric_or_zero(text: str, name: str) -> float:
    try:
        return _metric(text, name)
    except AssertionError:
        return 0.0


def test_overload_timeout_and_model_failure(served_home: ServedHome) -> None:
    with Server(served_home.home, "slow/1", "picky/1", "--trust-pickle", "--max-batch-size", "1",
                "--max-queue", "2", "--timeout-ms", "2000") as server:  # fmt: skip

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as client:
                return await asyncio.gather(
                    *(client.post(f"{server.url}/v2/models/slow/infer", json=xy_body([1.0]))
                      for _ in range(8))
                )  # fmt: skip

        responses = asyncio.run(burst())
        codes = sorted(r.status_code for r in responses)
        assert 200 in codes and 503 in codes, codes
        refused = next(r for r in responses if r.status_code == 503)
        assert refused.headers["retry-after"] == "1" and "queue is full" in refused.json()["error"]

        async def late() -> httpx.Response:
            async with httpx.AsyncClient(timeout=30) as client:
                calls = [client.post(f"{server.url}/v2/models/slow/infer", json=xy_body([2.0]))
                         for _ in range(3)]  # fmt: skip
                return max(await asyncio.gather(*calls), key=lambda r: r.status_code)

        slowest = late()
        answer = asyncio.run(slowest)
        assert answer.status_code in (200, 503, 504)

        bad = httpx.post(f"{server.url}/v2/models/picky/infer", json=xy_body([-1.0]), timeout=30)
        assert bad.status_code == 500 and "negative values are not allowed" in bad.json()["error"]
        good = httpx.post(f"{server.url}/v2/models/picky/infer", json=xy_body([3.0]), timeout=30)
        assert good.status_code == 200 and good.json()["outputs"][0]["data"] == [3.0]
    assert "model failed on a batch" in server.log.read_text()


def test_deadline_gives_504(served_home: ServedHome) -> None:
    with Server(served_home.home, "slow/1", "--trust-pickle", "--timeout-ms", "100") as server:
        response = httpx.post(f"{server.url}/v2/models/slow/infer", json=xy_body([1.0]))
        assert response.status_code == 504 and "within 100 ms" in response.json()["error"]


def test_sigterm_finishes_in_flight_requests_and_exits_0(served_home: ServedHome) -> None:
    server = Server(served_home.home, "slow/1", "--trust-pickle", "--max-batch-size", "2")
    server.wait_ready()

    async def in_flight() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            calls = [asyncio.ensure_future(
                client.post(f"{server.url}/v2/models/slow/infer", json=xy_body([float(i)])))
                for i in range(6)]  # fmt: skip
            await asyncio.sleep(0.15)
            server.proc.send_signal(15)
            return await asyncio.gather(*calls)

    responses = asyncio.run(in_flight())
    assert [r.status_code for r in responses] == [200] * 6
    assert sorted(r.json()["outputs"][0]["data"][0] for r in responses) == list(range(6))
    started = time.monotonic()
    assert server.proc.wait(30) == 0
    assert time.monotonic() - started < 30
    server.stop()


def test_token_matrix(served_home: ServedHome) -> None:
    env = server_env(served_home.home)
    yard = str(Path(sys.executable).parent / "yard")

    def token(*args: str) -> str:
        out = subprocess.run([yard, "tokens", "create", *args], env=env, capture_output=True,
                             text=True, check=True)  # fmt: skip
        return out.stdout.strip().splitlines()[0]

    predict_any = token("--scope", "predict")
    predict_lin = token("--scope", "predict", "--model", "lin")
    predict_other = token("--scope", "predict", "--model", "mixed")
    admin = token("--scope", "admin", "--expires", "30d")
    revoked = token("--scope", "predict")
    listed = subprocess.run([yard, "tokens", "list", "--json"], env=env, capture_output=True,
                            text=True, check=True).stdout  # fmt: skip
    assert predict_any.split("_")[2] not in listed  # secrets are never shown again
    subprocess.run([yard, "tokens", "revoke", revoked.split("_")[1]], env=env, check=True)
    body = lin_body(np.ones((1, 3)))
    with Server(served_home.home, "lin/1", "--auth", env=env) as server:

        def call(tok: str | None, path: str = "/v2/models/lin/infer") -> int:
            headers = {"Authorization": f"Bearer {tok}"} if tok else {}
            if path.endswith("infer"):
                return httpx.post(server.url + path, json=body, headers=headers).status_code
            return httpx.get(server.url + path, headers=headers).status_code

        assert call(None, "/v2/health/ready") == 200
        assert call(None, "/v2/health/live") == 200
        assert call(None) == 401
        assert call("myd_000000000000_" + "x" * 30) == 401
        assert call("not-a-token") == 401
        assert call(revoked) == 401
        assert call(predict_any) == 200
        assert call(predict_lin) == 200
        assert call(predict_other) == 403
        assert call(admin) == 200
        assert call(predict_any, "/admin/models") == 403
        assert call(admin, "/admin/models") == 200
        assert call(None, "/admin/models") == 401
        tampered = predict_any[:-2] + ("AA" if not predict_any.endswith("AA") else "BB")
        assert call(tampered) == 401
    log = server.log.read_text()
    assert predict_any not in log and admin not in log


def test_workers_share_the_port_and_metrics_add_up(served_home: ServedHome) -> None:
    body = lin_body(np.ones((1, 3)))
    with Server(served_home.home, "lin/1", "--workers", "2") as server:

        async def until_both_answered() -> tuple[set[str], int]:
            # the kernel spreads new connections over the two workers' accept calls: open
            # concurrent connections until both have answered (bounded in count and time)
            seen: set[str] = set()
            sent = 0
            deadline = time.monotonic() + 30
            while len(seen) < 2 and time.monotonic() < deadline and sent < 2000:
                async with httpx.AsyncClient(timeout=30) as client:
                    answers = await asyncio.gather(
                        *(client.post(f"{server.url}/v2/models/lin/infer", json=body)
                          for _ in range(16))
                    )  # fmt: skip
                sent += len(answers)
                assert all(a.status_code == 200 for a in answers)
                seen |= {a.headers["x-request-id"][:16] for a in answers}
            return seen, sent

        workers, sent = asyncio.run(until_both_answered())
        assert len(workers) == 2, "both workers should have answered"
        text = httpx.get(f"{server.url}/metrics").text
        total = _metric(
            text, 'modelyard_requests_total{model="lin",route="v2_infer",status="200",version="1"}'
        )
        assert total == sent  # counted once each, whichever worker answered


def test_unknown_reference_fails_before_binding(served_home: ServedHome) -> None:
    yard = str(Path(sys.executable).parent / "yard")
    proc = subprocess.run(
        [yard, "serve", "nope@production", "--port", "1"], env=server_env(served_home.home),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "error: No model named 'nope' is registered; run 'yard models list' to see the models."
    )


def test_the_server_runs_tree_ensembles_on_the_kernel_when_told(served_home: ServedHome) -> None:
    X = served_home.X.head(64)
    native = served_home.registry().load("hgb/1")
    body = {"dataframe_split": {"columns": list(X.columns), "data": X.to_numpy().tolist()}}
    env = server_env(served_home.home, MODELYARD_ONNX__TREE_KERNEL="always")
    with Server(served_home.home, "hgb/1", "--runtime", "onnx", env=env) as server:
        admin = httpx.get(f"{server.url}/admin/models").json()
        assert (admin[0]["runtime"], admin[0]["kernel"]) == ("onnx", "tree kernel")
        response = httpx.post(f"{server.url}/models/hgb/invocations", json=body, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == native.predict(X).tolist()
    with Server(served_home.home, "hgb/1", "--runtime", "onnx") as server:  # default: batch only
        assert httpx.get(f"{server.url}/admin/models").json()[0]["kernel"] == "onnxruntime"
