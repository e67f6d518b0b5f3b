"""The Open Inference Protocol's gRPC messages, and tensors in and out of them.

The messages are built from ``_proto/inference.binpb``, the descriptor set that grpcio-tools
compiles from ``_proto/inference.proto`` (``make proto``; a test checks the two agree), in a
descriptor pool of modelyard's own. Generated ``_pb2`` modules would register ``inference.*`` in
protobuf's default pool, where they collide with the same names that tritonclient's or KServe's
stubs register when a user imports both, and they would tie the protobuf runtime to the
compiler's version.

A request's tensors come either in ``raw_input_contents`` (little-endian bytes, as Triton's
binary extension; BYTES elements each behind a 4-byte little-endian length) or in each input's
typed ``contents``; both decode to the arrays the REST door's validator takes. An answer is raw
when its request was (as MLServer and Triton answer), else typed.
"""

from __future__ import annotations

from collections import deque
from functools import lru_cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any

import numpy as np

from modelyard.errors import InvalidInputError
from modelyard.serving import codecs

if TYPE_CHECKING:
    from modelyard.serving.validation import RequestValidator, Rows

Array = codecs.Array


def _messages() -> dict[str, Any]:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    raw = files("modelyard.serving").joinpath("_proto/inference.binpb").read_bytes()
    pool = descriptor_pool.DescriptorPool()
    for proto in descriptor_pb2.FileDescriptorSet.FromString(raw).file:
        pool.Add(proto)
    service = pool.FindServiceByName("inference.GRPCInferenceService")
    out: dict[str, Any] = {}
    for method in service.methods:
        for descriptor in (method.input_type, method.output_type):
            out[descriptor.name] = message_factory.GetMessageClass(descriptor)
    return out


MESSAGES = _messages()
ModelInferRequest: Any = MESSAGES["ModelInferRequest"]
ModelInferResponse: Any = MESSAGES["ModelInferResponse"]
SERVICE = "inference.GRPCInferenceService"
#: Each method's request and response message.
METHODS = {
    name: (MESSAGES[f"{name}Request"], MESSAGES[f"{name}Response"])
    for name in (
        "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata",
        "ModelInfer", "ModelConfig", "ModelStatistics", "RepositoryIndex", "RepositoryModelLoad",
        "RepositoryModelUnload",
    )
}  # fmt: skip

#: The typed ``contents`` field that holds each datatype (FP16 has none: it comes raw).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_FIELD_DTYPE = {
    "bool_contents": np.bool_,
    "int_contents": np.int32,
    "int64_contents": np.int64,
    "uint_contents": np.uint32,
    "uint64_contents": np.uint64,
    "fp32_contents": np.float32,
    "fp64_contents": np.float64,
}


def parameters(entries: Any) -> dict[str, Any]:
    """A protobuf ``map<string, InferParameter>`` as a dict of plain values."""
    out: dict[str, Any] = {}
    for key, value in entries.items():
        which = value.WhichOneof("parameter_choice")
        out[key] = getattr(value, which) if which is not None else None
    return out


def decode_inputs(
    request: Any,
) -> tuple[list[codecs.RequestInput], list[Array | None], bool]:
    """A ``ModelInferRequest``'s inputs, their arrays, and whether they came raw."""
    if not request.inputs:
        raise InvalidInputError("The inference request has no inputs; send at least one tensor.")
    raw = request.raw_input_contents
    inputs = [
        codecs.RequestInput(
            name=item.name, shape=list(item.shape), datatype=item.datatype,
            parameters=parameters(item.parameters) or None,
        )
        for item in request.inputs
    ]  # fmt: skip
    if raw:
        if len(raw) != len(inputs):
            raise InvalidInputError(
                f"The request has {len(inputs)} inputs but {len(raw)} raw_input_contents; send "
                "one raw entry per input, in order."
            )
        typed = next((i.name for i in request.inputs if i.HasField("contents")), None)
        if typed is not None:
            raise InvalidInputError(
                f"Input '{typed}' has contents but the request also has raw_input_contents; "
                "send every input raw or every input in contents."
            )
        arrays: list[Array | None] = [
            codecs.binary_tensor(item, memoryview(chunk))
            for item, chunk in zip(inputs, raw, strict=True)
        ]
        return inputs, arrays, True
    return (
        inputs,
        [_typed(item, proto) for item, proto in zip(inputs, request.inputs, strict=True)],
        False,
    )


def column_block(request: Any, validator: RequestValidator) -> Rows | None:
    """The rows of a raw request that sends one numeric column per input, all of one datatype
    and length (what clients send for a table), in one numpy call; ``None`` for anything else,
    which ``decode_inputs`` and the validator take (and name what is wrong)."""
    items = request.inputs
    raw = request.raw_input_contents
    if not items or len(raw) != len(items) or len(items) != validator.width:
        return None
    datatype = items[0].datatype
    dtype = _RAW_NUMERIC.get(datatype)
    if dtype is None:
        return None
    first = list(items[0].shape)
    if not first or first[0] <= 0:
        return None
    n = first[0]
    size = n * dtype.itemsize
    for item, chunk in zip(items, raw, strict=True):
        shape = item.shape
        if (
            item.datatype != datatype
            or len(chunk) != size
            or not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1))
            or shape[0] != n
            or item.HasField("contents")
        ):
            return None
    block = np.frombuffer(b"".join(raw), dtype=dtype).reshape(len(items), n)
    return validator.from_column_block([item.name for item in items], datatype, block)


#: The numeric datatypes ``column_block`` takes, as little-endian numpy types.
_RAW_NUMERIC = {
    name: np.dtype(codecs.DATATYPES[name]).newbyteorder("<")
    for name in ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP32",
                 "FP64")
}  # fmt: skip


def _typed(item: codecs.RequestInput, proto: Any) -> Array:
    dtype = codecs.DATATYPES.get(item.datatype)
    if dtype is None:
        raise InvalidInputError(
            f"Input '{item.name}' has datatype {codecs.shown(item.datatype)}; use one of "
            f"{', '.join(codecs.DATATYPES)}."
        )
    field = CONTENTS_FIELD.get(item.datatype)
    contents = proto.contents
    if field is None:
        raise InvalidInputError(
            f"Input '{item.name}' is {item.datatype}, which has no typed contents; send it in "
            "raw_input_contents."
        )
    other = next(
        (f.name for f, values in contents.ListFields() if f.name != field and len(values)), None
    )
    if other is not None:
        raise InvalidInputError(
            f"Input '{item.name}' is {item.datatype} but its values are in {other}; send them "
            f"in {field}."
        )
    values = getattr(contents, field)
    expected = codecs.element_count(item)
    if len(values) != expected:
        raise InvalidInputError(
            f"Input '{item.name}' has {len(values)} values but shape {item.shape} needs {expected}."
        )
    if field == "bytes_contents":
        text = codecs.utf8_text
        array = np.array([text(item.name, i, v) for i, v in enumerate(values)], dtype=object)
    else:
        array = np.array(values, dtype=_FIELD_DTYPE[field])
        if field in ("int_contents", "uint_contents") and item.datatype not in ("INT32", "UINT32"):
            codecs.check_number_range(item.name, item.datatype, array)
    return codecs.reshaped(item, array)


def encode_response(
    model_name: str, model_version: str, request_id: str, outputs: dict[str, Array], *, raw: bool
) -> bytes:
    """A serialized ``ModelInferResponse``: raw when the request was raw (or when an output has
    no typed field, FP16; ``encode_raw_response``), else in typed contents."""
    datatypes = {name: codecs.datatype_of(array) for name, array in outputs.items()}
    if raw or any(d not in CONTENTS_FIELD for d in datatypes.values()):
        return encode_raw_response(model_name, model_version, request_id, outputs)
    response = ModelInferResponse(model_name=model_name, model_version=model_version, id=request_id)
    for name, array in outputs.items():
        datatype = datatypes[name]
        tensor = response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        if datatype == "BYTES":
            tensor.contents.bytes_contents.extend(
                codecs.text_bytes(v) for v in array.ravel().tolist()
            )
        else:
            getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(array.ravel().tolist())
    data: bytes = response.SerializeToString()
    return data


# -- the wire form of the usual table request and its answer --------------------------------
#
# Profiled on one core (py-spy, 1-row FP64 requests of 20 columns at 32 streams), reading a
# parsed request's 20 inputs through upb's Python objects (name, datatype, shape, contents of
# each) took more of the loop than parsing, batching and the model together, and building the
# answer through them about a sixth as much again. A client sends the same inputs' metadata on
# every call (only the tensors' bytes change), and protobuf encodes a message as its fields one
# after another, so the bytes before the raw tensors are the same from call to call. What they
# say is read once and kept; the answer is written directly.

_RAW_TAG = 7 << 3 | 2  # ModelInferRequest.raw_input_contents: field 7, length-delimited


class RawTable:
    """The metadata of one raw table request: every byte before its tensors (``prefix``), the
    message those bytes hold on their own (the request with no tensors), and the layout of the
    tensors after them: ``width`` entries of ``head`` (tag and length) then ``size`` bytes."""

    __slots__ = ("datatype", "dtype", "head", "names", "prefix", "request", "size", "width")

    def __init__(self, prefix: bytes, request: Any, head: bytes, size: int, dtype: Any) -> None:
        self.prefix = prefix
        self.request = request
        self.head = head
        self.size = size
        self.dtype = dtype
        self.names = tuple(item.name for item in request.inputs)
        self.width = len(self.names)
        self.datatype: str = request.inputs[0].datatype

    def block(self, body: bytes) -> Array | None:
        """The tensors of ``body`` as a (width x rows) array, or ``None`` when its bytes after
        the prefix are not ``width`` raw entries of this table's size."""
        start = len(self.prefix)
        stride = len(self.head) + self.size
        if len(body) != start + self.width * stride or not body.startswith(self.prefix):
            return None
        for i, byte in enumerate(self.head):
            if body[start + i :: stride] != bytes((byte,)) * self.width:
                return None
        cells = np.frombuffer(body, dtype=np.uint8, offset=start).reshape(self.width, stride)
        block: Array = np.ascontiguousarray(cells[:, len(self.head) :]).view(self.dtype)
        return block


class RawTables:
    """The raw table requests seen lately, by body length; at most ``limit``, the oldest
    forgotten first (a client that varies its metadata on every call costs its own calls the
    general path, and others' at most a second parse of their prefix once in a while)."""

    def __init__(self, limit: int = 32) -> None:
        self.limit = limit
        self._by_length: dict[int, list[RawTable]] = {}
        self._order: deque[tuple[int, RawTable]] = deque()

    def match(self, body: bytes) -> tuple[RawTable, Array] | None:
        """The table ``body`` is a call of, and its tensors; ``None`` when none matches."""
        for table in self._by_length.get(len(body), ()):
            block = table.block(body)
            if block is not None:
                return table, block
        return None

    def learn(self, body: bytes, request: Any) -> None:
        """Keep the metadata of ``request`` (parsed from ``body``, and one that ``column_block``
        took) when its tensors are the last bytes of ``body`` and what comes before them parses
        on its own to the same request without tensors."""
        from google.protobuf.message import DecodeError

        raw = request.raw_input_contents
        size = len(raw[0])
        head = bytes((_RAW_TAG,)) + _varint(size)
        tail = b"".join(head + chunk for chunk in raw)
        if not body.endswith(tail):
            return
        prefix = body[: len(body) - len(tail)]
        try:
            alone = ModelInferRequest.FromString(prefix)
        except DecodeError:
            return
        if alone.raw_input_contents or len(alone.inputs) != len(raw):
            return
        table = RawTable(prefix, alone, head, size, _RAW_NUMERIC[alone.inputs[0].datatype])
        if len(self._order) >= self.limit:
            length, old = self._order.popleft()
            self._by_length[length].remove(old)
            if not self._by_length[length]:
                del self._by_length[length]
        self._by_length.setdefault(len(body), []).append(table)
        self._order.append((len(body), table))


def encode_raw_response(
    model_name: str, model_version: str, request_id: str, outputs: dict[str, Array]
) -> bytes:
    """A ``ModelInferResponse`` with every output in ``raw_output_contents``, serialized as
    protobuf does (fields in number order, empty strings left out, shapes packed); the fields
    that repeat from answer to answer (names, an output's datatype and shape) are kept
    encoded."""
    parts = [_names(model_name, model_version)]
    if request_id:
        parts.append(_text(3, request_id))
    tensors: list[bytes] = []
    for name, array in outputs.items():
        datatype, tensor = _output_tensor(name, array.dtype.str, array.shape)
        parts.append(tensor)
        data = codecs.tensor_bytes(array, datatype)
        tensors += (_RAW_OUTPUT_TAG, _varint(len(data)), data)
    return b"".join(parts + tensors)


_RAW_OUTPUT_TAG = bytes((6 << 3 | 2,))  # ModelInferResponse.raw_output_contents


@lru_cache(maxsize=64)
def _names(model_name: str, model_version: str) -> bytes:
    return _text(1, model_name) + _text(2, model_version)


@lru_cache(maxsize=1024)
def _output_tensor(name: str, dtype: str, shape: tuple[int, ...]) -> tuple[str, bytes]:
    """An output's datatype, and its ``InferOutputTensor`` as field 5 of the response."""
    datatype = codecs.datatype_of(np.empty(0, dtype=dtype))
    dims = b"".join(_varint(d) for d in shape)
    return datatype, _field(
        5, _text(1, name) + _text(2, datatype) + (_field(3, dims) if dims else b"")
    )


def _text(number: int, value: str) -> bytes:
    return _field(number, value.encode()) if value else b""


def _field(number: int, data: bytes) -> bytes:
    return bytes((number << 3 | 2,)) + _varint(len(data)) + data


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _BYTES[value]
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_BYTES = [bytes((i,)) for i in range(0x80)]
