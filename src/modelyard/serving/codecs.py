"""Wire formats: the Open Inference Protocol v2 REST body (KServe, Triton, MLServer) including
Triton's binary tensor extension, and MLflow's ``/invocations`` payloads (JSON and CSV).

Decoding turns a body into named numpy tensors; ``validation`` checks them against the model's
signature. Nothing here knows about HTTP statuses: bad input raises ``InvalidInputError``.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import orjson

from modelyard.errors import InvalidInputError

Array = npt.NDArray[Any]

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


class RequestInput(msgspec.Struct):
    name: str
    shape: list[int]
    datatype: str
    data: Any = None
    parameters: dict[str, Any] | None = None


class RequestOutput(msgspec.Struct):
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(msgspec.Struct):
    inputs: list[RequestInput]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[RequestOutput] | None = None


_v2_decoder = msgspec.json.Decoder(InferenceRequest)


def decode_v2(
    body: bytes, *, header_length: int | None = None
) -> tuple[InferenceRequest, list[Array | None] | None]:
    """Parse an inference request into its envelope and, for Triton's binary extension, the
    raw tensors (``None`` where an input's values are in the JSON).

    ``header_length`` is Triton's ``Inference-Header-Content-Length``: the JSON part is that
    long and the raw tensor bytes follow, each input naming its ``binary_data_size``. JSON
    values stay Python lists here: ``tensor_array`` turns one into an array when needed, and
    the validator builds a whole matrix of one-value columns in one numpy call.
    """
    json_part = body if header_length is None else body[:header_length]
    try:
        request = _v2_decoder.decode(json_part)
    except msgspec.ValidationError as exc:
        raise InvalidInputError(f"The inference request is malformed: {exc}.") from None
    except msgspec.DecodeError as exc:
        raise InvalidInputError(f"The inference request is not valid JSON: {exc}.") from None
    if not request.inputs:
        raise InvalidInputError("The inference request has no inputs; send at least one tensor.")
    if header_length is None:
        return request, None
    binary = memoryview(body)[header_length:]
    offset = 0
    arrays: list[Array | None] = []
    for item in request.inputs:
        size = (item.parameters or {}).get("binary_data_size")
        if size is None:
            arrays.append(None)
            continue
        chunk = binary[offset : offset + int(size)]
        offset += int(size)
        arrays.append(_binary_tensor(item, chunk))
    return request, arrays


def tensor_array(item: RequestInput) -> Array:
    """The numpy array of an input whose values came as JSON."""
    return _json_tensor(item)


def _count(item: RequestInput) -> int:
    if any(not isinstance(d, int) or d < 0 for d in item.shape):
        raise InvalidInputError(
            f"Input '{item.name}' has shape {item.shape}; dimensions must be whole numbers >= 0."
        )
    return math.prod(item.shape)


def _dtype(item: RequestInput) -> Any:
    dtype = DATATYPES.get(item.datatype)
    if dtype is None:
        raise InvalidInputError(
            f"Input '{item.name}' has datatype {item.datatype!r}; use one of "
            f"{', '.join(DATATYPES)}."
        )
    return dtype


def _json_tensor(item: RequestInput) -> Array:
    dtype = _dtype(item)
    expected = _count(item)
    data = item.data
    if data is None:
        raise InvalidInputError(f"Input '{item.name}' has no data.")
    if not isinstance(data, list):
        data = [data]
    try:
        if dtype is np.object_:
            array = np.array(_flatten(data), dtype=object)
        else:
            array = np.asarray(data, dtype=dtype if dtype is not np.bool_ else None)
            if dtype is np.bool_:
                if array.dtype.kind != "b":
                    raise ValueError("not true/false")
            elif array.dtype.kind == "O":
                raise ValueError("mixed or missing values")
    except (ValueError, TypeError, OverflowError):
        raise InvalidInputError(
            f"Input '{item.name}' data does not match datatype {item.datatype} "
            f"(e.g. {_sample(data)!r}); send {item.datatype} values."
        ) from None
    if array.size != expected:
        raise InvalidInputError(
            f"Input '{item.name}' has {array.size} values but shape {item.shape} needs {expected}."
        )
    return array.reshape(item.shape)


def _binary_tensor(item: RequestInput, chunk: memoryview) -> Array:
    dtype = _dtype(item)
    expected = _count(item)
    if dtype is np.object_:
        values = []
        pos = 0
        raw = bytes(chunk)
        while pos + 4 <= len(raw):
            length = int.from_bytes(raw[pos : pos + 4], "little")
            values.append(raw[pos + 4 : pos + 4 + length].decode("utf-8", "replace"))
            pos += 4 + length
        array = np.array(values, dtype=object)
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
    return array.reshape(item.shape)


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    _flatten_into(data, out)
    return out


def _flatten_into(data: list[Any], out: list[Any]) -> None:
    for value in data:
        if isinstance(value, list):
            _flatten_into(value, out)
        else:
            out.append(value)


def _sample(data: Any) -> Any:
    while isinstance(data, list) and data:
        data = data[0]
    return data


def datatype_of(array: Array) -> str:
    """The Open Inference Protocol datatype of a numpy array."""
    kind = array.dtype.kind
    if kind in _KIND_TO_DATATYPE:
        return _KIND_TO_DATATYPE[kind]
    return {
        "i": f"INT{array.dtype.itemsize * 8}",
        "u": f"UINT{array.dtype.itemsize * 8}",
        "f": f"FP{array.dtype.itemsize * 8}",
    }.get(kind, "BYTES")


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


def encode_predictions(predictions: Array) -> bytes:
    """MLflow's ``{"predictions": [...]}`` answer."""
    if predictions.dtype.kind in "OUSM" or (
        predictions.dtype.kind == "f" and not np.isfinite(predictions).all()
    ):
        values: Any = [
            None if isinstance(v, float) and not math.isfinite(v) else v
            for v in predictions.tolist()
        ]
    else:
        values = predictions
    return orjson.dumps({"predictions": values}, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


_MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def decode_mlflow_json(body: bytes) -> tuple[str, Any, dict[str, Any] | None]:
    """``(format, payload, params)`` of an MLflow JSON request; exactly one format key."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(parsed, dict):
        raise InvalidInputError(
            "The request body must be a JSON object with one of "
            f"{', '.join(_MLFLOW_KEYS)} (MLflow's format)."
        )
    present = [key for key in _MLFLOW_KEYS if key in parsed]
    unknown = [key for key in parsed if key not in (*_MLFLOW_KEYS, "params")]
    if len(present) != 1 or unknown:
        detail = f"found {', '.join(present) or 'none'}" + (
            f" and unknown {', '.join(unknown)}" if unknown else ""
        )
        raise InvalidInputError(
            f"The request must have exactly one of {', '.join(_MLFLOW_KEYS)} ({detail})."
        )
    params = parsed.get("params")
    if params is not None and not isinstance(params, dict):
        raise InvalidInputError("'params' must be a JSON object.")
    return present[0], parsed[present[0]], params
