"""Text through every front door, to a text model served by the real ServedModel: v2 JSON and
binary BYTES tensors, MLflow's /invocations (dataframe_split, dataframe_records, inputs, CSV),
gRPC ModelInfer (typed bytes_contents and raw_input_contents) and TF Serving's :predict; bad
input fails with an error of kind ``invalid`` (HTTP 400, gRPC INVALID_ARGUMENT) naming it."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np
import pytest

from modelyard.errors import ModelyardError
from modelyard.serving import codecs, protobuf
from modelyard.serving.doors import Door, GrpcDoor, MlflowDoor, V2Door
from modelyard.serving.http import STATUS
from modelyard.serving.models import ServedModel
from modelyard.serving.tfserving import TfServingDoor
from modelyard.settings import ServingSettings

from ._text_model import TinyTextPredictor, text_loaded

TEXTS = ["the cat sat", "héllo wörld", "a quick brown fox"]


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def binary(texts: list[bytes]) -> bytes:
    return b"".join(len(t).to_bytes(4, "little") + t for t in texts)


def v2_binary(texts: list[bytes]) -> V2Door:
    raw = binary(texts)
    header = body({"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES",
                               "parameters": {"binary_data_size": len(raw)}}]})  # fmt: skip
    return V2Door(*codecs.decode_v2(header + raw, header_length=str(len(header))))


def grpc(texts: list[bytes], *, raw: bool, datatype: str = "BYTES") -> GrpcDoor:
    request = protobuf.ModelInferRequest(model_name="embedder")
    tensor = request.inputs.add(name="text", datatype=datatype, shape=[len(texts)])
    if raw:
        request.raw_input_contents.append(binary(texts))
    elif texts:
        tensor.contents.bytes_contents.extend(texts)
    return GrpcDoor(request)


def grpc_ints(values: list[int]) -> GrpcDoor:
    request = protobuf.ModelInferRequest(model_name="embedder")
    tensor = request.inputs.add(name="text", datatype="INT64", shape=[len(values)])
    tensor.contents.int64_contents.extend(values)
    return GrpcDoor(request)


def v2(data: Any, *, datatype: str = "BYTES", shape: list[int] | None = None) -> V2Door:
    shape = shape if shape is not None else [len(data)]
    request = {"inputs": [{"name": "text", "shape": shape, "datatype": datatype, "data": data}]}
    return V2Door(*codecs.decode_v2(body(request)))


def mlflow(value: Any) -> MlflowDoor:
    return MlflowDoor("application/json", body(value))


ENCODED = [t.encode() for t in TEXTS]
GOOD: dict[str, Any] = {
    "v2 json": lambda: v2(TEXTS),
    "v2 json [n, 1]": lambda: v2([[t] for t in TEXTS], shape=[3, 1]),
    "v2 binary": lambda: v2_binary(ENCODED),
    "invocations dataframe_split": lambda: mlflow(
        {"dataframe_split": {"columns": ["text"], "data": [[t] for t in TEXTS]}}
    ),
    "invocations dataframe_records": lambda: mlflow(
        {"dataframe_records": [{"text": t} for t in TEXTS]}
    ),
    "invocations inputs columns": lambda: mlflow({"inputs": {"text": TEXTS}}),
    "invocations inputs list": lambda: mlflow({"inputs": TEXTS}),
    "invocations csv": lambda: MlflowDoor(
        "text/csv", ("text\n" + "\n".join(TEXTS) + "\n").encode()
    ),
    "grpc bytes_contents": lambda: grpc(ENCODED, raw=False),
    "grpc raw_input_contents": lambda: grpc(ENCODED, raw=True),
    "tf instances": lambda: TfServingDoor(body({"instances": TEXTS})),
    "tf instances records": lambda: TfServingDoor(
        body({"instances": [{"text": t} for t in TEXTS]})
    ),
    "tf inputs": lambda: TfServingDoor(body({"inputs": {"text": TEXTS}})),
    "tf b64": lambda: TfServingDoor(
        body({"instances": [{"b64": base64.b64encode(t).decode()} for t in ENCODED]})
    ),
}


@pytest.fixture(scope="module")
def predictor() -> TinyTextPredictor:
    return TinyTextPredictor()


def answer(predictor: TinyTextPredictor, make_door: Any) -> tuple[dict[str, Any], bytes]:
    async def scenario() -> tuple[dict[str, Any], bytes]:
        served = ServedModel(text_loaded(predictor), ServingSettings())
        served.batcher.start()
        try:
            door: Door = make_door()
            rows = door.rows(served)
            result = await served.predict(rows, door.outputs(served), timeout_s=10)
            return result.outputs, door.encode("embedder", served, result.outputs)
        finally:
            await served.close()

    return asyncio.run(scenario())


@pytest.mark.parametrize("door", list(GOOD))
def test_every_door_delivers_the_texts_to_the_model(predictor, door) -> None:
    outputs, payload = answer(predictor, GOOD[door])
    expected = np.stack([predictor.embed_one(t) for t in TEXTS])
    np.testing.assert_allclose(outputs["predict"], expected, rtol=1e-5, atol=1e-6)
    assert payload  # the door encodes the embeddings


BAD: dict[str, tuple[Any, str]] = {
    "v2 numbers": (lambda: v2([1.5, 2.0], datatype="FP32"), "Input 'text' takes text"),
    "v2 BYTES numbers": (lambda: v2([1, 2]), "Input 'text' takes text, but row 0 is 1"),
    "v2 null": (lambda: v2(["a cat", None]), "Input 'text' takes text, but row 1 is null"),
    "v2 empty": (lambda: v2([]), "Input 'text' has no rows"),
    "v2 too long": (lambda: v2(["the cat", " ".join(["dog"] * 20)]), "Input 'text' row 1 has 22"),
    "v2 binary invalid UTF-8": (
        lambda: v2_binary([b"ok", b"\xff\xfe"]),
        "Input 'text' BYTES element 1 is not valid UTF-8",
    ),
    "invocations numbers": (
        lambda: mlflow({"dataframe_split": {"columns": ["text"], "data": [[1], [2]]}}),
        "Input 'text' takes text",
    ),
    "invocations empty": (
        lambda: mlflow({"dataframe_split": {"columns": ["text"], "data": []}}),
        "Input 'text' has no rows",
    ),
    "invocations records empty": (lambda: mlflow({"dataframe_records": []}), "'dataframe_records'"),
    "grpc ints": (lambda: grpc_ints([5, 6]), "Input 'text' takes text (BYTES), got numbers"),
    "grpc invalid UTF-8": (
        lambda: grpc([b"ok", b"\xc3("], raw=False),
        "Input 'text' BYTES element 1 is not valid UTF-8",
    ),
    "grpc raw invalid UTF-8": (
        lambda: grpc([b"\xe2\x82", b"fine"], raw=True),
        "Input 'text' BYTES element 0 is not valid UTF-8",
    ),
    "grpc empty": (lambda: grpc([], raw=True), "Input 'text' has no rows"),
    "tf numbers": (
        lambda: TfServingDoor(body({"instances": [3, 4]})),
        "Input 'text' takes text, but row 0",
    ),
    "tf empty": (lambda: TfServingDoor(body({"instances": []})), "'instances' is []"),
    "tf b64 invalid UTF-8": (
        lambda: TfServingDoor(body({"instances": [{"b64": base64.b64encode(b"\xff").decode()}]})),
        "'instances' has a b64 value whose bytes are not valid UTF-8",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_text_is_refused_with_a_400_naming_the_input(predictor, case) -> None:
    make_door, message = BAD[case]
    predictor.calls.clear()
    with pytest.raises(ModelyardError) as caught:
        answer(predictor, make_door)
    assert STATUS[caught.value.kind] == 400
    assert message in str(caught.value)
    assert predictor.calls == []  # nothing reached the model
