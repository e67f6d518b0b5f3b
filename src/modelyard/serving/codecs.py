"""Wire formats: the Open Inference Protocol v2 REST body (KServe, Triton, MLServer) including
Triton's binary tensor extension, and MLflow's ``/invocations`` payloads (JSON and CSV).

Decoding turns a body into named numpy tensors; ``validation`` checks them against the model's
signature. Nothing here knows about HTTP statuses: bad input raises ``InvalidInputError``.
"""

from __future__ import annotations

import functools
import math
import re
import reprlib
import sys
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import orjson

from modelyard.errors import InvalidInputError

Array = npt.NDArray[Any]
_LITTLE = sys.byteorder == "little"

#: Open Inference Protocol datatypes and their numpy types (BYTES holds Python strings).
DATATYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}
_KIND_TO_DATATYPE = {"b": "BOOL", "O": "BYTES", "U": "BYTES", "S": "BYTES"}


class RequestInput(msgspec.Struct, gc=False):
    name: str
    shape: list[int]
    datatype: str
    data: Any = None
    parameters: dict[str, Any] | None = None


class RequestOutput(msgspec.Struct, gc=False):
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(msgspec.Struct, gc=False):
    inputs: list[RequestInput]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[RequestOutput] | None = None


_v2_decoder = msgspec.json.Decoder(InferenceRequest)

#: The depth past which error messages point into request JSON. JSON too deep for the decoders
#: (Python's recursion limit, about 1,000 levels) is refused with the path to the first value
#: nested deeper than this; tensor data nested deeper than its shape is refused when decoded.
MAX_JSON_DEPTH = 64
_INTEGER_DATATYPES = {
    name: np.iinfo(dtype) for name, dtype in DATATYPES.items() if np.dtype(dtype).kind in "iu"
}
_NARROW_FLOATS = {"FP16": float(np.finfo(np.float16).max), "FP32": float(np.finfo(np.float32).max)}


def decode_v2(
    body: bytes, *, header_length: str | None = None
) -> tuple[InferenceRequest, list[Array | None] | None]:
    """Parse an inference request into its envelope and, for Triton's binary extension, the
    raw tensors (``None`` where an input's values are in the JSON).

    ``header_length`` is Triton's ``Inference-Header-Content-Length`` as sent: the JSON part is
    that long and the raw tensor bytes follow, each input naming its ``binary_data_size``. JSON
    values stay Python lists here: ``tensor_array`` turns one into an array when needed, and
    the validator builds a whole matrix of one-value columns in one numpy call.
    """
    length = _header_length(header_length, len(body))
    json_part = body if length is None else body[:length]
    try:
        request = _v2_decoder.decode(json_part)
    except msgspec.ValidationError as exc:
        raise InvalidInputError(f"The inference request is malformed: {exc}.") from None
    except msgspec.DecodeError as exc:
        raise InvalidInputError(
            f"The inference request is not valid JSON: {_json_problem(exc, json_part)}."
        ) from None
    except RecursionError:
        raise too_deep("The inference request", deep_json_path(json_part, MAX_JSON_DEPTH)) from None
    if not request.inputs:
        raise InvalidInputError("The inference request has no inputs; send at least one tensor.")
    if length is None and not any(item.parameters for item in request.inputs):
        return request, None  # the usual JSON request: no input has parameters
    sizes = [_binary_size(item) for item in request.inputs]
    if length is None:
        binary = [i.name for i, size in zip(request.inputs, sizes, strict=True) if size is not None]
        if binary:
            raise InvalidInputError(
                f"Input '{binary[0]}' has a binary_data_size but the request has no "
                "Inference-Header-Content-Length header; send the header with binary tensors."
            )
        return request, None
    rest = memoryview(body)[length:]
    offset = 0
    arrays: list[Array | None] = []
    for item, size in zip(request.inputs, sizes, strict=True):
        if size is None:
            arrays.append(None)
            continue
        if offset + size > len(rest):
            raise InvalidInputError(
                f"Input '{item.name}' has binary_data_size {size} but only "
                f"{len(rest) - offset} bytes of binary data are left in the body."
            )
        arrays.append(binary_tensor(item, rest[offset : offset + size]))
        offset += size
    if offset != len(rest):
        raise InvalidInputError(
            f"The body has {len(rest) - offset} bytes after the binary tensors; "
            "Inference-Header-Content-Length and each binary_data_size must add up to the body."
        )
    return request, arrays


def _header_length(value: str | None, body_size: int) -> int | None:
    if value is None or value == "":
        return None
    text = value.strip()
    if not text.isdigit() or not text.isascii() or len(text) > 18:
        raise InvalidInputError(
            f"Inference-Header-Content-Length is {value[:40]!r}; send the JSON part's length in "
            "bytes (a whole number no larger than the body)."
        )
    length = int(text)
    if length > body_size:
        raise InvalidInputError(
            f"Inference-Header-Content-Length is {length} but the body has {body_size} bytes; "
            "send the JSON part's length in bytes."
        )
    return length


def _binary_size(item: RequestInput) -> int | None:
    size = (item.parameters or {}).get("binary_data_size")
    if size is None:
        return None
    if type(size) is not int or size < 0:
        raise InvalidInputError(
            f"Input '{item.name}' has binary_data_size {shown(size)}; it must be a whole "
            "number of bytes (>= 0)."
        )
    return size


_repr = reprlib.Repr()  # a constant: the limits below, set once (3.11 takes no arguments)
_repr.maxlevel, _repr.maxlist, _repr.maxdict, _repr.maxstring = 3, 4, 4, 40


def shown(value: Any) -> str:
    """A short repr for error messages, safe for deep or huge values."""
    text = _repr.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def json_shown(value: object) -> str:
    """A value as the client wrote it in JSON (``null``, ``true``), else as ``shown`` does."""
    if value is None:
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    return shown(value)


_LONE_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])")


def _json_problem(exc: Exception, body: bytes) -> str:
    """msgspec's reason, except where it misleads: a string ending in a lone UTF-16 high
    surrogate escape (``"x\\ud83d"``) is reported as truncated input."""
    if "truncated" in str(exc):
        lone = _LONE_SURROGATE.search(body)
        if lone is not None:
            return (
                f"a string holds {lone.group().decode()} without its low surrogate (a lone "
                f"UTF-16 surrogate escape, at byte {lone.start()}); send valid UTF-16 pairs"
            )
    return str(exc)


def tensor_array(item: RequestInput) -> Array:
    """The numpy array of an input whose values came as JSON.

    Numbers are checked against the datatype the input declares (whole numbers within range for
    the integer types, within range for FP16 and FP32) but kept wide: float64 for the FP types
    (``null`` becomes NaN) and int64 or uint64 for the integer types, float64 where one is
    ``null``. BOOL takes ``true``/``false`` only; BYTES takes strings (or ``null``).
    """
    return _json_tensor(item)


def element_count(item: RequestInput) -> int:
    """How many values ``item``'s shape holds (its dimensions checked)."""
    if any(not isinstance(d, int) or d < 0 for d in item.shape):
        raise InvalidInputError(
            f"Input '{item.name}' has shape {item.shape}; dimensions must be whole numbers >= 0."
        )
    return math.prod(item.shape)


def _dtype(item: RequestInput) -> Any:
    dtype = DATATYPES.get(item.datatype)
    if dtype is None:
        raise InvalidInputError(
            f"Input '{item.name}' has datatype {shown(item.datatype)}; use one of "
            f"{', '.join(DATATYPES)}."
        )
    return dtype


def _json_tensor(item: RequestInput) -> Array:
    dtype = _dtype(item)
    expected = element_count(item)
    data = item.data
    if data is None:
        raise InvalidInputError(f"Input '{item.name}' has no data.")
    if not isinstance(data, list):
        data = [data]
    if dtype is np.object_:
        array = _text_array(item, data)
    else:
        try:
            array = _number_array(item, data)
        except (ValueError, TypeError, OverflowError):
            raise _mismatch(item, data) from None
    if array.size != expected:
        raise InvalidInputError(
            f"Input '{item.name}' has {array.size} values but shape {item.shape} needs {expected}."
        )
    return reshaped(item, array)


def _number_array(item: RequestInput, data: list[Any]) -> Array:
    datatype = item.datatype
    if datatype == "BOOL":
        array = np.asarray(data)
        if array.size == 0:
            return array.astype(np.bool_).ravel()  # no values: the shape says whether none is right
        if array.dtype.kind != "b":
            raise ValueError("not true/false")
        return array.ravel()
    sample = _depth_and_sample(data)[1]
    if isinstance(sample, str) or type(sample) is bool:
        # numbers written as JSON strings or true/false: refused, not cast (numpy would parse
        # "1.5" and take true as 1); the first value tells, as one look is all the one-call
        # path can afford
        raise ValueError("text")
    if datatype not in _INTEGER_DATATYPES:
        array = np.asarray(data, dtype=np.float64).ravel()
    else:
        array = np.asarray(data).ravel()  # int64/uint64 as given: exact past 2**53
        if array.dtype.kind not in "iub":
            if array.dtype.kind in "US":
                raise ValueError("text")
            array = np.asarray(data, dtype=np.float64).ravel()  # null -> NaN
    check_number_range(item.name, datatype, array)
    return array


def check_number_range(name: str, datatype: str, values: Array) -> None:
    """Refuse numbers that the declared integer or narrow float datatype cannot hold."""
    bounds = _INTEGER_DATATYPES.get(datatype)
    if bounds is not None:
        if values.dtype.kind == "f":
            finite = values[np.isfinite(values)]
            fractional = finite != np.round(finite)
            if fractional.any():
                raise InvalidInputError(
                    f"Input '{name}' is {datatype} but has fractions (e.g. "
                    f"{finite[fractional][0]}); send whole numbers or declare FP64."
                )
            if np.isinf(values).any():
                raise InvalidInputError(f"Input '{name}' is {datatype} but has infinite values.")
            values = finite
        if values.size and values.dtype.kind != "b":
            low, high = values.min(), values.max()
            # floats compare with max + 1 (exact): max itself rounds up to it in float64
            too_high = (
                high >= float(bounds.max) + 1.0 if high.dtype.kind == "f" else high > bounds.max
            )
            if low < bounds.min or too_high:
                bad = low if low < bounds.min else high
                raise InvalidInputError(
                    f"Input '{name}' has {bad} where {datatype} holds {bounds.min} to "
                    f"{bounds.max}; send values in range or declare a wider datatype."
                )
        return
    limit = _NARROW_FLOATS.get(datatype)
    if limit is not None and values.size:
        finite = values[np.isfinite(values)]
        if finite.size and float(np.abs(finite).max()) > limit:
            raise InvalidInputError(
                f"Input '{name}' has values beyond {datatype}'s range (+-{limit:.4g}); declare "
                "FP64 for larger numbers."
            )


def _text_array(item: RequestInput, data: list[Any]) -> Array:
    values = _flatten(item, data)
    bad = next((v for v in values if isinstance(v, dict)), None)
    if bad is not None:
        raise InvalidInputError(
            f"Input '{item.name}' is BYTES but holds an object (e.g. {shown(bad)}); send one "
            "string per element."
        )
    return np.array(values, dtype=object)


def reshaped(item: RequestInput, array: Array) -> Array:
    """``array`` in ``item``'s shape."""
    try:
        return array.reshape(item.shape)
    except ValueError:
        raise InvalidInputError(
            f"Input '{item.name}' has shape {shown(item.shape)}, which numpy cannot hold; "
            "send a 1-D or 2-D tensor."
        ) from None


def _mismatch(item: RequestInput, data: list[Any]) -> InvalidInputError:
    depth, sample = _depth_and_sample(data)
    if depth > max(len(item.shape), 1):
        return InvalidInputError(
            f"Input '{item.name}' data nests {depth} lists deep but its shape "
            f"{shown(item.shape)} has {len(item.shape)} dimensions; send the values flat "
            "(row-major) or nested once per dimension."
        )
    values = _flatten(item, data)  # raises for mixed nesting, naming it
    boolean = item.datatype == "BOOL"
    bad = next((v for v in values if (type(v) is not bool if boolean else _not_a_number(v))), None)
    if bad is None and depth > 1:
        return InvalidInputError(
            f"Input '{item.name}' data is ragged (its nested lists differ in length); send "
            f"shape {shown(item.shape)} in full."
        )
    return InvalidInputError(
        f"Input '{item.name}' data does not match datatype {item.datatype} "
        f"(e.g. {shown(sample if bad is None else bad)}); send {item.datatype} values."
    )


def _not_a_number(value: Any) -> bool:
    return value is not None and not (isinstance(value, (int, float)) and abs(value) < 2.0**64)


def _depth_and_sample(data: Any) -> tuple[int, Any]:
    depth = 0
    while isinstance(data, list) and data and depth <= MAX_JSON_DEPTH:
        data = data[0]
        depth += 1
    return depth, data


def binary_tensor(item: RequestInput, chunk: memoryview) -> Array:
    """The array of ``item`` from its little-endian bytes (BYTES: length-prefixed elements)."""
    dtype = _dtype(item)
    expected = element_count(item)
    if dtype is np.object_:
        array = np.array(_binary_strings(item, bytes(chunk)), dtype=object)
    else:
        width = np.dtype(dtype).itemsize
        if len(chunk) != expected * width:
            raise InvalidInputError(
                f"Input '{item.name}' has {len(chunk)} binary bytes but shape {item.shape} of "
                f"{item.datatype} needs {expected * width}."
            )
        array = np.frombuffer(chunk, dtype=np.dtype(dtype).newbyteorder("<")).copy()
    if array.size != expected:
        raise InvalidInputError(
            f"Input '{item.name}' has {array.size} values but shape {item.shape} needs {expected}."
        )
    return reshaped(item, array)


def _binary_strings(item: RequestInput, raw: bytes) -> list[str]:
    """BYTES elements in Triton's binary form: a 4-byte little-endian length, then the bytes.
    Errors name an element by its 0-based index, as every tensor index in messages is."""
    values: list[str] = []
    pos = 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise InvalidInputError(
                f"Input '{item.name}' binary BYTES element {len(values)} has a cut length "
                f"prefix ({len(raw) - pos} of 4 bytes)."
            )
        length = int.from_bytes(raw[pos : pos + 4], "little")
        end = pos + 4 + length
        if end > len(raw):
            raise InvalidInputError(
                f"Input '{item.name}' binary BYTES element {len(values)} says {length} "
                f"bytes but {len(raw) - pos - 4} are left."
            )
        values.append(utf8_text(item.name, len(values), raw[pos + 4 : end]))
        pos = end
    return values


def utf8_text(name: str, index: int, raw: bytes) -> str:
    """BYTES element ``index`` (0-based) of input ``name`` as text; invalid UTF-8 is refused
    (a replacement character would silently change what the model reads)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"Input '{name}' BYTES element {index} is not valid UTF-8 (byte {exc.start}: "
            f"{raw[exc.start : exc.start + 1]!r}); send text encoded as UTF-8."
        ) from None


def _flatten(item: RequestInput, data: list[Any]) -> list[Any]:
    """Row-major values of nested lists, one level at a time (no recursion), at most one
    level per dimension of the shape."""
    out = data
    for _ in range(max(len(item.shape), 1)):
        lists = sum(1 for v in out if isinstance(v, list))
        if lists == 0:
            return out
        if lists != len(out):
            raise InvalidInputError(
                f"Input '{item.name}' data mixes lists and values at one level; send the "
                "values flat (row-major) or nested once per dimension."
            )
        out = [v for sub in out for v in sub]
    if any(isinstance(v, list) for v in out):
        raise InvalidInputError(
            f"Input '{item.name}' data nests deeper than its shape {shown(item.shape)}; send "
            "the values flat (row-major) or nested once per dimension."
        )
    return out


def too_deep(what: str, path: str | None) -> InvalidInputError:
    where = f" at {path}" if path else ""
    return InvalidInputError(
        f"{what} nests JSON more than {MAX_JSON_DEPTH} levels deep{where}; send tensor data "
        "flat or nested once per dimension."
    )


_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"\s*:?|[\[\]{},]')


def deep_json_path(body: bytes, limit: int) -> str | None:
    """The path (``$.inputs[0].data``) of the first value nested more than ``limit`` deep:
    the last object key above the deep part. For error messages: a scan in Python."""
    stack: list[list[Any]] = []  # [kind, key or index]
    for match in _TOKENS.finditer(body):
        token = match.group()
        first = token[:1]
        if first == b'"':
            if token.endswith(b":") and stack and stack[-1][0] == "{":
                stack[-1][1] = token.rstrip(b": \t\r\n")[1:-1].decode("utf-8", "replace")
        elif first in b"[{":
            stack.append([first.decode(), 0 if first == b"[" else None])
            if len(stack) > limit:
                return _path(stack)
        elif first in b"]}":
            if stack:
                stack.pop()
        elif stack and stack[-1][0] == "[":
            stack[-1][1] += 1
    return None


def _path(stack: list[list[Any]]) -> str:
    parts = []
    for kind, key in stack[:-1]:  # the last container is the one too deep
        parts.append(f"[{key}]" if kind == "[" else f".{key}")
    return "$" + "".join(parts[:4]) + ("..." if len(parts) > 4 else "")


def datatype_of(array: Array) -> str:
    """The Open Inference Protocol datatype of a numpy array."""
    return _datatype_of_dtype(array.dtype)


@functools.lru_cache(maxsize=256)  # text dtypes differ by length (<U5, <U12...)
def _datatype_of_dtype(dtype: np.dtype[Any]) -> str:
    kind = dtype.kind
    if kind in _KIND_TO_DATATYPE:
        return _KIND_TO_DATATYPE[kind]
    return {
        "i": f"INT{dtype.itemsize * 8}",
        "u": f"UINT{dtype.itemsize * 8}",
        "f": f"FP{dtype.itemsize * 8}",
    }.get(kind, "BYTES")


def datatype_for(dtype_name: str) -> str:
    """The Open Inference Protocol datatype of a signature dtype (``float64``, ``string``...):
    numbers and bools by their numpy type, anything else (text, category, datetime) BYTES."""
    try:
        dtype = np.dtype(dtype_name)
    except TypeError:
        return "BYTES"
    return datatype_of(np.empty(0, dtype=dtype)) if dtype.kind in "biuf" else "BYTES"


def _json_values(array: Array) -> Any:
    if array.dtype.kind in "OUSM":
        return array.ravel().tolist()
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        return [None if not math.isfinite(v) else v for v in array.ravel().tolist()]
    return array.ravel()


def encode_v2(
    *, model_name: str, model_version: str, request_id: str | None, outputs: dict[str, Array]
) -> bytes:
    """An inference response: each output flat (row-major) with its shape and datatype."""
    body: dict[str, Any] = {
        "model_name": model_name,
        "model_version": model_version,
        "outputs": [
            {
                "name": name,
                "datatype": datatype_of(array),
                "shape": list(array.shape),
                "data": _json_values(array),
            }
            for name, array in outputs.items()
        ],
    }
    if request_id is not None:
        body["id"] = request_id
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


#: Which outputs an answer carries as Triton binary tensors: the request's
#: ``binary_data_output`` (for every output) and each named output's ``binary_data``.
BinaryOutputs = tuple[bool, dict[str, bool]]


def binary_outputs(request: InferenceRequest) -> BinaryOutputs | None:
    """What ``request`` asks of Triton's binary tensor data extension for its outputs, or
    ``None`` when every output is answered in JSON (the usual request: checked in two
    attribute reads). A value other than ``true`` or ``false`` is refused, naming it."""
    parameters, outputs = request.parameters, request.outputs
    if parameters is None and outputs is None:
        return None
    every = (parameters or {}).get("binary_data_output", False)
    if type(every) is not bool:
        raise InvalidInputError(
            f"The request's parameters.binary_data_output is {json_shown(every)}; it must be "
            "true or false (Triton's binary tensor data extension)."
        )
    each: dict[str, bool] = {}
    for output in outputs or ():
        if output.parameters is None or "binary_data" not in output.parameters:
            continue
        value = output.parameters["binary_data"]
        if type(value) is not bool:
            raise InvalidInputError(
                f"Output {output.name!r} has binary_data {json_shown(value)}; it must be true "
                "or false (Triton's binary tensor data extension)."
            )
        each[output.name] = value
    return (every, each) if every or any(each.values()) else None


def encode_v2_binary(
    *,
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: dict[str, Array],
    binary: BinaryOutputs,
) -> tuple[bytes, int | None]:
    """An inference response with Triton's binary outputs: the JSON part lists a binary
    output with ``parameters.binary_data_size`` instead of ``data``, and the outputs' bytes
    follow it in order (little-endian, row-major; BYTES elements each behind a 4-byte
    little-endian length). Returns the body and the JSON part's length, the
    ``Inference-Header-Content-Length``; ``None`` when no output has a byte (as Triton, the
    body is then the JSON alone)."""
    every, each = binary
    described: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, array in outputs.items():
        datatype = datatype_of(array)
        output: dict[str, Any] = {
            "name": name, "datatype": datatype, "shape": list(array.shape),
        }  # fmt: skip
        if each.get(name, every):
            raw = tensor_bytes(array, datatype)
            output["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            output["data"] = _json_values(array)
        described.append(output)
    body: dict[str, Any] = {
        "model_name": model_name, "model_version": model_version, "outputs": described,
    }  # fmt: skip
    if request_id is not None:
        body["id"] = request_id
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    tail = b"".join(chunks)
    return (header + tail, len(header)) if tail else (header, None)


def tensor_bytes(array: Array, datatype: str) -> bytes:
    """An array of ``datatype`` in the binary tensor form, Triton's binary answers' and gRPC's
    ``raw_output_contents``: its values little-endian and row-major; BYTES (text) elements as
    UTF-8, each behind its length as 4 little-endian bytes (``text_bytes``)."""
    if datatype != "BYTES":
        order = array.dtype.byteorder
        if order in {"<", "|"} or (order == "=" and _LITTLE):
            return array.tobytes()  # C order, whatever the array's strides
        return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    parts = []
    for value in array.ravel().tolist():
        data = text_bytes(value)
        parts.append(len(data).to_bytes(4, "little"))
        parts.append(data)
    return b"".join(parts)


def text_bytes(value: Any) -> bytes:
    """A BYTES element's bytes: UTF-8 for text, ``None`` (the JSON answer's ``null``) as an
    empty element, since the binary forms have no null."""
    if isinstance(value, bytes):
        return value
    return b"" if value is None else str(value).encode()


def encode_predictions(predictions: Array, *, key: str = "predictions") -> bytes:
    """MLflow's and TF Serving's ``{"predictions": [...]}`` answer (``key``: TF Serving's
    columnar answer is ``outputs``)."""
    if predictions.dtype.kind in "OUSM" or (
        predictions.dtype.kind == "f" and not np.isfinite(predictions).all()
    ):
        values: Any = [
            None if isinstance(v, float) and not math.isfinite(v) else v
            for v in predictions.tolist()
        ]
    else:
        values = predictions
    return orjson.dumps({key: values}, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


_MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def parse_json(body: bytes) -> Any:
    """A JSON request body; too deep, the error names the path to the deep part."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        path = deep_json_path(body, MAX_JSON_DEPTH)
        if path is not None:
            raise too_deep("The request body", path) from None
        raise InvalidInputError(
            f"The request body is not valid JSON: {_json_problem(exc, body)}."
        ) from None


def decode_mlflow_json(body: bytes) -> tuple[str, Any, dict[str, Any] | None]:
    """``(format, payload, params)`` of an MLflow JSON request; exactly one format key.

    ``params`` follows MLflow's ParamSpec: an object whose values are scalars or lists of
    scalars.
    """
    parsed = parse_json(body)
    if not isinstance(parsed, dict):
        raise InvalidInputError(
            "The request body must be a JSON object with one of "
            f"{', '.join(_MLFLOW_KEYS)} (MLflow's format)."
        )
    fmt = one_format(parsed, _MLFLOW_KEYS, also=("params",))
    params = parsed.get("params")
    if params is not None:
        _check_params(params)
    return fmt, parsed[fmt], params


def one_format(parsed: dict[str, Any], keys: tuple[str, ...], *, also: tuple[str, ...]) -> str:
    """The one of ``keys`` that a request object has; any key but those and ``also`` is
    refused, naming it."""
    present = [key for key in keys if key in parsed]
    unknown = [key for key in parsed if key not in keys and key not in also]
    if len(present) != 1 or unknown:
        detail = f"found {', '.join(present) or 'none'}" + (
            f" and unknown {', '.join(map(shown, unknown))}" if unknown else ""
        )
        raise InvalidInputError(
            f"The request must have exactly one of {', '.join(keys)} ({detail})."
        )
    return present[0]


_SCALARS = (str, int, float, bool)


def _check_params(params: Any) -> None:
    if not isinstance(params, dict):
        raise InvalidInputError("'params' must be a JSON object of parameter names and values.")
    for key, value in params.items():
        if value is None or isinstance(value, _SCALARS):
            continue
        if isinstance(value, list) and all(v is None or isinstance(v, _SCALARS) for v in value):
            continue
        raise InvalidInputError(
            f"'params.{shown(key)[1:-1]}' is {shown(value)}; a parameter takes a scalar or a "
            "list of scalars (MLflow's ParamSpec)."
        )
