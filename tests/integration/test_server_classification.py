"""Triton's classification extension over REST and gRPC, against a real ``yard serve`` process,
called with the standard clients (``InferRequestedOutput(name, class_count=k)``) and compared
with the model's own ``predict_proba`` and ``classes_``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

from modelyard.registry import Registry
from tests.integration._server import Server, server_env

ANIMALS = np.array(["cat", "dog", "owl", "yak"])


class Served:
    def __init__(self, server: Server, model: Any, X: pd.DataFrame, log_root: Path) -> None:
        self.server, self.model, self.X, self.log_root = server, model, X, log_root


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LinearRegression, LogisticRegression

    home: Path = tmp_path_factory.mktemp("classify")
    X_raw, y = make_classification(
        n_samples=400, n_features=6, n_informative=4, n_classes=4, random_state=0
    )
    X = pd.DataFrame(X_raw, columns=[f"f{i}" for i in range(6)])
    animals = LogisticRegression(max_iter=500).fit(X, ANIMALS[y])
    registry = Registry(
        database_url=f"sqlite:///{home / 'modelyard.db'}", artifact_root=str(home / "artifacts")
    )
    registry.register(animals, name="animals", data=X)
    registry.register(LinearRegression().fit(X, y.astype(float)), name="reg", data=X)
    registry.close()
    env = server_env(
        home, MODELYARD_MONITORING__LOG_ROOT=str(home / "log"),
        MODELYARD_MONITORING__FLUSH_INTERVAL_S="0.2",
    )  # fmt: skip
    args = ("animals/1", "reg/1", "--runtime", "native", "--log-predictions")
    with Server(home, *args, env=env, grpc=True) as server:
        yield Served(server, animals, X.iloc[:5], home / "log")


@pytest.fixture(scope="module")
def http_client(served: Served) -> Iterator[thttp.InferenceServerClient]:
    client = thttp.InferenceServerClient(served.server.url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc_client(served: Served) -> Iterator[tgrpc.InferenceServerClient]:
    assert served.server.grpc is not None
    client = tgrpc.InferenceServerClient(served.server.grpc)
    yield client
    client.close()


def inputs(client: Any, X: pd.DataFrame) -> list[Any]:
    """One FP64 column per input, as ``client`` (``tritonclient.http`` or ``.grpc``) sends."""
    items = []
    for column in X.columns:
        item = client.InferInput(column, [len(X)], "FP64")
        item.set_data_from_numpy(X[column].to_numpy(np.float64))
        items.append(item)
    return items


def typed_call(served: Served, classification: Any) -> Any:
    """A typed-contents ``ModelInfer`` asking ``predict_proba`` with the parameter as given
    (``classification`` sets its value), as the stubs that tritonclient ships send it."""
    import grpc

    assert served.server.grpc is not None
    request = pb.ModelInferRequest(model_name="animals")
    for column in served.X.columns:
        item = request.inputs.add(name=column, datatype="FP64", shape=[len(served.X)])
        item.contents.fp64_contents.extend(served.X[column].tolist())
    classification(request.outputs.add(name="predict_proba").parameters["classification"])
    with grpc.insecure_channel(served.server.grpc) as channel:
        return pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)


def expected(served: Served, k: int) -> list[list[tuple[float, int, str]]]:
    """Each row's k highest probabilities, highest first, with their index and class."""
    proba = served.model.predict_proba(served.X)
    classes = list(served.model.classes_)
    out = []
    for row in proba:
        order = np.argsort(-row, kind="stable")[:k]
        out.append([(float(row[i]), int(i), str(classes[i])) for i in order])
    return out


def parsed(array: np.ndarray) -> list[list[tuple[float, int, str]]]:
    rows = []
    for row in array:
        cells = []
        for cell in row:
            text = cell.decode() if isinstance(cell, bytes) else cell
            value, index, label = text.split(":")
            assert value == f"{float(value):f}"  # Triton's form: six decimals
            cells.append((float(value), int(index), label))
        rows.append(cells)
    return rows


def assert_top(array: np.ndarray, served: Served, k: int) -> None:
    assert array.shape == (len(served.X), k)
    got, want = parsed(array), expected(served, k)
    assert [[(i, c) for _, i, c in row] for row in got] == [[(i, c) for _, i, c in row]
                                                             for row in want]  # fmt: skip
    np.testing.assert_allclose(
        [[v for v, _, _ in row] for row in got], [[v for v, _, _ in row] for row in want],
        atol=5e-7,
    )  # fmt: skip


@pytest.mark.parametrize("binary", [True, False])
def test_http_client_gets_the_top_classes(
    served: Served, http_client: thttp.InferenceServerClient, binary: bool
) -> None:
    outputs = [
        thttp.InferRequestedOutput("predict", binary_data=binary),
        thttp.InferRequestedOutput("predict_proba", binary_data=binary, class_count=2),
    ]
    result = http_client.infer("animals", inputs(thttp, served.X), outputs=outputs, request_id="c7")
    response = result.get_response()
    assert response["id"] == "c7"
    described = {o["name"]: o for o in response["outputs"]}
    assert described["predict_proba"]["datatype"] == "BYTES"
    assert described["predict_proba"]["shape"] == [len(served.X), 2]
    assert_top(result.as_numpy("predict_proba"), served, 2)
    predicted = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("predict")]
    assert predicted == served.model.predict(served.X).tolist()


def test_a_count_past_the_classes_gives_every_class(
    served: Served, http_client: thttp.InferenceServerClient
) -> None:
    outputs = [thttp.InferRequestedOutput("predict_proba", class_count=10)]
    result = http_client.infer("animals", inputs(thttp, served.X), outputs=outputs)
    assert_top(result.as_numpy("predict_proba"), served, 4)


def test_grpc_client_gets_the_top_classes(
    served: Served, grpc_client: tgrpc.InferenceServerClient
) -> None:
    outputs = [
        tgrpc.InferRequestedOutput("predict_proba", class_count=3),
        tgrpc.InferRequestedOutput("predict"),
    ]
    result = grpc_client.infer("animals", inputs(tgrpc, served.X), outputs=outputs, request_id="g1")
    response = result.get_response()
    assert response.id == "g1"
    assert [(o.name, o.datatype) for o in response.outputs] == [
        ("predict_proba", "BYTES"), ("predict", "BYTES"),
    ]  # fmt: skip
    assert_top(result.as_numpy("predict_proba"), served, 3)
    every = [tgrpc.InferRequestedOutput("predict_proba", class_count=99)]
    result = grpc_client.infer("animals", inputs(tgrpc, served.X), outputs=every)
    assert_top(result.as_numpy("predict_proba"), served, 4)


def test_typed_grpc_request_is_answered_in_bytes_contents(served: Served) -> None:
    response = typed_call(served, lambda p: setattr(p, "int64_param", 1))
    (output,) = response.outputs
    assert (output.datatype, list(output.shape)) == ("BYTES", [len(served.X), 1])
    cells = np.array(output.contents.bytes_contents, dtype=object).reshape(len(served.X), 1)
    assert_top(cells, served, 1)


def test_server_metadata_lists_classification(
    served: Served, grpc_client: tgrpc.InferenceServerClient
) -> None:
    rest = httpx.get(f"{served.server.url}/v2").json()["extensions"]
    grpc_meta = grpc_client.get_server_metadata(as_json=True)["extensions"]
    assert rest == grpc_meta and "classification" in rest


def columns(served: Served) -> list[dict[str, Any]]:
    return [{"name": c, "shape": [len(served.X)], "datatype": "FP64",
             "data": served.X[c].tolist()} for c in served.X.columns]  # fmt: skip


@pytest.mark.parametrize(
    ("model", "output", "parameters", "message"),
    [
        ("animals", "predict_proba", {"classification": 0}, "classification 0; it must be"),
        ("animals", "predict_proba", {"classification": -2}, "classification -2; it must be"),
        ("animals", "predict_proba", {"classification": 2.5}, "classification 2.5; it must be"),
        ("animals", "predict_proba", {"classification": "2"}, "classification '2'; it must be"),
        ("animals", "predict_proba", {"classification": True}, "classification true; it must be"),
        ("animals", "predict", {"classification": 2}, "Output 'predict' of model 'animals'"),
        ("reg", "predict", {"classification": 1, "binary_data": True}, "Output 'predict' of "
         "model 'reg'"),
    ],
)  # fmt: skip
def test_bad_classification_requests_are_400s_naming_the_output(
    served: Served, model: str, output: str, parameters: dict[str, Any], message: str
) -> None:
    body = {"inputs": columns(served), "outputs": [{"name": output, "parameters": parameters}]}
    response = httpx.post(f"{served.server.url}/v2/models/{model}/infer", json=body, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert message in error and f"'{output}'" in error
    assert "\n" not in error


def test_bad_classification_calls_are_invalid_argument_over_grpc(
    served: Served, grpc_client: tgrpc.InferenceServerClient
) -> None:
    import grpc

    def refused(model: str, output: tgrpc.InferRequestedOutput) -> tuple[str, str]:
        with pytest.raises(InferenceServerException) as info:
            grpc_client.infer(model, inputs(tgrpc, served.X), outputs=[output])
        return str(info.value.status()), info.value.message()

    code, message = refused("animals", tgrpc.InferRequestedOutput("predict_proba", class_count=-1))
    assert code == "StatusCode.INVALID_ARGUMENT" and "'predict_proba'" in message
    assert "classification -1" in message
    code, message = refused("animals", tgrpc.InferRequestedOutput("predict", class_count=2))
    assert code == "StatusCode.INVALID_ARGUMENT"
    assert "Output 'predict' of model 'animals'" in message
    code, message = refused("reg", tgrpc.InferRequestedOutput("predict", class_count=2))
    assert code == "StatusCode.INVALID_ARGUMENT" and "Output 'predict' of model 'reg'" in message
    with pytest.raises(grpc.RpcError) as info:
        typed_call(served, lambda p: setattr(p, "string_param", "2"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "int64_param" in (info.value.details() or "")


def test_the_log_keeps_the_probabilities(
    served: Served, http_client: thttp.InferenceServerClient
) -> None:
    outputs = [thttp.InferRequestedOutput("predict_proba", class_count=1)]
    one = served.X.iloc[:1]
    trace = {"x-request-id": "classified-1"}
    http_client.infer("animals", inputs(thttp, one), outputs=outputs, headers=trace)

    def logged() -> list[Any]:
        files = sorted((served.log_root / "deployment=animals").glob("hour=*/[!.]*.parquet"))
        # a file may hold only refused requests (status rows, no outputs): it has no such column
        tables = [pq.read_table(f) for f in files]
        rows = [
            r
            for t in tables
            if "out_predict_proba" in t.column_names
            for r in t.select(["request_id", "out_predict_proba"]).to_pylist()
        ]
        return [r["out_predict_proba"] for r in rows if r["request_id"] == "classified-1"]

    deadline = time.monotonic() + 20
    while not logged() and time.monotonic() < deadline:
        time.sleep(0.2)
    (row,) = logged()
    np.testing.assert_allclose(row, served.model.predict_proba(one)[0])
