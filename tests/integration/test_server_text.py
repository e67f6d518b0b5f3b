"""Text models behind a real ``yard serve`` (REST and gRPC on loopback): tiny randomly
initialised BERTs registered through the transformers flavor, called with text over every front
door; bad text gets a 400 (gRPC INVALID_ARGUMENT) naming the input and fails no other request;
tokenizing is timed in its own metric."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modelyard.registry import Registry
from tests.integration._server import Server

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never the hub: the models are built here

TEXTS = ["the dog", "a good film with a great story", "Le café est très bon."]


@pytest.fixture(scope="module")
def text_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests._text_models import tiny_classifier, tiny_encoder

    home = tmp_path_factory.mktemp("text")
    registry = Registry(
        database_url=f"sqlite:///{home / 'modelyard.db'}", artifact_root=str(home / "artifacts")
    )
    registry.register(tiny_encoder(), name="embedder", input_example=TEXTS)
    registry.register(tiny_classifier(), name="sentiment", input_example=TEXTS)
    registry.close()
    return home


@pytest.fixture(scope="module")
def expected(text_home: Path) -> Any:
    """The registered embedder run in this process (each text alone: no padding)."""
    registry = Registry(
        database_url=f"sqlite:///{text_home / 'modelyard.db'}",
        artifact_root=str(text_home / "artifacts"),
    )
    predictor = registry.load("embedder/1").predictor
    registry.close()

    def embed(texts: list[str]) -> np.ndarray:
        return np.stack([predictor.predict_tokens(predictor.tokenize([t]), ("predict",))
                         ["predict"][0] for t in texts])  # fmt: skip

    embed.max_length = predictor.max_length  # type: ignore[attr-defined]
    return embed


@pytest.fixture(scope="module")
def server(text_home: Path) -> Iterator[Server]:
    args = ("embedder/1", "sentiment/1", "--max-batch-tokens", "512")
    with Server(text_home, *args, grpc=True) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def v2_body(texts: list[Any], datatype: str = "BYTES") -> dict[str, Any]:
    return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": datatype,
                        "data": texts}]}  # fmt: skip


def binary_body(texts: list[bytes]) -> tuple[bytes, dict[str, str]]:
    raw = b"".join(len(t).to_bytes(4, "little") + t for t in texts)
    tensor = {"name": "text", "shape": [len(texts)], "datatype": "BYTES",
              "parameters": {"binary_data_size": len(raw)}}  # fmt: skip
    header = json.dumps({"inputs": [tensor]}).encode()
    return header + raw, {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }


def test_v2_json_and_binary_bytes_tensors(client: httpx.Client, expected: Any) -> None:
    answer = client.post("/v2/models/embedder/infer", json=v2_body(TEXTS))
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    assert output["name"] == "predict" and output["datatype"] == "FP32"
    got = np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
    np.testing.assert_allclose(got, expected(TEXTS), atol=1e-5)

    body, headers = binary_body([t.encode() for t in TEXTS])
    answer = client.post("/v2/models/embedder/infer", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    got = np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
    np.testing.assert_allclose(got, expected(TEXTS), atol=1e-5)


@pytest.mark.parametrize(
    "payload",
    [
        {"dataframe_split": {"columns": ["text"], "data": [[t] for t in TEXTS]}},
        {"dataframe_records": [{"text": t} for t in TEXTS]},
        {"inputs": {"text": TEXTS}},
        {"inputs": TEXTS},
    ],
    ids=["dataframe_split", "dataframe_records", "inputs columns", "inputs list"],
)
def test_invocations_with_a_text_column(client: httpx.Client, expected: Any, payload) -> None:
    answer = client.post("/models/embedder/invocations", json=payload)
    assert answer.status_code == 200, answer.text
    got = np.asarray(answer.json()["predictions"], dtype=np.float32)
    np.testing.assert_allclose(got, expected(TEXTS), atol=1e-5)


def test_tf_serving_instances_and_inputs(client: httpx.Client, expected: Any) -> None:
    answer = client.post("/v1/models/embedder:predict", json={"instances": TEXTS})
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(np.asarray(answer.json()["predictions"], dtype=np.float32),
                               expected(TEXTS), atol=1e-5)  # fmt: skip
    answer = client.post("/v1/models/embedder:predict", json={"inputs": {"text": TEXTS}})
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(np.asarray(answer.json()["outputs"], dtype=np.float32),
                               expected(TEXTS), atol=1e-5)  # fmt: skip


def test_a_classifier_answers_each_row_of_a_mixed_batch_as_alone(
    client: httpx.Client, text_home: Path
) -> None:
    """One request of very different lengths: the server runs it as sub-batches of similar
    length (the tiny BERT takes token type ids too) and puts the rows back in order."""
    from modelyard.serving.batching import length_groups

    registry = Registry(
        database_url=f"sqlite:///{text_home / 'modelyard.db'}",
        artifact_root=str(text_home / "artifacts"),
    )
    predictor = registry.load("sentiment/1").predictor
    registry.close()
    long = " ".join(["the good film"] * 25)
    texts = [long if i % 6 == 0 else ["a dog", "good film", "the quick brown fox"][i % 3]
             for i in range(36)]  # fmt: skip
    assert length_groups(predictor.tokenize(texts).lengths) is not None  # it is split
    body = {**v2_body(texts), "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}
    answer = client.post("/v2/models/sentiment/infer", json=body)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    proba = np.asarray(outputs["predict_proba"]["data"]).reshape(outputs["predict_proba"]["shape"])
    for i, text in enumerate(texts):
        alone = predictor.predict_tokens(predictor.tokenize([text]), ("predict", "predict_proba"))
        assert outputs["predict"]["data"][i] == alone["predict"][0]
        np.testing.assert_allclose(proba[i], alone["predict_proba"][0], atol=1e-5)


def test_triton_http_client_reads_text_labels_in_binary(server: Server, text_home: Path) -> None:
    """The standard tritonclient.http, asking its outputs in binary (its default): the text
    labels come as length-prefixed BYTES elements, the probabilities as raw FP32 or FP64, each
    equal to the model's own answer."""
    import tritonclient.http as triton

    registry = Registry(
        database_url=f"sqlite:///{text_home / 'modelyard.db'}",
        artifact_root=str(text_home / "artifacts"),
    )
    predictor = registry.load("sentiment/1").predictor
    registry.close()
    alone = [predictor.predict_tokens(predictor.tokenize([t]), ("predict", "predict_proba"))
             for t in TEXTS]  # fmt: skip
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    text = triton.InferInput("text", [len(TEXTS)], "BYTES")
    text.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=object))
    result = client.infer("sentiment", [text])  # no outputs named: binary_data_output
    labels = result.as_numpy("predict")
    assert result.get_output("predict")["datatype"] == "BYTES"
    assert "data" not in result.get_output("predict")
    assert [v.decode() for v in labels] == [str(a["predict"][0]) for a in alone]
    asked = [triton.InferRequestedOutput("predict_proba"), triton.InferRequestedOutput("predict")]
    result = client.infer("sentiment", [text], outputs=asked)
    assert [v.decode() for v in result.as_numpy("predict")] == [v.decode() for v in labels]
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"), [a["predict_proba"][0] for a in alone], atol=1e-5
    )


def test_grpc_bytes_raw_and_typed(server: Server, expected: Any) -> None:
    import grpc
    import tritonclient.grpc as triton
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    assert server.grpc is not None
    client = triton.InferenceServerClient(server.grpc)
    item = triton.InferInput("text", [len(TEXTS)], "BYTES")
    item.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=object))
    result = client.infer("embedder", [item])  # raw_input_contents
    np.testing.assert_allclose(result.as_numpy("predict"), expected(TEXTS), atol=1e-5)
    client.close()

    request = pb.ModelInferRequest(model_name="embedder")
    tensor = request.inputs.add(name="text", datatype="BYTES", shape=[len(TEXTS)])
    tensor.contents.bytes_contents.extend(t.encode() for t in TEXTS)
    with grpc.insecure_channel(server.grpc) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(request)
        (output,) = response.outputs
        got = np.asarray(output.contents.fp32_contents, dtype=np.float32).reshape(
            list(output.shape)
        )
        np.testing.assert_allclose(got, expected(TEXTS), atol=1e-5)
        bad = pb.ModelInferRequest(model_name="embedder")
        tensor = bad.inputs.add(name="text", datatype="BYTES", shape=[1])
        tensor.contents.bytes_contents.append(b"\xff\xfe")
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(bad)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Input 'text'" in caught.value.details()
        assert "not valid UTF-8" in caught.value.details()


def test_bad_text_gets_a_400_naming_the_input(client: httpx.Client, expected: Any) -> None:
    too_long = " ".join(["dog"] * (expected.max_length + 5))
    cases = [
        (v2_body([1.5, 2.5], "FP32"), "Input 'text' takes text"),
        (v2_body(["fine", 7]), "Input 'text' takes text, but row 1 is 7"),
        (v2_body([]), "Input 'text'"),
        (v2_body(["fine", too_long]), "Input 'text' row 1"),
    ]
    for body, message in cases:
        answer = client.post("/v2/models/embedder/infer", json=body)
        assert answer.status_code == 400, (body, answer.text)
        assert message in answer.json()["error"]
    body, headers = binary_body([b"ok", b"\xc3("])
    answer = client.post("/v2/models/embedder/infer", content=body, headers=headers)
    assert answer.status_code == 400 and "not valid UTF-8" in answer.json()["error"]
    answer = client.post("/v1/models/embedder:predict", json={"instances": [3, 4]})
    assert answer.status_code == 400 and "Input 'text'" in answer.json()["error"]
    answer = client.post("/v1/models/embedder:predict", json={"instances": []})
    assert answer.status_code == 400 and "'instances'" in answer.json()["error"]


def test_a_bad_or_long_request_fails_no_other(client: httpx.Client, expected: Any) -> None:
    too_long = " ".join(["dog"] * (expected.max_length + 5))
    longest = " ".join(["dog"] * (expected.max_length - 10))
    bodies = [v2_body([TEXTS[i % 3]]) for i in range(24)]
    bodies[5] = v2_body(["fine", too_long])  # fails alone
    bodies[11] = v2_body([longest] * 8)  # large: runs alone under the 512-token cap

    def post(body: dict[str, Any]) -> httpx.Response:
        return client.post("/v2/models/embedder/infer", json=body)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, bodies))
    assert [a.status_code for a in answers] == [200] * 5 + [400] + [200] * 18
    for i, answer in enumerate(answers):
        if i in (5, 11):
            continue
        (output,) = answer.json()["outputs"]
        got = np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
        np.testing.assert_allclose(got, expected([TEXTS[i % 3]]), atol=1e-5)


def test_tokenizing_has_its_own_metric(client: httpx.Client) -> None:
    client.post("/v2/models/embedder/infer", json=v2_body(TEXTS))
    text = client.get("/metrics").text
    match = re.search(r'modelyard_tokenize_seconds_count\{model="embedder"\} (\S+)', text)
    assert match is not None and float(match.group(1)) >= 1
    assert 'modelyard_tokenize_seconds_count{model="sentiment"}' in text  # its warm-up
