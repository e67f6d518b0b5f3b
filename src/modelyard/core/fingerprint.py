"""Dataset fingerprints: a sha256 of a canonical encoding of the values, not of memory.

The same values give the same hash however the frame was built (memory layout, block structure,
index, int32 vs int64, object vs pandas ``str`` text); changing a value, a column name, the column
order or the row order changes it. The index is not hashed.

Canonical encoding, version 1 (all integers little-endian; ``text(s)`` is the UTF-8 byte length
of ``s`` as a uint64, then the bytes)::

    b"modelyard-dataset-v1\\0"
    DataFrame: b"frame\\0"  uint64 rows  uint64 columns
    ndarray:   b"array\\0"  text(family)  uint64 ndim  uint64 per dimension
    then per column, in order: text(name)  text(family)  values

An ndarray's columns are named ``input_0`` ... ``input_{n-1}``; ``y`` is one more column named
``__target__`` (a 2-D ``y`` gives ``__target__0`` ...). Values are encoded in chunks of 65,536
rows, by family:

- ``int`` (every signed and unsigned integer dtype but uint64): int64 per value.
- ``uint64``: uint64 per value.
- ``float`` (float16/32/64): float64 per value; every NaN as 0x7FF8000000000000, -0.0 as 0.0.
  Missing values are NaN.
- ``bool``: uint8 0 or 1.
- ``datetime`` (``datetime[TZ]`` when zone-aware): int64 nanoseconds since the epoch (UTC); NaT
  is the smallest int64.
- ``string``, ``category`` (the levels' ``str``) and ``object`` (other Python objects, as their
  ``str``): per chunk, int64 byte lengths (-1 for a missing value), then the chunk's UTF-8 bytes.
- ``int``, ``uint64`` and ``bool`` columns are preceded by a byte: 0 if no value is missing;
  1 if some are, and then each chunk starts with a uint8 validity mask (1 = present) and its
  missing values are encoded as 0.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from modelyard.core.signature import column_dtype, column_names
from modelyard.core.types import DatasetFingerprint
from modelyard.errors import InvalidInputError

__all__ = ["CHUNK_ROWS", "fingerprint_dataset"]

CHUNK_ROWS = 65_536
_MAGIC = b"modelyard-dataset-v1\0"
_CANONICAL_NAN = np.uint64(0x7FF8000000000000)
_TARGET = "__target__"
_Values = npt.NDArray[Any]  # internal: numpy arrays whose dtype is checked at runtime
_Chunk = bytes | memoryview


def fingerprint_dataset(
    X: pd.DataFrame | npt.NDArray[np.generic],
    y: pd.Series | pd.DataFrame | npt.ArrayLike | None = None,
) -> DatasetFingerprint:
    """The sha256 of ``X`` (and ``y``) in the canonical encoding of the module docstring."""
    digest = hashlib.sha256(_MAGIC)
    if isinstance(X, pd.DataFrame):
        frame = X.set_axis(column_names(X), axis=1)
        digest.update(b"frame\0" + _u64(len(frame)) + _u64(frame.shape[1]))
    elif isinstance(X, np.ndarray):
        if X.ndim != 2:
            raise InvalidInputError(
                f"Cannot fingerprint a {X.ndim}-D array of shape {X.shape}; pass a 2-D array of "
                "rows x features or a DataFrame."
            )
        frame = pd.DataFrame(X, columns=[f"input_{i}" for i in range(X.shape[1])], copy=False)
        family = _family(frame.iloc[:, 0]) if X.shape[1] else X.dtype.name
        digest.update(b"array\0" + _text(family) + _u64(X.ndim) + b"".join(map(_u64, X.shape)))
    else:
        raise InvalidInputError(
            f"Cannot fingerprint a {type(X).__name__}; pass a pandas DataFrame or a 2-D numpy "
            "array."
        )
    columns = list(frame.items())
    if y is not None:
        columns += _target_columns(y, len(frame))
    schema: dict[str, str] = {}
    for label, column in columns:
        name = str(label)
        if name in schema:
            raise InvalidInputError(
                f"Column {name!r} appears twice in the dataset; rename one of them (the target "
                f"is hashed as {_TARGET!r})."
            )
        schema[name] = _schema_dtype(column)
        family = _family(column)
        digest.update(_text(name) + _text(family))
        for chunk in _encode(column, family):
            digest.update(chunk)
    return DatasetFingerprint(sha256=digest.hexdigest(), rows=len(frame), schema=schema)


def _target_columns(y: object, rows: int) -> list[tuple[str, pd.Series]]:
    if isinstance(y, pd.DataFrame):
        target = y.reset_index(drop=True)
    elif isinstance(y, pd.Series):
        target = y.reset_index(drop=True).to_frame()
    else:
        array = np.asarray(y)
        if array.ndim not in (1, 2):
            raise InvalidInputError(
                f"The target has shape {array.shape}; pass a 1-D array or a 2-D array with one "
                "row per sample."
            )
        target = pd.DataFrame(array.reshape(len(array), -1), copy=False)
    if len(target) != rows:
        raise InvalidInputError(
            f"The target has {len(target)} rows but X has {rows}; pass one target per row of X."
        )
    if target.shape[1] == 1:
        return [(_TARGET, target.iloc[:, 0])]
    return [(f"{_TARGET}{i}", target.iloc[:, i]) for i in range(target.shape[1])]


def _schema_dtype(column: pd.Series) -> str:
    try:
        return column_dtype(column)
    except InvalidInputError:
        if column.dtype == np.dtype(object):
            return "object"  # mixed Python objects: hashed by their str()
        raise InvalidInputError(
            f"Column {column.name!r} has dtype {column.dtype}, which cannot be fingerprinted; "
            "convert it to numbers, bools, strings or datetimes."
        ) from None


def _family(column: pd.Series) -> str:
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return f"datetime[{dtype.tz}]"
    name = _schema_dtype(column)
    if name == "uint64":
        return "uint64"
    if name in ("bool", "string", "object"):
        return name
    if name.startswith("datetime"):
        return "datetime"
    if name.startswith(("int", "uint")):
        return "int"
    return "float"  # column_dtype names nothing else


def _encode(column: pd.Series, family: str) -> Iterator[_Chunk]:
    masked = family in ("int", "uint64", "bool")
    has_nulls = masked and bool(column.isna().any())
    if masked:
        yield b"\x01" if has_nulls else b"\x00"
    levels = _levels(column) if family == "category" else None
    for start in range(0, len(column), CHUNK_ROWS):
        part = column.iloc[start : start + CHUNK_ROWS]
        if has_nulls:
            yield part.notna().to_numpy(dtype=np.uint8).tobytes()
        if family == "float":
            yield _floats(part)
        elif masked:
            dtype = {"int": "<i8", "uint64": "<u8", "bool": "u1"}[family]
            values = part.to_numpy(dtype=np.dtype(dtype), na_value=0)
            yield _buffer(values)
        elif family.startswith("datetime"):
            yield _nanoseconds(part)
        else:
            yield from _strings(_text_array(part, levels))


def _floats(part: pd.Series) -> _Chunk:
    values = part.to_numpy(dtype=np.float64, na_value=np.nan) + 0.0  # a copy; -0.0 becomes 0.0
    bits = values.view(np.uint64)
    bits[np.isnan(values)] = _CANONICAL_NAN
    return _buffer(bits.astype("<u8", copy=False))


def _nanoseconds(part: pd.Series) -> _Chunk:
    if isinstance(part.dtype, pd.DatetimeTZDtype):
        part = part.dt.tz_convert("UTC").dt.tz_localize(None)
    elif not pd.api.types.is_datetime64_dtype(part.dtype):
        part = pd.to_datetime(part)
    values = part.to_numpy().astype("datetime64[ns]")
    return _buffer(values.view(np.int64).astype("<i8", copy=False))


def _levels(column: pd.Series) -> pa.Array:
    levels = column.cat.categories.to_numpy(dtype=object)
    return pa.array([str(v) for v in levels], type=pa.large_string())


def _text_array(part: pd.Series, levels: pa.Array | None) -> pa.Array:
    if levels is not None:
        codes = part.cat.codes.to_numpy()
        return levels.take(pa.array(codes, mask=codes < 0))
    raw = part.array
    if isinstance(part.dtype, pd.StringDtype) and hasattr(raw, "__arrow_array__"):
        array = pa.array(raw)
    else:
        values = part.to_numpy(dtype=object)
        try:
            array = pa.array(values, type=pa.large_string(), from_pandas=True)
        except (pa.ArrowTypeError, pa.ArrowInvalid):  # non-strings: hash their str()
            missing = pd.isna(values)
            text = [None if m else str(v) for v, m in zip(values, missing, strict=True)]
            array = pa.array(text, type=pa.large_string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array.cast(pa.large_string())


def _strings(array: pa.Array) -> Iterator[_Chunk]:
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    filled = pc.fill_null(array, "") if array.null_count else array
    start = filled.offset
    offsets = np.frombuffer(filled.buffers()[1], dtype="<i8")[start : start + len(filled) + 1]
    lengths = np.diff(offsets)
    lengths[~valid] = -1
    yield _buffer(lengths.astype("<i8", copy=False))
    data = filled.buffers()[2]
    if data is not None and offsets[-1] > offsets[0]:
        yield memoryview(data)[int(offsets[0]) : int(offsets[-1])]


def _buffer(values: _Values) -> memoryview:
    return np.ascontiguousarray(values).data


def _u64(value: int) -> bytes:
    return int(value).to_bytes(8, "little")


def _text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return _u64(len(raw)) + raw
