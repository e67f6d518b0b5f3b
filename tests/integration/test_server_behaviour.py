"""Batching, hot swaps, overload, deadlines, model failures, SIGTERM and tokens, against real
``yard serve`` processes on loopback."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.serving.metrics import FLUSH_S
from tests.integration._server import Server, server_env
from tests.integration.conftest import ServedHome


def lin_body(rows: np.ndarray) -> dict[str, object]:
    return {"inputs": [{"name": "x", "shape": list(rows.shape), "datatype": "FP64",
                        "data": rows.ravel().tolist()}]}  # fmt: skip


def xy_body(values: list[float], *, wait_s: float = 0.0) -> dict[str, object]:
    """Rows (x, y) with y = ``wait_s`` (how long the ``sleepy`` model sleeps)."""
    return {"inputs": [{"name": "x", "shape": [len(values)], "datatype": "FP64", "data": values},
                       {"name": "y", "shape": [len(values)], "datatype": "FP64",
                        "data": [wait_s] * len(values)}]}  # fmt: skip


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


def test_hot_swap_under_load_fails_no_request(own_home: ServedHome) -> None:
    env = server_env(own_home.home, MODELYARD_SERVING__POLL_INTERVAL_S="0.2")
    registry = own_home.registry()
    registry.set_alias("hgb/1", "production", reason="test start")
    X = own_home.X.head(2)
    body = {"inputs": [{"name": "x", "shape": [2, 20], "datatype": "FP64",
                        "data": X.to_numpy().tolist()}]}  # fmt: skip
    # per client, the versions that answered it, in order
    seen: list[list[tuple[int, str | None]]] = [[] for _ in range(8)]
    with Server(own_home.home, "hgb@production", env=env) as server:

        async def client_loop(client: httpx.AsyncClient, mine: list[tuple[int, str | None]],
                              done: asyncio.Event) -> None:  # fmt: skip
            while not done.is_set():
                r = await client.post(f"{server.url}/v2/models/hgb/infer", json=body)
                mine.append((r.status_code, r.headers.get("x-model-version")))

        def answered_by_2() -> int:
            return sum(v == "2" for mine in seen for _, v in mine)

        async def main() -> None:
            done = asyncio.Event()
            async with httpx.AsyncClient(timeout=30) as client:
                tasks = [asyncio.ensure_future(client_loop(client, mine, done)) for mine in seen]
                try:
                    await until(lambda: sum(map(len, seen)) >= 50, timeout_s=60)
                    await asyncio.to_thread(registry.set_alias, "hgb/2", "production")
                    # the swap happens under load: every client keeps asking until it has been
                    # answered by version 2 several times (generous deadline: 2 busy cores)
                    await until(
                        lambda: all(sum(v == "2" for _, v in mine) >= 5 for mine in seen),
                        timeout_s=120,
                    )
                finally:
                    done.set()
                    await asyncio.gather(*tasks)

        asyncio.run(main())
        answers = [answer for mine in seen for answer in mine]
        failed = [a for a in answers if a[0] != 200]
        assert failed == [], f"failed requests: {failed[:5]}"
        assert answers.count((200, "1")) >= 50 and answered_by_2() >= 40
        for mine in seen:  # once a client was answered by version 2, never by 1 again
            versions = [v for _, v in mine]
            assert versions == sorted(versions), versions
        admin = httpx.get(f"{server.url}/admin/models").json()
        assert admin[0]["version"] == "2" and admin[0]["swaps"] == 1

        # a version that cannot load leaves the old one serving and ready
        v3 = registry.register(
            own_home.registry().load("hgb/1").predictor.model,
            name="hgb",  # type: ignore[attr-defined]
            data=own_home.X,
        )
        blob = Path(registry.artifacts.path_of(v3.file("model").sha256))  # type: ignore[union-attr]
        blob.write_bytes(b"corrupted")
        registry.set_alias("hgb/3", "production")
        loads_failed = 'modelyard_model_loads_total{model="hgb",result="failed",version="3"}'
        wait_for(
            lambda: _metric_or_zero(httpx.get(f"{server.url}/metrics").text, loads_failed) > 0,
            timeout_s=60,
            what="the server to try version 3 and fail",
        )
        assert _metric(httpx.get(f"{server.url}/metrics").text, loads_failed) == 1
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
        still = httpx.post(f"{server.url}/v2/models/hgb/infer", json=body)
        assert still.status_code == 200 and still.headers["x-model-version"] == "2"
        assert "could not swap" in server.log.read_text()
    registry.close()


async def until(
    condition: Callable[[], bool],
    *,
    timeout_s: float,
    poll: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Wait (on the event loop) until ``condition()`` holds, awaiting ``poll()`` (which updates
    what the condition reads) between checks; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {timeout_s} s"
        await (poll() if poll is not None else asyncio.sleep(0.05))


def wait_for(condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    """Wait until ``condition()`` holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout_s} s for {what}"
        time.sleep(0.1)


def _metric_or_zero(text: str, name: str) -> float:
    try:
        return _metric(text, name)
    except AssertionError:
        return 0.0


def test_overload_timeout_and_model_failure(served_home: ServedHome) -> None:
    args = ["slow/1", "picky/1", "sleepy/1", "--trust-pickle", "--max-batch-size", "1",
            "--max-queue", "2", "--timeout-ms", "2000"]  # fmt: skip
    with Server(served_home.home, *args) as server:

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

        # a model slower than --timeout-ms: the running request and the one queued behind it
        # (two: the queue holds both, whichever the batcher has taken yet) are each answered
        # 504 at the deadline, not left waiting for the model
        async def too_slow() -> list[tuple[httpx.Response, float]]:
            async with httpx.AsyncClient(timeout=60) as client:

                async def timed() -> tuple[httpx.Response, float]:
                    started = time.monotonic()
                    response = await client.post(
                        f"{server.url}/v2/models/sleepy/infer", json=xy_body([1.0], wait_s=8.0)
                    )
                    return response, time.monotonic() - started

                return await asyncio.gather(timed(), timed())

        late = asyncio.run(too_slow())
        assert [r.status_code for r, _ in late] == [504, 504], [r.text for r, _ in late]
        assert {r.json()["error"] for r, _ in late} == {
            "The prediction did not finish within 2000 ms."
        }
        assert all(took < 7.0 for _, took in late), late  # the 8 s call was not waited for

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
    # one request at a time, each 1 s: the six are all in the server (one running, five queued)
    # for a whole second, and SIGTERM is sent only once the server shows them there
    server = Server(served_home.home, "sleepy/1", "--trust-pickle", "--max-batch-size", "1")
    server.wait_ready()

    def queued() -> int:
        return int(httpx.get(f"{server.url}/admin/models", timeout=5).json()[0]["queue_depth"])

    async def in_flight() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            calls = [asyncio.ensure_future(client.post(
                f"{server.url}/v2/models/sleepy/infer", json=xy_body([float(i)], wait_s=1.0)))
                for i in range(6)]  # fmt: skip
            await until(lambda: queued_now[-1] == 5, timeout_s=60, poll=poll_queue)
            server.proc.send_signal(signal.SIGTERM)
            return await asyncio.gather(*calls)

    queued_now = [0]

    async def poll_queue() -> None:
        queued_now.append(await asyncio.to_thread(queued))
        await asyncio.sleep(0.02)

    try:
        responses = asyncio.run(in_flight())
        assert [r.status_code for r in responses] == [200] * 6
        assert sorted(r.json()["outputs"][0]["data"][0] for r in responses) == list(range(6))
        assert server.proc.wait(60) == 0
    finally:
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
    # the whole secret (token_urlsafe may put "_" in it, and a bare split made this test flaky)
    assert predict_any.split("_", 2)[2] not in listed  # secrets are never shown again
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
        # counted once each, whichever worker answered; the worker that does not take the
        # scrape adds its last counts within metrics.FLUSH_S
        totals = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (not totals or totals[-1] != sent):
            text = httpx.get(f"{server.url}/metrics").text
            totals.append(_metric(
                text,
                'modelyard_requests_total{model="lin",protocol="http",route="v2_infer",status="200",version="1"}',
            ))  # fmt: skip
            time.sleep(FLUSH_S)
        assert totals[-1] == sent and max(totals) == sent, totals


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


def test_a_bad_serving_setting_is_one_line_before_binding(served_home: ServedHome) -> None:
    yard = str(Path(sys.executable).parent / "yard")
    env = server_env(served_home.home, MODELYARD_SERVING__KEEP_ALIVE_S="0")
    proc = subprocess.run(
        [yard, "serve", "hgb/1", "--port", "1"], env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "error: Invalid setting serving.keep_alive_s (Input should be greater than 0); fix it in "
        "modelyard.toml or the MODELYARD_ environment variables."
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
    batch_only = server_env(served_home.home, MODELYARD_ONNX__TREE_KERNEL="batch")
    with Server(served_home.home, "hgb/1", "--runtime", "onnx", env=batch_only) as server:
        assert httpx.get(f"{server.url}/admin/models").json()[0]["kernel"] == "onnxruntime"


def test_by_default_the_server_moves_tree_ensembles_onto_the_kernel_once_ready(
    served_home: ServedHome,
) -> None:
    """``onnx.tree_kernel = "auto"``: ready on onnxruntime, then on the kernel, answering all
    along with the same labels."""
    X = served_home.X.head(64)
    native = served_home.registry().load("hgb/1")
    body = {"dataframe_split": {"columns": list(X.columns), "data": X.to_numpy().tolist()}}
    with Server(served_home.home, "hgb/1", "--runtime", "onnx") as server:
        kernels = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            response = httpx.post(f"{server.url}/models/hgb/invocations", json=body, timeout=30)
            assert response.status_code == 200, response.text
            assert response.json()["predictions"] == native.predict(X).tolist()
            kernels.append(httpx.get(f"{server.url}/admin/models").json()[0]["kernel"])
            if kernels[-1] == "tree kernel":
                break
            time.sleep(0.2)
        assert kernels[-1] == "tree kernel", kernels
        assert set(kernels) <= {"onnxruntime", "tree kernel"}
        response = httpx.post(f"{server.url}/models/hgb/invocations", json=body, timeout=30)
        assert response.json()["predictions"] == native.predict(X).tolist()
        log = server.log.read_text()
        # built once the server answered (numba's import must not delay readiness)
        assert log.index("Application startup complete") < log.index(
            "hgb/1 runs on the tree kernel from now"
        )


def _exchange(sock: socket.socket, path: str) -> bytes:
    """One keep-alive GET on ``sock``: the answer's bytes (``b""`` once the server closed)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    return sock.recv(65536)


def test_idle_connections_outlive_proxies_idle_timeouts(served_home: ServedHome) -> None:
    """A connection left idle stays open ``serving.keep_alive_s`` (75 s by default), longer than
    a proxy's pool keeps it (60 s for AWS ALB and nginx), so that the proxy, not the server,
    closes it: a server closing a connection the proxy is about to reuse gives that request a
    502/503 (uvicorn's own default is 5 s; kserve/kserve#5446). A shorter setting closes it."""
    with (
        Server(served_home.home, "hgb/1") as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
    ):
        assert _exchange(sock, "/v2/health/live").startswith(b"HTTP/1.1 200")
        time.sleep(6.5)  # past uvicorn's 5 s
        assert _exchange(sock, "/v2/health/live").startswith(b"HTTP/1.1 200")
    env = server_env(served_home.home, MODELYARD_SERVING__KEEP_ALIVE_S="1")
    with (
        Server(served_home.home, "hgb/1", env=env) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
    ):
        assert _exchange(sock, "/v2/health/live").startswith(b"HTTP/1.1 200")
        time.sleep(2.5)
        assert sock.recv(65536) == b""  # closed by the server
