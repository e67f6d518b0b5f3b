"""The request decoders and the validator, called directly: malformed bodies raise
``InvalidInputError`` (400 at the edge) naming the field, never anything else."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelyard.core.types import Signature, TensorSpec
from modelyard.errors import InvalidInputError, ValidationError
from modelyard.serving.codecs import (
    InferenceRequest,
    RequestInput,
    binary_outputs,
    decode_mlflow_json,
    decode_v2,
    deep_json_path,
    encode_v2_binary,
    tensor_array,
)
from modelyard.serving.validation import RequestValidator

DEEP_LIST = "[" * 1000 + "1" + "]" * 1000
DEEP_OBJECT = '{"a":' * 1000 + "1" + "}" * 1000


def numeric_validator() -> RequestValidator:
    columns = (TensorSpec(name="a", dtype="float64"), TensorSpec(name="b", dtype="int64"))
    return RequestValidator(Signature(kind="columns", inputs=columns), model="m")


def column(name: str, data: object, datatype: str = "FP64", **extra: object) -> dict[str, object]:
    size = len(data) if isinstance(data, list) else 1
    return {"name": name, "shape": [size], "datatype": datatype, "data": data, **extra}


def v2_body(*inputs: dict[str, object], **extra: object) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ('{"inputs":[{"name":"a","shape":[1],"datatype":"FP64","data":@}]}'.replace("@", DEEP_LIST),
         "$.inputs[0].data[0]..."),
        ('{"inputs":[],"parameters":{"x":@}}'.replace("@", DEEP_LIST), "$.parameters.x[0][0]..."),
        ('{"inputs":[{"name":"a","shape":[1],"datatype":"FP64","data":[1],"parameters":@}]}'
         .replace("@", DEEP_OBJECT), "$.inputs[0].parameters.a..."),
        ('{"inputs":[],"outputs":[{"name":"p","parameters":@}]}'.replace("@", DEEP_OBJECT),
         "$.outputs[0].parameters.a..."),
    ],
)  # fmt: skip
def test_deep_json_names_its_path(raw: str, path: str) -> None:
    with pytest.raises(InvalidInputError, match="nests JSON more than 64 levels") as caught:
        decode_v2(raw.encode())
    assert f"at {path};" in str(caught.value)


def test_deep_json_path_skips_brackets_inside_strings() -> None:
    assert deep_json_path(b'{"a": "[[[[{{{{\\"", "b": [[1]]}', 3) is None
    assert deep_json_path(b'{"a": "[[[[", "b": [[[1]]]}', 3) == "$.b[0][0]"


def binary_request(size: object, payload: bytes) -> tuple[bytes, str]:
    """A body with one FP64 input of shape [2] in binary, and its header length."""
    item = {"name": "a", "shape": [2], "datatype": "FP64", "parameters": {"binary_data_size": size}}
    head = json.dumps({"inputs": [item]}).encode()
    return head + payload, str(len(head))


def decode_binary(size: object, payload: bytes) -> None:
    body, header = binary_request(size, payload)
    decode_v2(body, header_length=header)


@pytest.mark.parametrize("size", ["16", [16], -8, True, 1.5, {"n": 16}])
def test_binary_data_size_must_be_a_whole_number(size: object) -> None:
    with pytest.raises(InvalidInputError, match=r"Input 'a' has binary_data_size .*whole number"):
        decode_binary(size, np.zeros(2).tobytes())


def test_binary_tensors_must_add_up_to_the_body() -> None:
    ok_body, header = binary_request(16, np.array([1.5, 2.5]).tobytes())
    _, arrays = decode_v2(ok_body, header_length=header)
    assert arrays is not None and arrays[0] is not None
    assert arrays[0].tolist() == [1.5, 2.5]
    with pytest.raises(InvalidInputError, match="binary_data_size 16 but only 10 bytes"):
        decode_binary(16, b"\0" * 10)
    with pytest.raises(InvalidInputError, match="4 bytes after the binary tensors"):
        decode_binary(16, b"\0" * 20)
    with pytest.raises(InvalidInputError, match="has 8 binary bytes but shape"):
        decode_binary(8, b"\0" * 8)
    with pytest.raises(InvalidInputError, match="no Inference-Header-Content-Length header"):
        decode_v2(binary_request(16, b"")[0])


@pytest.mark.parametrize(
    ("header", "message"),
    [("abc", "is 'abc'; send"), ("-5", "is '-5'; send"), ("99999", "is 99999 but the body")],
)
def test_header_length_must_be_a_length_within_the_body(header: str, message: str) -> None:
    body, _ = binary_request(16, b"\0" * 16)
    with pytest.raises(InvalidInputError, match=f"Inference-Header-Content-Length {message}"):
        decode_v2(body, header_length=header)


def test_binary_bytes_elements_may_not_run_past_their_tensor() -> None:
    item = {"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 9}}
    head = json.dumps({"inputs": [item]}).encode()
    body = head + (3).to_bytes(4, "little") + b"abc" + b"\x05\x00"
    with pytest.raises(InvalidInputError, match="BYTES element 1 has a cut length prefix"):
        decode_v2(body, header_length=str(len(head)))
    body = head + (30).to_bytes(4, "little") + b"abcde"
    item["parameters"] = {"binary_data_size": 9}
    with pytest.raises(InvalidInputError, match="BYTES element 0 says 30 bytes but 5 are left"):
        decode_v2(body, header_length=str(len(head)))


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("INT64", [2**64, 1], "Input 'a' has 1.8446744073709552e\\+19 where INT64 holds"),
        ("INT64", [2**63, 1], "where INT64 holds"),
        ("INT64", [float(2**63), 1], "where INT64 holds"),
        ("UINT8", [300, 1], "Input 'a' has 300 where UINT8 holds 0 to 255"),
        ("UINT64", [-1, 1], "where UINT64 holds 0 to"),
        ("INT32", [1.5, 1], "Input 'a' is INT32 but has fractions \\(e.g. 1.5\\)"),
        ("FP16", [1e10, 1], "beyond FP16's range"),
        ("FP32", [1e300, 1], "beyond FP32's range"),
        ("FP64", [10**400, 1], "data does not match datatype FP64"),
        ("BOOL", [1, 0], "data does not match datatype BOOL"),
        ("FP64", ["1.5", "2"], r"data does not match datatype FP64 \(e.g. '1.5'\)"),
        ("INT64", ["1", "2"], "data does not match datatype INT64"),
    ],
)
def test_json_numbers_must_fit_the_declared_datatype(
    datatype: str, data: list[object], message: str
) -> None:
    request, _ = decode_v2(v2_body(column("a", data, datatype)))
    with pytest.raises(InvalidInputError, match=message):
        tensor_array(request.inputs[0])


def test_json_numbers_that_fit_are_kept_exact() -> None:
    request, _ = decode_v2(v2_body(column("a", [2**63 - 1, -(2**63)], "INT64")))
    assert tensor_array(request.inputs[0]).tolist() == [2**63 - 1, -(2**63)]
    request, _ = decode_v2(v2_body(column("a", [1.0, None], "INT64")))
    assert np.isnan(tensor_array(request.inputs[0])[1])


def test_shapes_and_nesting_numpy_cannot_hold_are_refused() -> None:
    item = {"name": "a", "shape": [1] * 70, "datatype": "FP64", "data": [1.0]}
    request, _ = decode_v2(v2_body(item))
    with pytest.raises(InvalidInputError, match=r"Input 'a' has shape .* which numpy cannot hold"):
        tensor_array(request.inputs[0])
    deep = json.loads("[" * 200 + "1" + "]" * 200)
    request, _ = decode_v2(v2_body({"name": "a", "shape": [1], "datatype": "FP64", "data": deep}))
    with pytest.raises(InvalidInputError, match="Input 'a' data nests 65 lists deep"):
        tensor_array(request.inputs[0])
    request, _ = decode_v2(v2_body({"name": "s", "shape": [1], "datatype": "BYTES", "data": deep}))
    with pytest.raises(InvalidInputError, match="Input 's' data nests deeper than its shape"):
        tensor_array(request.inputs[0])
    request, _ = decode_v2(v2_body(column("s", [["x"], "y"], "BYTES")))
    with pytest.raises(InvalidInputError, match="mixes lists and values"):
        tensor_array(request.inputs[0])


def test_mlflow_params_and_deep_bodies() -> None:
    fmt, payload, params = decode_mlflow_json(b'{"instances": [[1, 2]], "params": {"k": [1, "a"]}}')
    assert (fmt, payload, params) == ("instances", [[1, 2]], {"k": [1, "a"]})
    with pytest.raises(InvalidInputError, match=r"'params.k' is .*scalar or a list of scalars"):
        decode_mlflow_json(f'{{"instances": [[1]], "params": {{"k": {DEEP_OBJECT}}}}}'.encode())
    deeper = "[" * 1100 + "]" * 1100
    with pytest.raises(InvalidInputError, match=r"more than 64 levels deep at \$.instances"):
        decode_mlflow_json(f'{{"instances": {deeper}}}'.encode())


def test_validator_refuses_text_for_numeric_inputs() -> None:
    validator = numeric_validator()
    request, _ = decode_v2(v2_body(column("a", ["1.5"], "BYTES"), column("b", [1], "INT64")))
    with pytest.raises(ValidationError, match="Input 'a' is BYTES but model 'm' expects FP64"):
        validator.from_request(request.inputs)
    request, _ = decode_v2(v2_body(column("a", [1.5]), column("b", ["1"], "BYTES")))
    with pytest.raises(ValidationError, match="Input 'b' is BYTES but model 'm' expects INT64"):
        validator.from_request(request.inputs)
    request, _ = decode_v2(v2_body({"name": "x", "shape": [1, 2], "datatype": "BYTES",
                                    "data": [["1.5", "2"]]}))  # fmt: skip
    with pytest.raises(ValidationError, match="Input 'x' is BYTES but model 'm' expects FP64"):
        validator.from_request(request.inputs)


def test_tables_parse_numbers_written_as_text() -> None:
    """Tables carry no datatype (MLflow JSON, CSV, Parquet in batch scoring): numeric text is
    parsed there, and text that is no number is named."""
    validator = numeric_validator()
    rows = validator.from_split(["a", "b"], [["1.5", 2]])
    assert rows.matrix is not None and rows.matrix.tolist() == [[1.5, 2.0]]
    with pytest.raises(
        ValidationError, match=r"Input 'b' takes int values, got object \(e.g. 'x'\)"
    ):
        validator.from_rows([{"a": 1.5, "b": "2"}, {"a": 1.0, "b": "x"}], field="dataframe_records")


def test_validator_takes_other_numeric_datatypes() -> None:
    validator = numeric_validator()
    expected = validator.from_request(
        decode_v2(v2_body(column("a", [0.5]), column("b", [2])))[0].inputs
    )
    for a_type, b_type in (("FP32", "INT64"), ("INT64", "FP64"), ("FP16", "INT32")):
        body = v2_body(column("a", [0.5] if a_type != "INT64" else [1], a_type),
                       column("b", [2], b_type))  # fmt: skip
        rows = validator.from_request(decode_v2(body)[0].inputs)
        assert rows.matrix is not None and expected.matrix is not None
        assert rows.matrix[0, 1] == expected.matrix[0, 1] == 2.0


@pytest.mark.parametrize(
    ("columns", "data", "message"),
    [
        (5, [[1, 2]], "'dataframe_split.columns' is 5; send a list"),
        ("ab", [[1, 2]], "'dataframe_split.columns' is 'ab'"),
        (["a", "b"], 5, "'dataframe_split.data' is 5"),
        (["a", "b"], [[[1, 2]]], r"row 0 is \[\[1, 2\]\] but there are 2 columns"),
        (["a", "b"], [[1, 2], [3]], r"row 1 is \[3\] but there are 2 columns"),
    ],
)
def test_dataframe_split_of_the_wrong_shape(columns: object, data: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        numeric_validator().from_split(columns, data)


def test_rows_of_mixed_kinds_are_refused() -> None:
    validator = numeric_validator()
    with pytest.raises(InvalidInputError, match="'instances' mixes records"):
        validator.from_rows([{"a": 1, "b": 2}, [1, 2]])
    deep = json.loads("[" * 900 + "]" * 900)
    with pytest.raises(InvalidInputError, match="'inputs' is not a table of values"):
        validator.from_rows(deep, field="inputs")


def test_text_columns_take_no_lists_or_objects() -> None:
    columns = (TensorSpec(name="age", dtype="float64"), TensorSpec(name="city", dtype="string"))
    validator = RequestValidator(Signature(kind="columns", inputs=columns), model="m")
    assert validator.from_rows([{"age": 30.0, "city": "rome"}]).columns is not None
    said = "Input 'city' takes text, but row"
    for city, shown in (([1], r"\[1\]"), ({"a": 1}, "{'a': 1}")):
        with pytest.raises(ValidationError, match=rf"{said} 1 is {shown}"):
            validator.from_rows([{"age": 30.0, "city": "rome"}, {"age": 1.0, "city": city}])
    with pytest.raises(ValidationError, match=rf"{said} 0 is \['rome'\]"):
        validator.from_split(["age", "city"], [[30.0, ["rome"]]])


def test_text_columns_take_strings_and_nulls_only_where_training_had_them() -> None:
    columns = (TensorSpec(name="age", dtype="float64"), TensorSpec(name="city", dtype="string"),
               TensorSpec(name="plan", dtype="string", nullable=True))  # fmt: skip
    validator = RequestValidator(Signature(kind="columns", inputs=columns), model="m")

    def v2(city: object, plan: object = "a") -> list[RequestInput]:
        body = {"inputs": [column("age", [30.0]), column("city", [city], "BYTES"),
                           column("plan", [plan], "BYTES")]}  # fmt: skip
        return decode_v2(json.dumps(body).encode())[0].inputs

    for city, shown in ((5, "5"), (5.5, "5.5"), (True, "true"), (None, "null")):
        with pytest.raises(ValidationError, match=f"Input 'city' takes text, but row 0 is {shown}"):
            validator.from_request(v2(city))
        with pytest.raises(ValidationError, match="Input 'city' takes text"):
            validator.from_rows([{"age": 30.0, "city": city, "plan": "a"}])
    rows = validator.from_request(v2("rome", None))  # plan had nulls in training
    assert rows.columns is not None and rows.columns[2].tolist() == [None]
    # a CSV-like table whose text column looks numeric stays text (see _mlflow_rows)
    frame = pd.DataFrame({"age": [30.0], "city": ["75001"], "plan": [float("nan")]})
    assert validator.from_frame(frame).columns is not None


def test_true_and_false_are_not_numbers() -> None:
    validator = numeric_validator()
    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [True, False]}]}
    with pytest.raises(ValidationError, match="does not match datatype FP64"):
        validator.from_request(decode_v2(json.dumps(body).encode())[0].inputs)
    with pytest.raises(ValidationError, match="Input 'a' takes float values, got true/false"):
        validator.from_rows([{"a": True, "b": 1.0}])


@pytest.mark.parametrize(
    ("data", "shape", "message"),
    [
        ([1, "a"], [2], r"does not match datatype FP64 \(e.g. 'a'\)"),
        ([1.0, {"k": 1}], [2], r"does not match datatype FP64 \(e.g. \{'k': 1\}\)"),
        ([[1, 2], [1]], [2, 2], r"is ragged .*send shape \[2, 2\] in full"),
        ([1, [2]], [2], "mixes lists and values"),
    ],
)
def test_mismatch_names_the_first_wrong_value(
    data: list[object], shape: list[int], message: str
) -> None:
    item = {"name": "a", "shape": shape, "datatype": "FP64", "data": data}
    request, _ = decode_v2(v2_body(item))
    with pytest.raises(InvalidInputError, match=message):
        tensor_array(request.inputs[0])


def test_metadata_datatypes_cover_every_numpy_type() -> None:
    from modelyard.serving.codecs import datatype_for

    pairs = {"float64": "FP64", "float32": "FP32", "float16": "FP16", "int64": "INT64",
             "int8": "INT8", "uint16": "UINT16", "uint64": "UINT64", "bool": "BOOL",
             "string": "BYTES", "category": "BYTES", "datetime64[ns]": "BYTES",
             "datetime64[ns, UTC]": "BYTES"}  # fmt: skip
    assert {dtype: datatype_for(dtype) for dtype in pairs} == pairs


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=4),
)  # fmt: skip
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=12,
)
_tensors = st.fixed_dictionaries(
    {"name": st.sampled_from(["a", "b", "x", "zz"]),
     "shape": st.lists(st.integers(min_value=-2, max_value=5), max_size=3),
     "datatype": st.sampled_from(["FP64", "FP32", "FP16", "INT64", "UINT8", "BOOL", "BYTES", "X"]),
     "data": _values},
    optional={"parameters": st.dictionaries(st.sampled_from(["binary_data_size", "p"]), _values)},
)  # fmt: skip
_mixed_signature = Signature(kind="columns", inputs=(
    TensorSpec(name="a", dtype="float64"), TensorSpec(name="b", dtype="string"),
))  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_tensors, min_size=1, max_size=3), st.binary(max_size=24) | st.none())
def test_any_v2_body_decodes_or_raises_a_validation_error(
    inputs: list[dict[str, object]], binary: bytes | None
) -> None:
    head = json.dumps({"inputs": inputs}).encode()
    body, header = (head, None) if binary is None else (head + binary, str(len(head)))
    for validator in (numeric_validator(), RequestValidator(_mixed_signature)):
        try:
            request, arrays = decode_v2(body, header_length=header)
            validator.from_request(request.inputs, arrays)
        except ValidationError:
            pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["dataframe_split", "dataframe_records", "instances", "inputs"]), _values,
       _values)  # fmt: skip
def test_any_mlflow_body_decodes_or_raises_a_validation_error(
    key: str, payload: object, columns: object
) -> None:
    if key == "dataframe_split" and isinstance(payload, list):
        payload = {"columns": columns, "data": payload}
    for validator in (numeric_validator(), RequestValidator(_mixed_signature)):
        try:
            fmt, value, _ = decode_mlflow_json(json.dumps({key: payload}).encode())
            if fmt == "dataframe_split":
                if not isinstance(value, dict) or "data" not in value:
                    continue
                validator.from_split(value.get("columns") or validator.names, value["data"])
            else:
                validator.from_rows(value, field=fmt)
        except ValidationError:
            pass


@pytest.mark.parametrize("rows", [1, 3])
def test_missing_values_are_refused_and_infinities_kept_in_one_and_many_rows(rows: int) -> None:
    columns = tuple(TensorSpec(name=n, dtype="float64") for n in ("a", "b", "c"))
    validator = RequestValidator(Signature(kind="columns", inputs=columns), model="m")
    body = {"inputs": [column("a", [1.0] * rows), column("b", [None] * rows),
                       column("c", [0.5] * rows)]}  # fmt: skip
    with pytest.raises(ValidationError, match="'b' has missing values"):
        validator.from_request(decode_v2(json.dumps(body).encode())[0].inputs)
    # binary tensors (the gRPC door's block of columns) can hold infinities, which are no
    # missing value
    block = np.array([[np.inf] * rows, [-np.inf] * rows, [0.5] * rows])
    rows_ = validator.from_column_block(["a", "b", "c"], "FP64", block)
    assert rows_ is not None and rows_.matrix is not None
    assert np.isinf(rows_.matrix[:, :2]).all() and rows_.matrix.shape == (rows, 3)
    block[1, -1] = np.nan
    with pytest.raises(ValidationError, match="'b' has missing values"):
        validator.from_column_block(["a", "b", "c"], "FP64", block)


def _outcome(validator: RequestValidator, body: bytes) -> object:
    try:
        rows = validator.from_request(decode_v2(body)[0].inputs)
    except ValidationError as exc:
        return type(exc).__name__, str(exc)
    assert rows.matrix is not None
    return rows.n, rows.matrix.shape, rows.matrix.tobytes()  # NaN equal to NaN


_VALUES = st.one_of(
    st.floats(allow_nan=False, width=64), st.integers(-(2**70), 2**70), st.booleans(),
    st.none(), st.just("1.5"), st.lists(st.floats(allow_nan=False), max_size=2),
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    order=st.permutations(["a", "b", "c"]),
    n=st.integers(1, 3),
    values=st.lists(_VALUES, min_size=9, max_size=9),
    datatypes=st.lists(st.sampled_from(["FP64", "FP32", "INT64", "BYTES"]), min_size=3,
                       max_size=3),
    shapes=st.lists(st.sampled_from(["n", "n1", "other"]), min_size=3, max_size=3),
)  # fmt: skip
def test_the_one_call_path_for_numeric_columns_agrees_with_the_general_path(
    order: list[str], n: int, values: list[object], datatypes: list[str], shapes: list[str]
) -> None:
    """``_numeric_columns`` (one numpy call for the usual request) gives the rows the general
    path gives, or leaves the request to it: same rows, same errors, for any body."""
    columns = (TensorSpec(name="a", dtype="float64"), TensorSpec(name="b", dtype="float64"),
               TensorSpec(name="c", dtype="int64"))  # fmt: skip
    signature = Signature(kind="columns", inputs=columns)
    inputs = []
    for i, name in enumerate(order):
        shape = {"n": [n], "n1": [n, 1], "other": [n + 1]}[shapes[i]]
        inputs.append({"name": name, "shape": shape, "datatype": datatypes[i],
                       "data": values[3 * i : 3 * i + n]})  # fmt: skip
    body = v2_body(*inputs)
    usual = _outcome(RequestValidator(signature, model="m"), body)
    general = RequestValidator(signature, model="m")
    general._numeric_columns = lambda inputs: None  # type: ignore[method-assign]
    assert usual == _outcome(general, body)


def test_names_in_another_unicode_form_a_3d_tensor_and_scalar_columns() -> None:
    import unicodedata

    columns = (
        TensorSpec(name="température", dtype="float64"),
        TensorSpec(name="b", dtype="float64"),
    )
    validator = RequestValidator(Signature(kind="columns", inputs=columns), model="m")
    decomposed = unicodedata.normalize("NFD", "température")
    assert decomposed != "température"
    body = {"inputs": [column(decomposed, [1.5]), column("b", [2.0])]}
    rows = validator.from_request(decode_v2(json.dumps(body).encode())[0].inputs)
    assert rows.matrix is not None and rows.matrix.tolist() == [[1.5, 2.0]]
    cube = {"inputs": [{"name": "x", "shape": [1, 1, 2], "datatype": "FP64", "data": [1.0, 2.0]}]}
    with pytest.raises(ValidationError, match=r"^Input 'x' has shape \[1, 1, 2\]; the model takes"):
        validator.from_request(decode_v2(json.dumps(cube).encode())[0].inputs)
    # MLflow's inputs as columns of one value each: one row
    one = validator.from_rows({"température": 1.5, "b": 2.0}, field="inputs")
    assert one.matrix is not None and one.matrix.tolist() == [[1.5, 2.0]]


def test_binary_outputs_follow_the_request_and_each_output() -> None:
    def asked(**fields: object) -> object:
        request = decode_v2(v2_body(column("a", [1.0]), **fields))[0]
        assert isinstance(request, InferenceRequest)
        return binary_outputs(request)

    assert asked() is None
    assert asked(outputs=[{"name": "p"}], parameters={"priority": 1}) is None
    assert asked(parameters={"binary_data_output": False}) is None
    assert asked(parameters={"binary_data_output": True}) == (True, {})
    assert asked(
        parameters={"binary_data_output": True},
        outputs=[{"name": "p", "parameters": {"binary_data": False}}, {"name": "q"}],
    ) == (True, {"p": False})
    assert asked(outputs=[{"name": "q", "parameters": {"binary_data": True}}]) == (
        False, {"q": True},
    )  # fmt: skip
    with pytest.raises(InvalidInputError, match=r"parameters.binary_data_output is null; it"):
        asked(parameters={"binary_data_output": None})
    with pytest.raises(InvalidInputError, match=r"Output 'q' has binary_data 'yes'; it must be"):
        asked(outputs=[{"name": "q", "parameters": {"binary_data": "yes"}}])


def test_binary_answers_hold_each_datatype_little_endian_in_order() -> None:
    outputs = {
        "labels": np.array([["rome", "paris"], [None, "été"]], dtype=object),
        "flags": np.array([True, False, True]),
        "half": np.array([1.5, np.nan], dtype=np.float16),
        "big": np.array([1, -2], dtype=">i4"),
        "kept": np.array([0.25, np.inf]),
    }
    body, length = encode_v2_binary(
        model_name="m", model_version="3", request_id="r1", outputs=outputs,
        binary=(True, {"kept": False}),
    )  # fmt: skip
    assert length is not None
    header = json.loads(body[:length])
    assert header["id"] == "r1" and header["model_version"] == "3"
    described = {o["name"]: o for o in header["outputs"]}
    assert [o["name"] for o in header["outputs"]] == list(outputs)
    assert described["kept"]["data"] == [0.25, None] and "parameters" not in described["kept"]
    text = "été".encode()
    size = 16 + len(b"rome") + len(b"paris") + len(text)  # four 4-byte lengths, the texts
    assert described["labels"] == {"name": "labels", "datatype": "BYTES", "shape": [2, 2],
                                   "parameters": {"binary_data_size": size}}  # fmt: skip
    assert body[length:] == (
        b"\x04\x00\x00\x00rome\x05\x00\x00\x00paris\x00\x00\x00\x00"
        + len(text).to_bytes(4, "little") + text
        + b"\x01\x00\x01"
        + np.array([1.5, np.nan], dtype="<f2").tobytes()
        + b"\x01\x00\x00\x00\xfe\xff\xff\xff"
    )  # fmt: skip
    assert all("data" not in described[n] for n in ("labels", "flags", "half", "big"))
    empty, none = encode_v2_binary(
        model_name="m", model_version="3", request_id=None,
        outputs={"p": np.zeros(0, dtype=np.int64)}, binary=(True, {}),
    )  # fmt: skip
    assert none is None  # no byte to follow: JSON alone, as Triton answers
    assert json.loads(empty)["outputs"][0]["parameters"] == {"binary_data_size": 0}


def test_an_empty_batch_and_a_lone_surrogate_are_named_as_such() -> None:
    columns = (TensorSpec(name="age", dtype="int64"), TensorSpec(name="active", dtype="bool"),
               TensorSpec(name="city", dtype="string"))  # fmt: skip
    validator = RequestValidator(Signature(kind="columns", inputs=columns), model="m")
    kinds = (("age", "INT64"), ("active", "BOOL"), ("city", "BYTES"))
    empty = {"inputs": [{"name": n, "shape": [0], "datatype": d, "data": []} for n, d in kinds]}
    with pytest.raises(InvalidInputError, match=r"^The inputs have no rows"):
        validator.from_request(decode_v2(json.dumps(empty).encode())[0].inputs)
    lone = b'{"inputs":[{"name":"x","shape":[1],"datatype":"BYTES","data":["x\\ud83d"]}]}'
    with pytest.raises(InvalidInputError, match=r"holds \\ud83d without its low surrogate"):
        decode_v2(lone)
