"""The managed endpoints' container contracts against a real ``yard serve`` process (issue 13):
SageMaker's (``GET /ping``, ``POST /invocations`` with JSON or CSV, a CSV body with or without
its header) and Vertex AI's (``AIP_HTTP_PORT``, ``AIP_HEALTH_ROUTE``, ``AIP_PREDICT_ROUTE``,
``{"instances": ..., "parameters": ...}`` answered ``{"predictions": ...}``), called as each
platform's documentation says it will call the container."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import httpx
import pytest

from tests.integration._server import YARD, Server, server_env
from tests.integration.conftest import ServedHome

HEALTH = "/v1/endpoints/4242/deployedModels/77"
PREDICT = "/v1/endpoints/4242/deployedModels/77:predict"


@pytest.fixture(scope="module")
def sagemaker(served_home: ServedHome) -> Iterator[httpx.Client]:
    server = Server(served_home.home, "hgb@production", "--runtime", "native")
    with server, httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def vertex(served_home: ServedHome) -> Iterator[httpx.Client]:
    env = server_env(served_home.home, AIP_HEALTH_ROUTE=HEALTH, AIP_PREDICT_ROUTE=PREDICT)
    # started as Vertex AI starts it: the port in AIP_HTTP_PORT, no --port
    server = Server(
        served_home.home, "hgb@production", "--runtime", "native", env=env,
        port_env="AIP_HTTP_PORT",
    )  # fmt: skip
    with server, httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def expected(served_home: ServedHome, n: int = 5) -> list[int]:
    return [int(v) for v in served_home.registry().load("hgb/1").predict(served_home.X[:n])]


def test_sagemaker_ping_and_invocations_in_json(
    sagemaker: httpx.Client, served_home: ServedHome
) -> None:
    ping = sagemaker.get("/ping")
    assert ping.status_code == 200 and ping.json() == {"ready": True}
    X = served_home.X.iloc[:5]
    for body in ({"instances": X.to_numpy().tolist()},
                 {"dataframe_split": X.to_dict(orient="split", index=False)}):  # fmt: skip
        answer = sagemaker.post("/invocations", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": expected(served_home)}


def test_sagemaker_csv_with_and_without_a_header(
    sagemaker: httpx.Client, served_home: ServedHome
) -> None:
    X = served_home.X.iloc[:5]
    headed = X.to_csv(index=False)
    bare = X.to_csv(index=False, header=False)  # what SageMaker's clients send
    reordered = X[X.columns[::-1]].to_csv(index=False)
    for body in (headed, bare, reordered):
        answer = sagemaker.post(
            "/invocations", content=body, headers={"content-type": "text/csv; charset=utf-8"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": expected(served_home)}
    narrow = X.iloc[:, :3].to_csv(index=False, header=False)
    refused = sagemaker.post("/invocations", content=narrow, headers={"content-type": "text/csv"})
    assert refused.status_code == 400
    assert "nor a row of 20 values" in refused.json()["error"] and "it has 3" in refused.text


def test_vertex_routes_and_port_come_from_its_environment(
    vertex: httpx.Client, served_home: ServedHome
) -> None:
    health = vertex.get(HEALTH)
    assert health.status_code == 200 and health.json() == {"ready": True}
    X = served_home.X.iloc[:5]
    for instances in (X.to_numpy().tolist(), X.to_dict(orient="records")):
        answer = vertex.post(PREDICT, json={"instances": instances, "parameters": {"k": 1}})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": expected(served_home)}
    without_parameters = vertex.post(PREDICT, json={"instances": X.to_numpy().tolist()})
    assert without_parameters.json() == {"predictions": expected(served_home)}
    metrics = vertex.get("/metrics").text
    assert 'route="vertex_predict"' in metrics


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"instances": {"f0": 1}}, "'instances' is"),
        ({"instances": [[1.0] * 20], "parameters": [1]}, "'parameters' is"),
        ({"instances": [[1.0] * 20], "signature_name": "x"}, "unknown 'signature_name'"),
        ({"inputs": [[1.0] * 20]}, "exactly one of instances"),
        ([[1.0] * 20], "JSON object with 'instances'"),
        ({"instances": [[1.0] * 19]}, "19"),
    ],
    ids=[
        "instances-object",
        "parameters-list",
        "unknown-key",
        "no-instances",
        "not-object",
        "short-row",
    ],
)
def test_vertex_bad_requests_are_400_naming_the_field(
    vertex: httpx.Client, body: object, says: str
) -> None:
    answer = vertex.post(PREDICT, json=body)
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"]


def test_vertex_predict_route_takes_only_post(vertex: httpx.Client) -> None:
    assert vertex.get(PREDICT).status_code == 405
    assert vertex.post(HEALTH + ":explain", json={}).status_code == 404


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"AIP_HTTP_PORT": "http"}, "AIP_HTTP_PORT is 'http'; set it to a port number"),
        ({"AIP_PREDICT_ROUTE": "predict"}, "AIP_PREDICT_ROUTE is 'predict'; set it to a path"),
        ({"AIP_HEALTH_ROUTE": "/health?x=1"}, "AIP_HEALTH_ROUTE is '/health?x=1'"),
    ],
    ids=["port", "predict-route", "health-route"],
)
def test_a_bad_vertex_variable_stops_the_start_naming_it(
    served_home: ServedHome, env: dict[str, str], says: str
) -> None:
    out = subprocess.run(
        [YARD, "serve", "hgb@production"], env=server_env(served_home.home, **env),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {says}"), out.stderr
