"""The Open Inference Protocol v2 and MLflow endpoints of a real ``yard serve`` process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.integration._server import Server
from tests.integration.conftest import ServedHome


@pytest.fixture(scope="module")
def server(served_home: ServedHome) -> Iterator[Server]:
    with Server(served_home.home, "hgb@production", "lin/1", "mixed/1", "--runtime", "native") as s:
        yield s


def infer(server: Server, model: str, body: object, **kw: object) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=30, **kw)  # type: ignore[arg-type]


def columns_body(X, rows: slice = slice(0, 3)) -> dict[str, object]:
    part = X.iloc[rows]
    return {"inputs": [{"name": c, "shape": [len(part)], "datatype": "FP64",
                        "data": part[c].tolist()} for c in X.columns]}  # fmt: skip


def test_server_metadata_and_health(server: Server) -> None:
    meta = httpx.get(f"{server.url}/v2").json()
    assert meta["name"] == "modelyard" and "version" in meta
    assert {"binary_tensor_data", "classification"} <= set(meta["extensions"])
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    model = httpx.get(f"{server.url}/v2/models/hgb").json()
    assert model["name"] == "hgb" and model["versions"] == ["1"]
    assert [i["name"] for i in model["inputs"]] == [f"f{i}" for i in range(20)]
    assert {i["datatype"] for i in model["inputs"]} == {"FP64"}
    assert all(i["shape"] == [-1] for i in model["inputs"])
    assert [o["name"] for o in model["outputs"]] == ["predict", "predict_proba"]
    assert httpx.get(f"{server.url}/v2/models/hgb/versions/1").json() == model
    ready = httpx.get(f"{server.url}/v2/models/hgb/versions/1/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    missing = httpx.get(f"{server.url}/v2/models/hgb/versions/9")
    assert missing.status_code == 404 and "version 9 is not served" in missing.json()["error"]
    unknown = httpx.get(f"{server.url}/v2/models/nope/ready")
    assert unknown.status_code == 404 and "'nope' is not served" in unknown.json()["error"]


def test_infer_per_column_and_matrix_forms(server: Server, served_home: ServedHome) -> None:
    X = served_home.X
    expected = served_home.registry().load("hgb/1")
    body = columns_body(X) | {"id": "req-7", "outputs": [{"name": "predict"},
                                                          {"name": "predict_proba"}]}  # fmt: skip
    response = infer(server, "hgb", body, headers={"X-Request-Id": "trace-1"})
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "trace-1"
    assert response.headers["x-model-version"] == "1"
    answer = response.json()
    assert answer["model_name"] == "hgb" and answer["model_version"] == "1"
    assert answer["id"] == "req-7"
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["predict"]["shape"] == [3] and outputs["predict"]["datatype"] == "INT64"
    assert outputs["predict"]["data"] == expected.predict(X.head(3)).tolist()
    assert outputs["predict_proba"]["shape"] == [3, 2]
    np.testing.assert_allclose(
        np.reshape(outputs["predict_proba"]["data"], (3, 2)), expected.predict_proba(X.head(3))
    )
    nested = {"inputs": [{"name": "x", "shape": [3, 20], "datatype": "FP64",
                          "data": X.head(3).to_numpy().tolist()}]}  # fmt: skip
    flat = {"inputs": [{"name": "x", "shape": [3, 20], "datatype": "FP64",
                        "data": X.head(3).to_numpy().ravel().tolist()}]}  # fmt: skip
    for form in (nested, flat):
        response = infer(server, "hgb", form)
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == outputs["predict"]["data"]
        assert "id" not in response.json()
    assert "x-request-id" in response.headers
    only_proba = infer(server, "hgb/versions/1", nested | {"outputs": [{"name": "predict_proba"}]})
    assert [o["name"] for o in only_proba.json()["outputs"]] == ["predict_proba"]


def test_text_columns(server: Server, served_home: ServedHome) -> None:
    mixed = served_home.mixed.head(4)
    body = {"inputs": [
        {"name": "age", "shape": [4], "datatype": "FP64", "data": mixed["age"].tolist()},
        {"name": "city", "shape": [4], "datatype": "BYTES", "data": mixed["city"].tolist()},
    ]}  # fmt: skip
    response = infer(server, "mixed", body)
    assert response.status_code == 200, response.text
    expected = served_home.registry().load("mixed/1").predict(mixed)
    assert response.json()["outputs"][0]["data"] == expected.tolist()
    body["inputs"][1] |= {"datatype": "FP64", "data": [1.0, 2.0, 3.0, 4.0]}  # type: ignore[index]
    bad = infer(server, "mixed", body)
    assert bad.status_code == 400 and "'city' takes text" in bad.json()["error"]


@pytest.mark.parametrize(
    ("mutate", "status", "message"),
    [
        (lambda b: b["inputs"].pop(3), 400, "missing f3"),
        (lambda b: b["inputs"].append({"name": "zz", "shape": [3], "datatype": "FP64",
                                       "data": [1, 2, 3]}), 400, "unexpected zz"),
        (lambda b: b["inputs"][0].update(datatype="BYTES", data=["a", "b", "c"]), 400, "'f0'"),
        (lambda b: b["inputs"][1].update(shape=[4]), 400, "Input 'f1' has 3 values but shape"),
        (lambda b: b["inputs"][2].update(data=[1.0, None, 2.0]), 400, "'f2' has missing values"),
        (lambda b: b["inputs"][2].update(datatype="FP99"), 400, "datatype 'FP99'"),
        (lambda b: b.update(outputs=[{"name": "explain"}]), 404, "no output 'explain'"),
        (lambda b: b.update(inputs=[]), 400, "no inputs"),
    ],
)  # fmt: skip
def test_bad_requests_name_the_input(server, served_home, mutate, status, message) -> None:
    body = columns_body(served_home.X)
    mutate(body)
    response = infer(server, "hgb", body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_protocol_errors(server: Server) -> None:
    raw = httpx.post(f"{server.url}/v2/models/hgb/infer", content=b"{not json", timeout=10)
    assert raw.status_code == 400 and "not valid JSON" in raw.json()["error"]
    assert infer(server, "nope", {"inputs": []}).status_code == 404
    wrong_method = httpx.get(f"{server.url}/v2/models/hgb/infer")
    assert wrong_method.status_code == 405
    assert httpx.get(f"{server.url}/no/such/route").status_code == 404


def test_mlflow_invocations(server: Server, served_home: ServedHome) -> None:
    X = served_home.X.head(4)
    expected = served_home.registry().load("hgb/1").predict(X).tolist()
    url = f"{server.url}/models/hgb/invocations"
    bodies = [
        {"dataframe_split": {"columns": list(X.columns), "data": X.to_numpy().tolist()}},
        {"dataframe_split": {"columns": list(X.columns[::-1]),
                             "data": X[X.columns[::-1]].to_numpy().tolist()}},
        {"dataframe_records": X.to_dict(orient="records")},
        {"instances": X.to_numpy().tolist()},
        {"inputs": X.to_dict(orient="list"), "params": {"anything": 1}},
    ]  # fmt: skip
    for body in bodies:
        response = httpx.post(url, json=body, timeout=30)
        assert response.status_code == 200, (body, response.text)
        assert response.json() == {"predictions": expected}
        assert response.headers["x-model-version"] == "1"
    csv = httpx.post(url, content=X.to_csv(index=False), headers={"Content-Type": "text/csv"})
    assert csv.json() == {"predictions": expected}
    assert httpx.post(url, content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
    both = httpx.post(url, json={"instances": [], "inputs": []})
    assert both.status_code == 400 and "exactly one of" in both.json()["error"]
    several = httpx.post(f"{server.url}/invocations", json={"instances": [[1]]})
    assert several.status_code == 404 and "/models/NAME/invocations" in several.json()["error"]


def test_metrics_openapi_and_docs(server: Server) -> None:
    infer(server, "lin", {"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]},
                                     {"name": "b", "shape": [1], "datatype": "FP64", "data": [0]},
                                     {"name": "c", "shape": [1], "datatype": "FP64",
                                      "data": [0]}]})  # fmt: skip
    text = httpx.get(f"{server.url}/metrics").text
    assert (
        'modelyard_requests_total{model="lin",protocol="http",route="v2_infer",status="200",version="1"}'
        in text
    )
    assert "modelyard_batch_rows_bucket" in text and "modelyard_model_loads_total" in text
    assert "modelyard_queue_wait_seconds_bucket" in text and "process_cpu_seconds_total" in text
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v2/models/{model_name}/infer" in spec["paths"]
    assert "modelyard" in httpx.get(f"{server.url}/docs").text


def test_standard_triton_client_works_unchanged(server: Server, served_home: ServedHome) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("hgb")
    meta = client.get_model_metadata("hgb")
    assert meta["name"] == "hgb"
    X = served_home.X.head(5)
    inputs = []
    for column in X.columns:
        tensor = triton.InferInput(column, [5], "FP64")
        tensor.set_data_from_numpy(X[column].to_numpy())  # binary by default
        inputs.append(tensor)
    result = client.infer("hgb", inputs, outputs=[triton.InferRequestedOutput("predict_proba")])
    expected = served_home.registry().load("hgb/1").predict_proba(X)
    np.testing.assert_allclose(result.as_numpy("predict_proba"), expected)


def test_schemathesis_finds_no_server_error(server: Server, tmp_path: Path) -> None:
    st = Path(sys.executable).parent / "schemathesis"
    proc = subprocess.run(
        [str(st), "run", f"{server.url}/openapi.json", "--checks", "not_a_server_error",
         "--max-examples", "30", "--no-color"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def _raw_exchange(server: Server, request: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """One request on a fresh connection: the answer's status line, headers and body."""
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = dict(line.split(b": ", 1) for line in lines[1:])
        while len(body) < int(headers[b"content-length"]):
            body += sock.recv(65536)
    return lines[0], headers, body


def test_the_short_path_answers_exactly_as_the_asgi_path(
    server: Server, served_home: ServedHome
) -> None:
    """A request with a Content-Length takes the server's short path (no ASGI cycle); the same
    request sent chunked takes the ASGI path. The answers are the same, byte for byte, apart
    from the date; so are the errors."""
    import json

    one_row = columns_body(served_home.X, slice(5, 6))
    for body, status in (
        (one_row, b"HTTP/1.1 200 OK"),
        (one_row | {"id": "abc", "outputs": [{"name": "predict_proba"}]}, b"HTTP/1.1 200 OK"),
        ({"inputs": one_row["inputs"][:19]}, b"HTTP/1.1 400 Bad Request"),  # type: ignore[index]
        ({"inputs": []}, b"HTTP/1.1 400 Bad Request"),
        (one_row | {"parameters": {"binary_data_output": True}}, b"HTTP/1.1 200 OK"),
        (
            one_row
            | {
                "outputs": [
                    {"name": "predict"},
                    {"name": "predict_proba", "parameters": {"binary_data": True}},
                ]
            },
            b"HTTP/1.1 200 OK",
        ),
        (
            one_row | {"outputs": [{"name": "predict", "parameters": {"binary_data": 1}}]},
            b"HTTP/1.1 400 Bad Request",
        ),
    ):
        raw = json.dumps(body).encode()
        head = b"POST /v2/models/hgb/infer HTTP/1.1\r\nhost: x\r\nx-request-id: same-id\r\n"
        short = _raw_exchange(server, head + b"content-length: %d\r\n\r\n%s" % (len(raw), raw))
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(raw), raw)
        asgi = _raw_exchange(server, head + b"transfer-encoding: chunked\r\n\r\n" + chunked)
        assert short[0] == asgi[0] == status, (short, asgi)
        assert short[2] == asgi[2]
        assert {k: v for k, v in short[1].items() if k != b"date"} == {
            k: v for k, v in asgi[1].items() if k != b"date"
        }
        assert short[1][b"x-request-id"] == b"same-id" and b"date" in short[1]


def test_escaped_names_and_queries_reach_the_same_model(
    server: Server, served_home: ServedHome
) -> None:
    """The short path leaves a name with ``%``, ``/`` or ``?`` to the ASGI path, which decodes
    it: ``%68gb`` is ``hgb``, a query string is ignored, and an escaped slash is no route."""
    import json

    raw = json.dumps(columns_body(served_home.X, slice(2, 3))).encode()
    answers = {}
    for path in (b"hgb/infer", b"%68gb/infer", b"hgb/infer?trace=1", b"a%2Fb/infer"):
        request = b"POST /v2/models/%s HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (
            path,
            len(raw),
            raw,
        )
        answers[path] = _raw_exchange(server, request)
    plain = answers[b"hgb/infer"]
    assert plain[0] == b"HTTP/1.1 200 OK", plain
    for path in (b"%68gb/infer", b"hgb/infer?trace=1"):
        assert answers[path][0] == plain[0] and answers[path][2] == plain[2], answers[path]
    status, _, body = answers[b"a%2Fb/infer"]
    assert status == b"HTTP/1.1 404 Not Found" and b"No route /v2/models/a/b/infer" in body, body


def _binary_answer(response: httpx.Response) -> tuple[dict[str, object], dict[str, np.ndarray]]:
    """An answer with Triton's binary outputs: its JSON part and each binary output's array,
    read from the bytes that follow the JSON in order."""
    import json

    assert response.headers["content-type"] == "application/octet-stream", response.headers
    length = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:length])
    rest = response.content[length:]
    arrays = {}
    for output in header["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            continue
        assert "data" not in output
        chunk, rest = rest[:size], rest[size:]
        dtype = {"INT64": "<i8", "FP64": "<f8"}[output["datatype"]]
        arrays[output["name"]] = np.frombuffer(chunk, dtype=dtype).reshape(output["shape"])
    assert rest == b""  # the binary outputs add up to the body
    return header, arrays


def test_binary_outputs_as_triton_answers_them(server: Server, served_home: ServedHome) -> None:
    """Triton's binary tensor data extension for outputs: ``binary_data_output`` for all
    outputs, ``binary_data`` per output (overriding it); the JSON part lists each binary output
    with its ``binary_data_size`` and no data, the bytes follow in order."""
    X = served_home.X.head(4)
    model = served_home.registry().load("hgb/1")
    body = columns_body(served_home.X, slice(0, 4))
    answer = infer(server, "hgb", body | {"parameters": {"binary_data_output": True}})
    assert answer.status_code == 200, answer.text
    header, arrays = _binary_answer(answer)
    assert header["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [4],
                                  "parameters": {"binary_data_size": 32}}]  # fmt: skip
    assert arrays["predict"].tolist() == model.predict(X).tolist()
    assert answer.headers["x-model-version"] == "1"
    mixed = body | {
        "parameters": {"binary_data_output": True},
        "outputs": [{"name": "predict", "parameters": {"binary_data": False}},
                    {"name": "predict_proba"}],
    }  # fmt: skip
    header, arrays = _binary_answer(infer(server, "hgb", mixed))
    json_output, binary_output = header["outputs"]
    assert json_output["data"] == model.predict(X).tolist() and "parameters" not in json_output
    assert binary_output["parameters"] == {"binary_data_size": 64}
    np.testing.assert_allclose(arrays["predict_proba"], model.predict_proba(X))
    one = body | {"outputs": [{"name": "predict_proba", "parameters": {"binary_data": True}}]}
    _, arrays = _binary_answer(infer(server, "hgb", one))
    np.testing.assert_allclose(arrays["predict_proba"], model.predict_proba(X))
    plain = infer(server, "hgb", body | {"parameters": {"binary_data_output": False}})
    assert plain.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in plain.headers
    assert plain.json()["outputs"][0]["data"] == model.predict(X).tolist()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"parameters": {"binary_data_output": "yes"}}, "binary_data_output"),
        ({"parameters": {"binary_data_output": 1}}, "binary_data_output"),
        ({"outputs": [{"name": "predict", "parameters": {"binary_data": "true"}}]},
         "Output 'predict' has binary_data 'true'"),
    ],
)  # fmt: skip
def test_a_bad_binary_parameter_is_a_400_naming_it(server, served_home, extra, message) -> None:
    response = infer(server, "hgb", columns_body(served_home.X) | extra)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"] and "true or false" in response.json()["error"]


def test_triton_client_reads_binary_outputs(server: Server, served_home: ServedHome) -> None:
    """tritonclient.http asks every output in binary when it names none, and each named output
    in binary unless told otherwise; its arrays are the model's own."""
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    X = served_home.X.iloc[10:17]
    model = served_home.registry().load("hgb/1")
    inputs = []
    for column in X.columns:
        tensor = triton.InferInput(column, [len(X)], "FP64")
        tensor.set_data_from_numpy(X[column].to_numpy(), binary_data=column != "f3")
        inputs.append(tensor)
    result = client.infer("hgb", inputs)  # no outputs named: binary_data_output
    assert result.get_output("predict")["parameters"] == {"binary_data_size": 8 * len(X)}
    np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(X))
    for binary in (True, False):
        outputs = [triton.InferRequestedOutput("predict_proba", binary_data=binary),
                   triton.InferRequestedOutput("predict", binary_data=not binary)]  # fmt: skip
        result = client.infer("hgb", inputs, outputs=outputs)
        assert ("data" in result.get_output("predict_proba")) is not binary
        np.testing.assert_allclose(result.as_numpy("predict_proba"), model.predict_proba(X))
        np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(X))


def _readme_routes() -> list[tuple[str, str]]:
    """``(method, path)`` of every HTTP route in the README's route table, its optional parts
    (``[/versions/{v}]``, ``[/ready]``...) expanded, path parameters written ``{}``."""
    import re

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split("| route | what |", 1)[1].split("\n\n", 1)[0]
    routes = []
    for line in table.splitlines()[2:]:
        cell = line.split(" | ", 1)[0].removeprefix("| ")
        if cell.startswith("gRPC"):
            continue  # not HTTP
        method = "GET"
        for token in re.findall(r"`([^`]+)`", cell):
            if " " in token:
                method = token.split(" ", 1)[0]
            expanded = [token.split(" ")[-1].replace("\\|", "|")]
            while any("[" in path for path in expanded):
                done = []
                for path in expanded:
                    found = re.search(r"\[([^\[\]]*)\]", path)
                    if found is None:
                        done.append(path)
                        continue
                    for choice in ("", *found.group(1).split("|")):
                        done.append(path[: found.start()] + choice + path[found.end() :])
                expanded = done
            routes += [(method, re.sub(r"\{[^}]*\}", "{}", path)) for path in expanded]
    return routes


def test_openapi_lists_every_route_the_readme_names_and_the_server_serves(
    server: Server,
) -> None:
    import re

    from modelyard.serving.http import _PLAIN_ROUTES
    from modelyard.serving.openapi import openapi_document

    spec = httpx.get(f"{server.url}/openapi.json").json()
    paths = {re.sub(r"\{[^}]*\}", "{}", path): ops for path, ops in spec["paths"].items()}
    wanted = _readme_routes()
    assert ("POST", "/models/{}/invocations") in wanted and len(wanted) > 20  # the table read
    wanted += [(method, path) for path, (_, methods) in _PLAIN_ROUTES.items() for method in methods]
    missing = sorted({f"{m} {p}" for m, p in wanted if m.lower() not in paths.get(p, {})})
    assert not missing, f"served but not in /openapi.json: {missing}"
    vertex = openapi_document(["m"], predict_route="/predict/m", health_route="/healthz")["paths"]
    assert "post" in vertex["/predict/m"] and "get" in vertex["/healthz"]
