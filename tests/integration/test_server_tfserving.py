"""TF Serving's REST API as a front door (issue 12), against a real ``yard serve`` process: the
requests a TF Serving client sends (``instances`` rows, ``inputs`` columns, version and label
paths) and TF Serving's answers (``predictions``/``outputs``, ``model_version_status``,
``{"error": ...}``)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.integration._server import Server
from tests.integration.conftest import ServedHome


@pytest.fixture(scope="module")
def server(served_home: ServedHome) -> Iterator[Server]:
    with Server(served_home.home, "hgb@production", "lin/1", "mixed/1", "--runtime", "native") as s:
        yield s


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def test_model_status_by_name_version_and_label(client: httpx.Client) -> None:
    available = {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE",
             "status": {"error_code": "OK", "error_message": ""}}
        ]
    }  # fmt: skip
    for path in ("/v1/models/hgb", "/v1/models/hgb/versions/1", "/v1/models/hgb/labels/production"):
        response = client.get(path)
        assert response.status_code == 200, (path, response.text)
        assert response.json() == available
    missing = client.get("/v1/models/hgb/versions/9")
    assert missing.status_code == 404 and "version 9" in missing.json()["error"]
    unlabelled = client.get("/v1/models/hgb/labels/staging")
    assert unlabelled.status_code == 404
    assert "not served under label 'staging'" in unlabelled.json()["error"]
    pinned = client.get("/v1/models/lin/labels/production")  # lin/1 follows no label
    assert pinned.status_code == 404 and "serve it as lin@production" in pinned.json()["error"]
    unknown = client.get("/v1/models/nope")
    assert unknown.status_code == 404 and "'nope' is not served" in unknown.json()["error"]


def test_metadata_is_a_serving_default_signature(client: httpx.Client) -> None:
    body = client.get("/v1/models/mixed/metadata").json()
    assert body["model_spec"] == {"name": "mixed", "signature_name": "", "version": "1"}
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert {k: v["dtype"] for k, v in signature["inputs"].items()} == {
        "age": "DT_DOUBLE", "city": "DT_STRING",
    }  # fmt: skip
    assert list(signature["outputs"]) == ["predict"]
    assert signature["outputs"]["predict"]["dtype"] == "DT_INT64"
    assert signature["method_name"] == "tensorflow/serving/predict"
    # each other output is a signature of its own, with the same inputs
    proba = body["metadata"]["signature_def"]["signature_def"]["predict_proba"]
    assert proba["inputs"] == signature["inputs"]
    assert proba["outputs"]["predict_proba"]["dtype"] == "DT_DOUBLE"
    assert client.get("/v1/models/hgb/versions/1/metadata").status_code == 200


def test_a_signature_name_picks_the_output(client: httpx.Client, served_home: ServedHome) -> None:
    X = served_home.X.iloc[:3]
    want = served_home.registry().load("hgb/1").predict_proba(X)
    rows = {"instances": X.to_numpy().tolist(), "signature_name": "predict_proba"}
    answer = client.post("/v1/models/hgb:predict", json=rows)
    assert answer.status_code == 200, answer.text
    assert np.allclose(answer.json()["predictions"], want)
    columns = {"inputs": {c: X[c].tolist() for c in X.columns}, "signature_name": "predict_proba"}
    assert np.allclose(client.post("/v1/models/hgb:predict", json=columns).json()["outputs"], want)
    rows = {"instances": [[1, 1, 0]], "signature_name": "predict_proba"}
    lin = client.post("/v1/models/lin:predict", json=rows)
    assert lin.status_code == 400
    assert lin.json()["error"] == (
        "'signature_name' is 'predict_proba'; model 'lin' has the signatures serving_default "
        "(or leave it out for serving_default)."
    )


def test_predict_rows_and_columns(client: httpx.Client, served_home: ServedHome) -> None:
    X = served_home.X.iloc[:4]
    expected = served_home.registry().load("hgb/1").predict(X).tolist()
    rows = {"instances": X.to_numpy().tolist()}
    for path in ("/v1/models/hgb:predict", "/v1/models/hgb/versions/1:predict",
                 "/v1/models/hgb/labels/production:predict"):  # fmt: skip
        response = client.post(path, json=rows)
        assert response.status_code == 200, (path, response.text)
        assert response.json() == {"predictions": expected}
        assert response.headers["x-model-version"] == "1"
    records = {"instances": X.to_dict(orient="records"), "signature_name": "serving_default"}
    assert client.post("/v1/models/hgb:predict", json=records).json()["predictions"] == expected
    columns = {"inputs": {c: X[c].tolist() for c in X.columns}}
    assert client.post("/v1/models/hgb:predict", json=columns).json() == {"outputs": expected}
    one_tensor = {"inputs": {"x": X.to_numpy().tolist()}}
    assert client.post("/v1/models/hgb:predict", json=one_tensor).json()["outputs"] == expected
    mixed = pd.DataFrame({"age": [30.0, 60.0], "city": ["rome", "oslo"]})
    want = served_home.registry().load("mixed/1").predict(mixed).tolist()
    answer = client.post("/v1/models/mixed:predict", json={"instances": mixed.to_dict("records")})
    assert answer.json() == {"predictions": want}
    lin = client.post("/v1/models/lin:predict", json={"inputs": {"a": [1], "b": [1], "c": [0]}})
    assert np.allclose(lin.json()["outputs"], [11.0])


def test_binary_values_come_as_b64(client: httpx.Client) -> None:
    rome, oslo = (base64.b64encode(c.encode()).decode() for c in ("rome", "oslo"))
    rows = {"instances": [{"age": 30.0, "city": {"b64": rome}},
                          {"age": 60.0, "city": {"b64": oslo}}]}  # fmt: skip
    plain = {"instances": [{"age": 30.0, "city": "rome"}, {"age": 60.0, "city": "oslo"}]}
    expected = client.post("/v1/models/mixed:predict", json=plain).json()["predictions"]
    assert client.post("/v1/models/mixed:predict", json=rows).json()["predictions"] == expected
    columns = {"inputs": {"age": [30.0, 60.0], "city": [{"b64": rome}, {"b64": oslo}]}}
    assert client.post("/v1/models/mixed:predict", json=columns).json()["outputs"] == expected
    bad = client.post("/v1/models/mixed:predict",
                      json={"instances": [{"age": 1.0, "city": {"b64": "%%%"}}]})  # fmt: skip
    assert bad.status_code == 400 and "not base64" in bad.json()["error"]


#: One row's 20 values given flat: TF Serving reads 20 instances of one value each.
FLAT_ROW = b'{"instances": [' + b", ".join([b"1"] * 20) + b"]}"


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{", 400, "not valid JSON"),
        (b"[1]", 400, "must be a JSON object with 'instances' or 'inputs'"),
        (b'{"instances": [[1]], "inputs": {}}', 400, "exactly one of instances, inputs"),
        (b'{"instances": [[1]], "extra": 1}', 400, "unknown 'extra'"),
        (b'{"instances": {"f0": 1}}', 400, "send a list of rows"),
        (b'{"instances": [[1, 2]]}', 400, "Input 'instances' has shape [1, 2]"),
        (FLAT_ROW, 400, "'instances' is a flat list of 20 values, one per row"),
        (b'{"instances": [[1]], "signature_name": "classify_x"}', 400, "'classify_x'"),
        (b'{"inputs": {}}', 400, "'inputs' is empty"),
        (b'{"instances": ' + b"[" * 200 + b"]" * 200 + b"}", 400, "'instances' is not a table"),
        (b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "deep at $.instances"),
    ],
)
def test_bad_bodies_get_the_error_naming_the_field(
    client: httpx.Client, body: bytes, status: int, needle: str
) -> None:
    response = client.post("/v1/models/hgb:predict", content=body)
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]


def test_wrong_paths_and_methods(client: httpx.Client) -> None:
    row = {"instances": [[0.0] * 20]}
    classify = client.post("/v1/models/hgb:classify", json=row)
    assert classify.status_code == 404 and ":predict" in classify.json()["error"]
    assert client.post("/v1/models/nope:predict", json=row).status_code == 404
    long = client.post(f"/v2/models/{'n' * 5000}/infer", json=row)  # not echoed whole
    assert long.status_code == 404 and len(long.json()["error"]) < 200, long.text
    assert client.get("/v1/models/hgb:predict").status_code == 405
    assert client.post("/v1/models/hgb", json=row).status_code == 405
    assert client.get("/v1/models/hgb/versions").status_code == 404
    assert client.get("/v1/models/hgb/versions/1/extra").status_code == 404
