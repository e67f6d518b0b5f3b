"""The server's edge under hostile or careless clients (issue 11, B7-B14, E25): made-up names,
huge bodies, missing tokens and malformed headers get a 4xx and leave no trace (no metric label,
no log partition, no log line), against real ``yard serve`` processes on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.serving.tokens import create_token
from tests.integration._server import Server, server_env
from tests.integration.conftest import ServedHome

MAX_BODY = 4096
LIN_ROW = {"inputs": [{"name": n, "shape": [1], "datatype": "FP64", "data": [1.0]}
                      for n in "abc"]}  # fmt: skip


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """``server`` once ready, stopped on the way out even when it never got ready (on a loaded
    machine a server can take a minute to start)."""
    try:
        yield server.wait_ready(timeout_s=180)
    finally:
        server.stop()


class Tokens:
    def __init__(self, served_home: ServedHome) -> None:
        registry = served_home.registry()
        try:
            make = lambda **kw: create_token(registry.db, expires=None, created_by="test", **kw)[0]  # noqa: E731
            self.any = make(scope="predict", model=None)
            self.lin = make(scope="predict", model="lin")
            self.mixed = make(scope="predict", model="mixed")
            self.admin = make(scope="admin", model=None)
        finally:
            registry.close()

    @staticmethod
    def header(token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.fixture(scope="module")
def tokens(served_home: ServedHome) -> Tokens:
    return Tokens(served_home)


@pytest.fixture(scope="module")
def log_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edge-log")


@pytest.fixture(scope="module")
def guarded(served_home: ServedHome, log_root: Path) -> Iterator[Server]:
    """lin/1 under --auth, logging predictions, with a 4 KiB body limit."""
    env = server_env(
        served_home.home, MODELYARD_MONITORING__LOG_ROOT=str(log_root),
        MODELYARD_SERVING__MAX_BODY_BYTES=str(MAX_BODY),
    )  # fmt: skip
    with running(
        Server(served_home.home, "lin/1", "--auth", "--log-predictions", env=env)
    ) as server:
        yield server


def raw(server: Server, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send ``head`` (request line and headers) and ``body`` over a socket; the answer's status
    and body. A server that waited for more of the body would time out here."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head_part, _, rest = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in head_part.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )  # fmt: skip
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    return int(head_part.split(b" ")[1]), rest


def test_a_token_is_checked_before_any_body_is_read(guarded: Server, tokens: Tokens) -> None:
    for path in ("/v2/models/lin/infer", "/models/lin/invocations", "/v1/labels"):
        # the body never comes: the answer does not wait for it
        status, body = raw(guarded, f"POST {path} HTTP/1.1\nHost: x\nContent-Length: 4000\n")
        assert status == 401 and b"needs a token" in body, (path, body)
        status, _ = raw(guarded, f"POST {path} HTTP/1.1\nHost: x\nContent-Length: 999999999\n")
        assert status == 401, path


def test_a_body_over_the_limit_is_refused_with_413(guarded: Server, tokens: Tokens) -> None:
    auth = f"Authorization: Bearer {tokens.any}"
    for path in ("/v2/models/lin/infer", "/models/lin/invocations", "/v1/labels"):
        status, body = raw(
            guarded, f"POST {path} HTTP/1.1\nHost: x\n{auth}\nContent-Length: 999999999\n"
        )
        assert status == 413 and b"limit of 4096 bytes" in body, (path, body)
        # streamed: no Content-Length, refused once the chunks pass the limit
        chunks = b"".join(b"%x\r\n%s\r\n" % (1000, b" " * 1000) for _ in range(5))
        status, body = raw(
            guarded, f"POST {path} HTTP/1.1\nHost: x\n{auth}\nTransfer-Encoding: chunked\n",
            chunks,
        )  # fmt: skip
        assert status == 413 and b"serving.max_body_bytes" in body, (path, body)
    ok = httpx.post(f"{guarded.url}/v2/models/lin/infer", json=LIN_ROW,
                    headers=Tokens.header(tokens.any))  # fmt: skip
    assert ok.status_code == 200 and ok.json()["outputs"][0]["data"] == [pytest.approx(111.0)]


def test_made_up_names_grow_no_metric_and_no_log_partition(
    served_home: ServedHome, tokens: Tokens, tmp_path: Path
) -> None:
    env = server_env(served_home.home, MODELYARD_MONITORING__LOG_ROOT=str(tmp_path))
    guarded = Server(served_home.home, "lin/1", "--auth", "--log-predictions", env=env)
    try:
        guarded.wait_ready(timeout_s=180)
        _made_up_names(guarded, tokens)
    finally:
        guarded.stop()  # flushes the prediction log
    partitions = {p.name for p in tmp_path.iterdir()}
    assert partitions <= {"deployment=lin"}, partitions
    assert "madeup" not in guarded.log.read_text()


def _made_up_names(guarded: Server, tokens: Tokens) -> None:
    def metrics() -> str:
        return httpx.get(f"{guarded.url}/metrics", headers=Tokens.header(tokens.admin)).text

    async def burst(prefix: str, count: int) -> set[int]:
        statuses: set[int] = set()
        async with httpx.AsyncClient(base_url=guarded.url, timeout=30) as client:
            for start in range(0, count, 50):
                calls = []
                for i in range(start, min(start + 50, count)):
                    name = f"{prefix}-{i}-{uuid.uuid4().hex[:6]}"
                    with_token = Tokens.header(tokens.any) if i % 3 == 0 else {}
                    calls += [
                        client.post(f"/v2/models/{name}/infer", json=LIN_ROW, headers=with_token),
                        client.post(f"/models/{name}/invocations", json={"instances": [[1, 2]]},
                                    headers=with_token),
                        client.get(f"/v2/models/{name}", headers=with_token),
                        client.get(f"/v2/models/{name}/versions/1/ready", headers=with_token),
                    ]  # fmt: skip
                statuses |= {r.status_code for r in await asyncio.gather(*calls)}
        return statuses

    assert asyncio.run(burst("warm", 6)) == {401, 404}  # every (route, status) series exists
    before = metrics()
    assert asyncio.run(burst("madeup", 300)) == {401, 404}
    after = metrics()
    assert "madeup" not in after and "warm" not in after
    assert len(after) - len(before) < 2000, len(after) - len(before)
    # a request that failed auth for a served name is no label either
    assert httpx.post(f"{guarded.url}/v2/models/lin/infer", json=LIN_ROW).status_code == 401
    refused = [m for m in metrics().splitlines() if 'model="lin"' in m and 'status="401"' in m]
    assert not refused, refused


def test_metadata_and_readiness_need_a_token_for_that_model(
    guarded: Server, tokens: Tokens
) -> None:
    paths = ("/v2/models/lin", "/v2/models/lin/ready", "/v2/models/lin/versions/1",
             "/v2/models/lin/versions/1/ready")  # fmt: skip
    for path in paths:
        get = lambda token: httpx.get(guarded.url + path, headers=Tokens.header(token))  # noqa: E731,B023
        assert get(None).status_code == 401, path
        assert get(tokens.mixed).status_code == 403, path
        assert get(tokens.lin).status_code == 200, path
        assert get(tokens.any).status_code == 200, path
    for path in ("/metrics", "/openapi.json", "/docs"):
        get = lambda token: httpx.get(guarded.url + path, headers=Tokens.header(token))  # noqa: E731,B023
        assert get(None).status_code == 401, path
        assert get(tokens.lin).status_code == 403, path  # it lists every model
        assert get(tokens.any).status_code == 200, path
        assert get(tokens.admin).status_code == 200, path
    for path in ("/v2/health/live", "/v2/health/ready", "/ping", "/health", "/v2"):
        assert httpx.get(guarded.url + path).status_code == 200, path


def test_open_metrics_is_an_explicit_setting(served_home: ServedHome) -> None:
    with running(Server(served_home.home, "lin/1", "--auth", "--open-metrics")) as server:
        assert httpx.get(f"{server.url}/metrics").status_code == 200
        assert httpx.get(f"{server.url}/openapi.json").status_code == 401
        assert httpx.get(f"{server.url}/v2/models/lin").status_code == 401


def test_malformed_headers_and_labels_get_400_naming_the_field(
    guarded: Server, tokens: Tokens, log_root: Path
) -> None:
    auth = Tokens.header(tokens.any)
    body = httpx.Request("POST", "http://x", json=LIN_ROW).content
    for value in ("abc", "-1", str(len(body) + 1), "1e3"):
        r = httpx.post(f"{guarded.url}/v2/models/lin/infer", content=body,
                       headers=auth | {"Inference-Header-Content-Length": value})  # fmt: skip
        assert r.status_code == 400 and "Inference-Header-Content-Length" in r.json()["error"]
    labels = f"{guarded.url}/v1/labels"
    huge_row = {"deployment": "lin", "labels": [{"request_id": "r", "label": 1, "row": 2**63}]}
    r = httpx.post(labels, json=huge_row, headers=auth)
    assert r.status_code == 400 and "row" in r.json()["error"], r.text
    one = [{"request_id": "r", "label": 1}]
    for name in ("x" * 300, "../lin", "a\nb", ""):
        r = httpx.post(labels, json={"deployment": name, "labels": one}, headers=auth)
        assert r.status_code == 400 and "deployment" in r.json()["error"], (name, r.text)
    labelled = log_root / "labels"
    assert not labelled.exists() or {p.name for p in labelled.iterdir()} <= {"deployment=lin"}
    # an unknown deployment: 404, and the answer does not show where the server keeps its files
    r = httpx.post(labels, json={"deployment": "never-logged", "labels": one}, headers=auth)
    assert r.status_code == 404 and "never-logged" in r.json()["error"]
    assert str(log_root) not in r.text and "/" not in r.json()["error"]


def test_an_encoded_newline_in_a_name_forges_no_log_line(guarded: Server, tokens: Tokens) -> None:
    forged = "x%00%0AWARNING%20forged%20line"
    for headers in ({}, Tokens.header(tokens.any)):
        httpx.post(f"{guarded.url}/v2/models/{forged}/infer", json=LIN_ROW, headers=headers)
        httpx.post(f"{guarded.url}/models/{forged}/invocations", json={"instances": [[1]]},
                   headers=headers)  # fmt: skip
        httpx.get(f"{guarded.url}/v2/models/{forged}", headers=headers)
        httpx.get(f"{guarded.url}/{forged}", headers=headers)
    time.sleep(1.5)  # one flush of the prediction log, which wrote failed requests' names
    log = guarded.log.read_text()
    assert "forged" not in log, log[-2000:]


def test_wrong_paths_get_404_and_wrong_methods_name_the_one_allowed(guarded: Server) -> None:
    r = httpx.post(f"{guarded.url}/v2//models/lin/infer", json=LIN_ROW)
    assert r.status_code == 404, r.text
    r = httpx.post(f"{guarded.url}/v2/health/live")
    assert r.status_code == 405 and r.json()["error"] == "Method POST is not allowed here; use GET."
    assert r.headers["allow"] == "GET, HEAD"  # RFC 9110: a 405 lists what the route takes
    r = httpx.put(f"{guarded.url}/v2/models/lin/infer", json=LIN_ROW)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    # HEAD goes where GET does: the GET answer's head, no body
    head = httpx.head(f"{guarded.url}/v2/health/ready")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(
        len(httpx.get(f"{guarded.url}/v2/health/ready").content)
    )


def test_a_401_names_the_scheme_it_wants(guarded: Server) -> None:
    r = httpx.post(f"{guarded.url}/v2/models/lin/infer", json=LIN_ROW)
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="modelyard"'


def test_readiness_is_503_while_the_models_load(served_home: ServedHome) -> None:
    """The application before its start-up (the models not loaded yet): what a load balancer
    sees while a server starts."""
    from modelyard.serving.server import build_app
    from modelyard.settings import Settings

    switch = sys.getswitchinterval()
    app = build_app(Settings(home=served_home.home), ["lin/1"])
    try:

        async def ask() -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                paths = ("/v2/health/ready", "/ping", "/v2/models/lin/ready")
                return [await client.get(path) for path in paths]

        answers = asyncio.run(ask())
    finally:
        sys.setswitchinterval(switch)
        app.hub.registry.close()
    assert [r.status_code for r in answers] == [503, 503, 503]
    assert answers[0].json() == {"ready": False}
    assert "still loading" in answers[2].json()["error"]
