"""Request decoding and answer typing through a real ``yard serve``: malformed bodies get 400
naming the field (never 500), BYTES is refused for numeric inputs, and every runtime answers in
the datatypes its model metadata states."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from modelyard.registry import Registry
from tests.integration._server import Server, server_env

FEATURES = [f"f{i}" for i in range(4)]
DEEP_LIST = "[" * 1000 + "1" + "]" * 1000
DEEP_OBJECT = '{"a":' * 1000 + "1" + "}" * 1000


@dataclass
class Home:
    path: Path
    X: pd.DataFrame


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    from sklearn.compose import make_column_transformer
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    path = tmp_path_factory.mktemp("codecs")
    X_raw, y = make_classification(n_samples=400, n_features=4, random_state=0)
    X = pd.DataFrame(X_raw, columns=FEATURES)
    registry = Registry(
        database_url=f"sqlite:///{path / 'modelyard.db'}", artifact_root=str(path / "artifacts")
    )
    hgb = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(X, y)
    registry.register(hgb, name="trees", data=X, convert="onnx")
    words = LogisticRegression().fit(X, np.array(["no", "yes"])[y])
    registry.register(words, name="words", data=X, convert="onnx")
    narrow = LogisticRegression().fit(X, y.astype(np.int32))
    registry.register(narrow, name="narrow", data=X, convert="onnx")
    flags = LogisticRegression().fit(X, y.astype(bool))  # the ONNX twin gives int64 labels
    registry.register(flags, name="flags", data=X, convert="onnx")
    registry.register(LinearRegression().fit(X, X_raw @ [1.0, 2.0, 3.0, 4.0]), name="reg",
                      data=X, convert="onnx")  # fmt: skip
    rng = np.random.default_rng(0)
    counts = pd.DataFrame({"n": rng.integers(0, 9, 200), "m": rng.integers(0, 9, 200)})
    registry.register(LinearRegression().fit(counts, counts["n"] * 2.0), name="counts",
                      data=counts)  # fmt: skip
    mixed = pd.DataFrame({"age": rng.integers(18, 80, 200).astype(float),
                          "city": rng.choice(["paris", "rome"], 200)})  # fmt: skip
    pipe = make_pipeline(
        make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["city"]),
                                remainder="passthrough"),
        LogisticRegression(),
    ).fit(mixed, (mixed["city"] == "rome").astype(int))  # fmt: skip
    registry.register(pipe, name="mixed", data=mixed)
    # fitted on a bare array: one tensor input, and pandas writes its columns as 0,1,2
    bare = rng.normal(size=(200, 3))
    registry.register(LinearRegression().fit(bare, bare @ [1.0, 2.0, 3.0]), name="bare",
                      data=bare)  # fmt: skip
    registry.close()
    return Home(path, X)


SERVED = ("trees/1", "words/1", "narrow/1", "flags/1", "reg/1")


@pytest.fixture(scope="module")
def native(home: Home) -> Iterator[Server]:
    with Server(
        home.path, *SERVED, "counts/1", "mixed/1", "bare/1", "--runtime", "native"
    ) as server:
        yield server


def v2(server: Server, model: str, body: object, **kw: object) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{server.url}/v2/models/{model}/infer", content=content, timeout=30, **kw)  # type: ignore[arg-type]


def invocations(server: Server, model: str, body: object, **kw: object) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = kw.pop("headers", {"Content-Type": "application/json"})
    return httpx.post(f"{server.url}/models/{model}/invocations", content=content,
                      headers=headers, timeout=30, **kw)  # type: ignore[arg-type]  # fmt: skip


def columns(X: pd.DataFrame, datatype: str = "FP64") -> list[dict[str, object]]:
    return [{"name": c, "shape": [len(X)], "datatype": datatype, "data": X[c].tolist()}
            for c in X.columns]  # fmt: skip


def tensor(name: str, data: list[object], datatype: str) -> dict[str, object]:
    return {"name": name, "shape": [len(data)], "datatype": datatype, "data": data}


def binary_body(size: object) -> tuple[bytes, dict[str, str]]:
    inputs = [{"name": c, "shape": [2], "datatype": "FP64",
               "parameters": {"binary_data_size": size if c == "f0" else 16}}
              for c in FEATURES]  # fmt: skip
    head = json.dumps({"inputs": inputs}).encode()
    return head + b"\0" * 64, {"Inference-Header-Content-Length": str(len(head))}


def _v2_deep(where: str) -> bytes:
    inputs = json.dumps(columns(pd.DataFrame({c: [0.1] for c in FEATURES})))
    if where == "data":
        item = '{"name":"f0","shape":[1],"datatype":"FP64","data":' + DEEP_LIST + "}"
        return ('{"inputs":[' + item + "]}").encode()
    if where == "parameters":
        return ('{"inputs":' + inputs + ',"parameters":{"x":' + DEEP_LIST + "}}").encode()
    item = '{"name":"f0","shape":[1],"datatype":"FP64","data":[1],"parameters":' + DEEP_OBJECT
    return ('{"inputs":[' + item + "}]}").encode()


V2_CASES = [
    ("deep data", _v2_deep("data"), {}, "more than 64 levels deep at $.inputs[0].data"),
    ("deep parameters", _v2_deep("parameters"), {}, "deep at $.parameters.x"),
    ("deep input parameters", _v2_deep("input"), {}, "deep at $.inputs[0].parameters"),
    ("size as text", *binary_body("16"), "Input 'f0' has binary_data_size '16'"),
    ("size as list", *binary_body([16]), "Input 'f0' has binary_data_size [16]"),
    ("size negative", *binary_body(-8), "Input 'f0' has binary_data_size -8"),
    ("size bool", *binary_body(True), "Input 'f0' has binary_data_size True"),
    ("header not a number", binary_body(16)[0], {"Inference-Header-Content-Length": "abc"},
     "Inference-Header-Content-Length is 'abc'"),
    ("huge integer", json.dumps(columns(pd.DataFrame({c: [0.5] for c in FEATURES}))).replace(
        "0.5", "1" + "0" * 400, 1).join(['{"inputs":', "}"]).encode(), {},
     "Input 'f0' data does not match datatype FP64"),
    ("too many dimensions", json.dumps({"inputs": [{"name": "f0", "shape": [1] * 70,
     "datatype": "FP64", "data": [1.0]}]}).encode(), {}, "which numpy cannot hold"),
    ("INT64 out of range", json.dumps({"inputs": [
        {"name": c, "shape": [1], "datatype": "INT64", "data": [2**64]} for c in FEATURES
    ]}).encode(), {}, "Input 'f0' has 1.8446744073709552e+19 where INT64 holds"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "body", "headers", "message"), V2_CASES, ids=[c[0] for c in V2_CASES]
)
def test_malformed_v2_bodies_get_400_naming_the_field(
    native: Server, case: str, body: bytes, headers: dict[str, str], message: str
) -> None:
    response = v2(native, "trees", body, headers=headers)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


MLFLOW_CASES = [
    ("columns a number", {"dataframe_split": {"columns": 5, "data": [[1, 2, 3, 4]]}},
     "'dataframe_split.columns' is 5"),
    ("columns a string", {"dataframe_split": {"columns": "f0", "data": [[1, 2, 3, 4]]}},
     "'dataframe_split.columns' is 'f0'"),
    ("records mixed with rows", {"instances": [dict.fromkeys(FEATURES, 1), [1, 2, 3, 4]]},
     "'instances' mixes records"),
    ("deep instances", b'{"instances": %s}' % DEEP_LIST.encode(),
     "'instances' is not a table of values (it nests 65 lists deep)"),
    ("deep inputs", b'{"inputs": %s}' % DEEP_LIST.encode(), "'inputs' is not a table"),
    ("deep params", b'{"instances": [[1, 2, 3, 4]], "params": %s}' % DEEP_OBJECT.encode(),
     "'params.a' is"),
    ("deeper than the parser takes", b'{"instances": %s}' % (b"[" * 1100 + b"]" * 1100),
     "more than 64 levels deep at $.instances"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "body", "message"), MLFLOW_CASES, ids=[c[0] for c in MLFLOW_CASES]
)
def test_malformed_mlflow_bodies_get_400_naming_the_field(
    native: Server, case: str, body: object, message: str
) -> None:
    response = invocations(native, "trees", body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_huge_csv_number_gets_400(native: Server) -> None:
    body = ("n,m\n" + "9" * 400 + ",2\n").encode()
    response = invocations(native, "counts", body, headers={"Content-Type": "text/csv"})
    assert response.status_code == 400, response.text
    assert "Input 'n' takes int values, got object (e.g. 999" in response.json()["error"]


def test_pandas_header_of_an_array_model_is_not_scored_as_a_row(native: Server, home: Home) -> None:
    values = home.X.to_numpy()[:4, :3]
    want = (values @ [1.0, 2.0, 3.0]).tolist()  # the model's own coefficients
    csv = {"Content-Type": "text/csv"}
    for body in (pd.DataFrame(values).to_csv(index=False),  # header 0,1,2
                 pd.DataFrame(values).to_csv(index=False, header=False)):  # fmt: skip
        response = invocations(native, "bare", body.encode(), headers=csv)
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == pytest.approx(want)
    # one line alone is a row, whatever its values
    response = invocations(native, "bare", b"0,1,2\n", headers=csv)
    assert response.json()["predictions"] == pytest.approx([8.0])


def test_a_csv_body_that_is_no_csv_gets_400(native: Server) -> None:
    csv = {"Content-Type": "text/csv"}
    # found by schemathesis once the route was in /openapi.json: csv.Error was a 500
    for body in (b"\x13\xd2\r\xc2\x9c7\xc7\xa4N", b"a\rb,c\n1,2\n", b"f0,f1\n\xff\xfe,1\n"):
        response = invocations(native, "trees", body, headers=csv)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"].startswith("The CSV body"), response.text


def test_a_csv_text_column_that_looks_numeric_stays_text(native: Server) -> None:
    csv = {"Content-Type": "text/csv"}
    response = invocations(native, "mixed", b"age,city\n30,75001\n40,rome\n", headers=csv)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 2


def test_no_traceback_in_the_server_log(native: Server) -> None:
    for _, body, headers, _ in V2_CASES:
        assert v2(native, "trees", body, headers=headers).status_code == 400
    log = native.log.read_text()
    assert "Traceback" not in log and "Internal error" not in log


def test_bytes_for_a_numeric_input_is_refused(native: Server, home: Home) -> None:
    X = home.X.head(3)
    text = [{"name": c, "shape": [3], "datatype": "BYTES", "data": [str(v) for v in X[c]]}
            for c in FEATURES]  # fmt: skip
    response = v2(native, "trees", {"inputs": text})
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(
        "Input 'f0' is BYTES but model 'trees' expects FP64;"
    )
    counts = {"inputs": [tensor("n", ["3"], "BYTES"), tensor("m", [1], "INT64")]}
    response = v2(native, "counts", counts)
    assert response.status_code == 400
    assert "Input 'n' is BYTES but model 'counts' expects INT64" in response.json()["error"]
    matrix = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "BYTES",
                          "data": [str(v) for v in X.iloc[0]]}]}  # fmt: skip
    response = v2(native, "trees", matrix)
    assert response.status_code == 400
    assert "Input 'x' is BYTES but model 'trees' expects FP64" in response.json()["error"]
    mixed = {"inputs": [tensor("age", [30.0], "FP64"), tensor("city", ["rome"], "BYTES")]}
    assert v2(native, "mixed", mixed).status_code == 200


def test_other_numeric_datatypes_stay_accepted(native: Server, home: Home) -> None:
    X = home.X.head(3)
    fp64 = v2(native, "reg", {"inputs": columns(X)})
    fp32 = v2(native, "reg", {"inputs": columns(X.astype(np.float32).astype(float), "FP32")})
    assert fp64.status_code == fp32.status_code == 200, fp32.text
    np.testing.assert_allclose(fp32.json()["outputs"][0]["data"],
                               fp64.json()["outputs"][0]["data"], rtol=1e-5)  # fmt: skip
    ints = pd.DataFrame({c: [1, 2, 3] for c in FEATURES})
    as_int = v2(native, "reg", {"inputs": columns(ints, "INT64")})
    as_float = v2(native, "reg", {"inputs": columns(ints.astype(float))})
    assert as_int.status_code == 200, as_int.text
    assert as_int.json()["outputs"] == as_float.json()["outputs"]
    counts = {"inputs": [tensor("n", [1.0, 2.0], "FP64"), tensor("m", [1, 2], "INT32")]}
    assert v2(native, "counts", counts).status_code == 200


# -- C17: answers in the metadata's datatypes, for every runtime -------------------------------

RUNTIMES = {
    "native": (("--runtime", "native"), "off", {"native"}),
    "onnxruntime": (("--runtime", "onnx"), "off", {"onnxruntime"}),
    "tree kernel": (("--runtime", "onnx"), "always", {"tree kernel", "onnxruntime"}),
}


@pytest.fixture(scope="module", params=list(RUNTIMES))
def runtime_server(request: pytest.FixtureRequest, home: Home) -> Iterator[Server]:
    args, kernel, _ = RUNTIMES[request.param]
    env = server_env(home.path, MODELYARD_ONNX__TREE_KERNEL=kernel)
    with Server(home.path, *SERVED, *args, env=env) as server:
        server.runtime = request.param  # type: ignore[attr-defined]
        yield server


def test_answers_match_the_metadata_datatypes(runtime_server: Server, home: Home) -> None:
    kernels = {m["name"]: m["kernel"] for m in
               httpx.get(f"{runtime_server.url}/admin/models").json()}  # fmt: skip
    assert set(kernels.values()) == RUNTIMES[runtime_server.runtime][2]  # type: ignore[attr-defined]
    if runtime_server.runtime == "tree kernel":  # type: ignore[attr-defined]
        assert kernels["trees"] == "tree kernel"
    for ref in SERVED:
        name = ref.split("/")[0]
        meta = httpx.get(f"{runtime_server.url}/v2/models/{name}").json()
        declared = {o["name"]: o["datatype"] for o in meta["outputs"]}
        body = {"inputs": columns(home.X.head(5)), "outputs": [{"name": n} for n in declared]}
        response = v2(runtime_server, name, body)
        assert response.status_code == 200, response.text
        answered = {o["name"]: o["datatype"] for o in response.json()["outputs"]}
        assert answered == declared, (name, kernels[name])
    assert declared_of(runtime_server, "trees") == {"predict": "INT64", "predict_proba": "FP64"}
    assert declared_of(runtime_server, "narrow")["predict"] == "INT32"
    assert declared_of(runtime_server, "words")["predict"] == "BYTES"
    assert declared_of(runtime_server, "flags")["predict"] == "BOOL"
    assert declared_of(runtime_server, "reg") == {"predict": "FP64"}


def declared_of(server: Server, name: str) -> dict[str, str]:
    meta = httpx.get(f"{server.url}/v2/models/{name}").json()
    return {o["name"]: o["datatype"] for o in meta["outputs"]}


def test_triton_client_reads_the_datatypes_it_was_told(runtime_server: Server, home: Home) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import triton_to_np_dtype

    client = triton.InferenceServerClient(url=runtime_server.url.removeprefix("http://"))
    X = home.X.head(4)
    for name in ("trees", "reg"):
        meta = client.get_model_metadata(name)
        inputs = []
        for column in FEATURES:
            tensor = triton.InferInput(column, [4], "FP32")  # FP32 for FP64 inputs: accepted
            tensor.set_data_from_numpy(X[column].to_numpy(np.float32))
            inputs.append(tensor)
        wanted = [triton.InferRequestedOutput(o["name"]) for o in meta["outputs"]]
        result = client.infer(name, inputs, outputs=wanted)
        for output in meta["outputs"]:
            assert result.as_numpy(output["name"]).dtype == triton_to_np_dtype(output["datatype"])


def test_compressed_bodies_are_inflated_as_triton_clients_send_them(
    native: Server, home: Home
) -> None:
    import gzip
    import zlib

    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=native.url.removeprefix("http://"))
    X = home.X.head(3)
    inputs = []
    for column in FEATURES:
        tensor = triton.InferInput(column, [3], "FP64")
        tensor.set_data_from_numpy(X[column].to_numpy())
        inputs.append(tensor)
    plain = client.infer("reg", inputs).as_numpy("predict")
    for algorithm in ("gzip", "deflate"):
        packed = client.infer("reg", inputs, request_compression_algorithm=algorithm)
        assert np.array_equal(packed.as_numpy("predict"), plain), algorithm
    body = json.dumps({"inputs": columns(X)}).encode()
    for encoding, packed_body in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body)),
                                  ("deflate", zlib.compress(body)[2:-4])):  # fmt: skip
        answer = v2(native, "reg", packed_body, headers={"Content-Encoding": encoding})
        assert answer.status_code == 200, answer.text
        assert np.allclose(answer.json()["outputs"][0]["data"], plain)
    refused = v2(native, "reg", body, headers={"Content-Encoding": "br"})
    assert refused.status_code == 415 and "Content-Encoding 'br' is not supported" in refused.text
    broken = v2(native, "reg", b"not gzip", headers={"Content-Encoding": "gzip"})
    assert broken.status_code == 400 and "not valid gzip data" in broken.text
    bomb = gzip.compress(b" " * ((64 << 20) + 1))  # 64 KB that inflate past the 64 MiB limit
    assert v2(native, "reg", bomb, headers={"Content-Encoding": "gzip"}).status_code == 413
