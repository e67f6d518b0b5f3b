"""The gRPC messages: the committed descriptor set is what grpcio-tools makes of the committed
.proto (``make proto``), and it is the Open Inference Protocol's wire format, field for field,
as the standard client (tritonclient) has it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from modelyard.serving import codecs, protobuf

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

    outputs = {"p": np.array([[1.5, 2.5]]), "label": np.array(["a", "bé"], dtype=object)}
    data = protobuf.encode_response("m", "1", "r", outputs, raw=True)
    back = standard.ModelInferResponse.FromString(data)
    assert [o.datatype for o in back.outputs] == ["FP64", "BYTES"]
    assert np.frombuffer(back.raw_output_contents[0], "<f8").tolist() == [1.5, 2.5]
    assert back.raw_output_contents[1] == b"\x01\x00\x00\x00a\x03\x00\x00\x00b\xc3\xa9"
    # FP16 has no typed field: a typed request's answer comes raw
    half = {"h": np.array([0.5], dtype=np.float16), "p": np.array([1.5])}
    back = standard.ModelInferResponse.FromString(
        protobuf.encode_response("m", "1", "", half, raw=False)
    )
    assert len(back.raw_output_contents) == 2 and not back.outputs[1].contents.fp64_contents
    typed = standard.ModelInferResponse.FromString(
        protobuf.encode_response("m", "1", "", {"p": np.array([1.5])}, raw=False)
    )
    assert not typed.raw_output_contents and list(typed.outputs[0].contents.fp64_contents) == [1.5]


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


# -- the kept metadata of raw table calls, and answers written directly ----------------------


def _validator(*names: str, int_column: str | None = None) -> Any:
    from modelyard.core.types import Signature, TensorSpec
    from modelyard.serving.validation import RequestValidator

    specs = tuple(
        TensorSpec(name=n, dtype="int64" if n == int_column else "float64") for n in names
    )
    return RequestValidator(Signature(kind="columns", inputs=specs), model="m")


def test_a_kept_table_reads_each_calls_own_tensors() -> None:
    import numpy as np

    tables = protobuf.RawTables()
    first = _request({"a": [0.5, 1.5], "b": [1, 2]}, "FP64")
    body = first.SerializeToString()
    assert tables.match(body) is None
    tables.learn(body, first)
    again = _request({"a": [7.0, -8.25], "b": [3, 4]}, "FP64").SerializeToString()
    hit = tables.match(again)
    assert hit is not None
    table, block = hit
    assert table.names == ("a", "b") and table.datatype == "FP64"
    assert block.tolist() == [[7.0, -8.25], [3.0, 4.0]]
    expected = protobuf.column_block(
        protobuf.ModelInferRequest.FromString(again), _validator("a", "b")
    )
    assert expected is not None
    rows = _validator("a", "b").from_column_block(table.names, table.datatype, block)
    assert rows is not None
    np.testing.assert_array_equal(rows.matrix, expected.matrix)


@pytest.mark.parametrize(
    "other",
    [
        _request({"a": [0.5, 1.5, 2.5], "b": [1, 2, 3]}, "FP64"),  # more rows
        _request({"a": [0.5, 1.5], "c": [1, 2]}, "FP64"),  # another name, same length
        _request({"a": [0.5, 1.5], "b": [1, 2]}, "INT64"),  # another datatype
        _request({"a": [0.5, 1.5], "b": [1, 2]}, "FP64", shape2=True),
    ],
)
def test_other_metadata_is_not_the_kept_table(other: Any) -> None:
    tables = protobuf.RawTables()
    first = _request({"a": [0.5, 1.5], "b": [1, 2]}, "FP64")
    tables.learn(first.SerializeToString(), first)
    assert tables.match(other.SerializeToString()) is None


def test_bytes_that_are_not_raw_tensors_after_the_prefix_do_not_match() -> None:
    tables = protobuf.RawTables()
    first = _request({"a": [0.5, 1.5], "b": [1, 2]}, "FP64")
    body = first.SerializeToString()
    tables.learn(body, first)
    stride = 2 + 16  # tag, length 16, then two float64
    start = len(body) - 2 * stride
    for at in (start, start + 1, start + stride, start + stride + 1):
        broken = bytearray(body)
        broken[at] ^= 0x40
        assert tables.match(bytes(broken)) is None, at
    assert tables.match(body + b"") is not None


def test_a_request_whose_tensors_are_not_its_last_bytes_is_not_kept() -> None:
    request = _request({"a": [0.5, 1.5], "b": [1, 2]}, "FP64")
    late = protobuf.ModelInferRequest(id="late")  # field 3 after field 7: still a valid message
    body = request.SerializeToString() + late.SerializeToString()
    parsed = protobuf.ModelInferRequest.FromString(body)
    assert parsed.id == "late"
    tables = protobuf.RawTables()
    tables.learn(body, parsed)
    assert tables.match(body) is None


def test_the_tables_forget_the_oldest_past_their_limit() -> None:
    tables = protobuf.RawTables(limit=2)
    bodies = []
    for name in ("a", "b", "c"):
        request = _request({name: [1.0], "z": [2.0]}, "FP64")
        bodies.append(request.SerializeToString())
        tables.learn(bodies[-1], request)
    assert [tables.match(b) is not None for b in bodies] == [False, True, True]


def test_a_kept_table_steps_aside_for_a_model_that_wants_other_columns() -> None:
    """After a hot swap to a version with other columns, the same call is read whole and gets
    the general path's error naming the input."""
    from types import SimpleNamespace

    from modelyard.errors import ModelyardError
    from modelyard.serving.doors import GrpcDoor

    tables = protobuf.RawTables()
    first = _request({"a": [0.5], "b": [1.0]}, "FP64")
    body = first.SerializeToString()
    tables.learn(body, first)
    hit = tables.match(body)
    assert hit is not None
    door = GrpcDoor(hit[0].request, body, *hit)
    swapped = SimpleNamespace(validator=_validator("a", "x"))
    with pytest.raises(ModelyardError) as fast:
        door.rows(swapped)  # type: ignore[arg-type]
    general = GrpcDoor(protobuf.ModelInferRequest.FromString(body))
    with pytest.raises(ModelyardError) as slow:
        general.rows(swapped)  # type: ignore[arg-type]
    assert str(fast.value) == str(slow.value) and "x" in str(fast.value)
    fraction = _request({"a": [0.5], "b": [1.5]}, "FP64").SerializeToString()
    hit = tables.match(fraction)
    assert hit is not None
    picky = SimpleNamespace(validator=_validator("a", "b", int_column="b"))
    with pytest.raises(ModelyardError, match="b"):
        GrpcDoor(hit[0].request, fraction, *hit).rows(picky)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "outputs",
    [
        {"p": [[1.5, 2.5]], "label": ["a", "bé"]},
        {"predict": [1, 0, 1]},
        {"x": [[True, False]], "h": [[1.0, 2.0]]},
        {"empty": [[], []]},
        {"scalar": 3.25},
    ],
)
@pytest.mark.parametrize(("version", "request_id"), [("1", ""), ("", "req-7"), ("12", "é")])
def test_raw_answers_are_written_as_protobuf_writes_them(
    outputs: dict[str, Any], version: str, request_id: str
) -> None:
    import numpy as np

    arrays = {
        name: np.asarray(value, dtype=object if name == "label" else None)
        for name, value in outputs.items()
    }
    if "h" in arrays:
        arrays["h"] = arrays["h"].astype(np.float16)
    if "predict" in arrays:
        arrays["predict"] = arrays["predict"].astype(">i8")  # big-endian in, little-endian out
    # protobuf's own serialization of the same message is the reference
    response = protobuf.ModelInferResponse(model_name="m", model_version=version, id=request_id)
    for name, array in arrays.items():
        datatype = codecs.datatype_of(array)
        response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        response.raw_output_contents.append(codecs.tensor_bytes(array, datatype))
    assert protobuf.encode_raw_response("m", version, request_id, arrays) == (
        response.SerializeToString()
    )


@pytest.mark.parametrize("n", [1, 3, 100])  # a few values summed in Python, many by numpy
def test_missing_values_are_found_in_blocks_small_and_large(n: int) -> None:
    import numpy as np

    from modelyard.errors import SignatureMismatchError

    validator = _validator("a", "b")
    block = np.ones((2, n))
    block[0, 0], block[1, -1] = np.inf, -np.inf  # a NaN sum, but no missing value
    rows = validator.from_column_block(("a", "b"), "FP64", block)
    assert rows is not None and np.isinf(rows.matrix).sum() == 2
    block[1, n // 2] = np.nan
    with pytest.raises(SignatureMismatchError, match="Input 'b' has missing values"):
        validator.from_column_block(("a", "b"), "FP64", block)


def test_blocks_in_any_column_order_land_in_the_signatures_order() -> None:
    import itertools

    import numpy as np

    names = ("a", "b", "c", "d")
    validator = _validator(*names)
    for order in itertools.permutations(names):  # 24 orders: more than it keeps
        block = np.array([[float(ord(name))] for name in order])
        rows = validator.from_column_block(order, "FP64", block)
        assert rows is not None and rows.matrix.tolist() == [[97.0, 98.0, 99.0, 100.0]], order
        assert rows.matrix.flags.writeable and rows.matrix.flags.c_contiguous
    assert validator.from_column_block(("a", "b", "c", "e"), "FP64", np.ones((4, 1))) is None
    assert validator.from_column_block(("a", "a", "b", "c"), "FP64", np.ones((4, 1))) is None
