"""The gRPC messages: the committed descriptor set is what grpcio-tools makes of the committed
.proto (``make proto``), and it is the Open Inference Protocol's wire format, field for field,
as the standard client (tritonclient) has it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from modelyard.serving import protobuf

PROTO_DIR = Path(protobuf.__file__).parent / "_proto"


def test_the_committed_descriptor_set_matches_the_proto(tmp_path: Path) -> None:
    from grpc_tools import protoc

    out = tmp_path / "inference.binpb"
    args = ["protoc", f"-I{PROTO_DIR}", f"--descriptor_set_out={out}", "inference.proto"]
    assert protoc.main(args) == 0
    assert out.read_bytes() == (PROTO_DIR / "inference.binpb").read_bytes(), (
        "src/modelyard/serving/_proto/inference.binpb is stale; run 'make proto'"
    )


def _fields(descriptor: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in descriptor.fields:
        nested = field.message_type
        if nested is None:
            shape: Any = None
        elif nested.full_name.startswith("inference."):
            shape = _fields(nested)
        else:
            shape = nested.full_name
        out[field.name] = (field.number, field.type, field.is_repeated, shape)
    return out


def test_every_message_has_the_standard_clients_wire_format() -> None:
    from tritonclient.grpc import service_pb2 as standard

    service = standard.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    for name, (request, response) in protobuf.METHODS.items():
        method = service.methods_by_name[name]
        assert method.input_type.name == request.DESCRIPTOR.name
        assert method.output_type.name == response.DESCRIPTOR.name
        _assert_within(_fields(request.DESCRIPTOR), _fields(method.input_type), name)
        _assert_within(_fields(response.DESCRIPTOR), _fields(method.output_type), name)


def _assert_within(ours: dict[str, Any], standard: dict[str, Any], where: str) -> None:
    """Every field of ours is the standard's field (number, type, repetition); the standard
    (Triton's) may have more, which a decoder keeps as unknown fields."""
    for name, (number, kind, repeated, shape) in ours.items():
        assert name in standard, f"{where}.{name}"
        s_number, s_kind, s_repeated, s_shape = standard[name]
        assert (number, kind, repeated) == (s_number, s_kind, s_repeated), f"{where}.{name}"
        if isinstance(shape, dict):
            _assert_within(shape, s_shape, f"{where}.{name}")
        else:
            assert shape == s_shape, f"{where}.{name}"


def test_raw_answers_round_trip_through_the_standard_messages() -> None:
    import numpy as np
    from tritonclient.grpc import service_pb2 as standard

    response = protobuf.ModelInferResponse(model_name="m", model_version="1", id="r")
    outputs = {"p": np.array([[1.5, 2.5]]), "label": np.array(["a", "bé"], dtype=object)}
    protobuf.encode_response(response, outputs, raw=True)
    back = standard.ModelInferResponse.FromString(response.SerializeToString())
    assert [o.datatype for o in back.outputs] == ["FP64", "BYTES"]
    assert np.frombuffer(back.raw_output_contents[0], "<f8").tolist() == [1.5, 2.5]
    assert back.raw_output_contents[1] == b"\x01\x00\x00\x00a\x03\x00\x00\x00b\xc3\xa9"


def _request(columns: dict[str, Any], datatype: str, *, shape2: bool = False) -> Any:
    import numpy as np

    from modelyard.serving.codecs import DATATYPES

    request = protobuf.ModelInferRequest(model_name="m")
    for name, values in columns.items():
        array = np.asarray(values, dtype=np.dtype(DATATYPES[datatype]).newbyteorder("<"))
        shape = [len(array), 1] if shape2 else [len(array)]
        request.inputs.add(name=name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(array.tobytes())
    return request


@pytest.mark.parametrize(
    ("columns", "datatype", "shape2"),
    [
        ({"b": [1, 2, 3], "a": [0.5, 1.5, 2.5]}, "FP64", False),  # out of order
        ({"a": [0.5, 1.5], "b": [1, 2]}, "FP32", True),
        ({"a": [1, 2], "b": [3, -4]}, "INT32", False),
        ({"a": [1, 2], "b": [300, 4]}, "INT16", False),
        ({"a": [float("nan"), 1.0], "b": [1, 2]}, "FP64", False),  # NaN where training had none
        ({"a": [1.0, 2.0], "b": [1.5, 2.0]}, "FP64", False),  # a fraction for an int column
        ({"a": [1.0, 2.0], "c": [1.0, 2.0]}, "FP64", False),  # a name the model lacks
        ({"a": [1.0], "b": [1.0, 2.0]}, "FP64", False),  # ragged
    ],
)
def test_the_one_call_column_path_answers_as_the_general_path(
    columns: dict[str, Any], datatype: str, shape2: bool
) -> None:
    """``column_block`` (the fast path of raw per-column requests) gives the general path's
    rows, or steps aside (``None``), or raises the general path's error."""
    import numpy as np

    from modelyard.core.types import Signature, TensorSpec
    from modelyard.errors import ModelyardError
    from modelyard.serving.validation import RequestValidator

    specs = (TensorSpec(name="a", dtype="float64"), TensorSpec(name="b", dtype="int64"))
    validator = RequestValidator(Signature(kind="columns", inputs=specs), model="m")
    request = _request(columns, datatype, shape2=shape2)

    def general() -> Any:
        inputs, arrays, _ = protobuf.decode_inputs(request)
        return validator.from_request(inputs, arrays)

    try:
        expected = general()
    except ModelyardError as exc:
        with pytest.raises(type(exc), match=re.escape(str(exc))):
            fast = protobuf.column_block(request, validator)
            if fast is None:
                general()
        return
    fast = protobuf.column_block(request, validator)
    assert fast is not None
    assert fast.n == expected.n
    np.testing.assert_array_equal(fast.matrix, expected.matrix)
