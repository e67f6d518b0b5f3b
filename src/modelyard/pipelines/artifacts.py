"""Step outputs as bytes, chosen by type, and back.

===========================================  ======  ========  ==================================
value                                        kind    format    loaded back as
===========================================  ======  ========  ==================================
pandas DataFrame                             table   parquet   DataFrame (index kept, and
                                                               its data sources, see
                                                               core.datasources)
pandas Series                                series  parquet   Series (name and index kept)
numpy ndarray (not object dtype)             array   npy       ndarray
None, bool, int, float, str, list, tuple,    json    json      the same value (tuples as lists)
dict with string keys (numpy scalars too)
bytes                                        bytes   raw       bytes
fitted scikit-learn estimator or pipeline    model   sklearn   the estimator (skops)
XGBoost / LightGBM model, ONNX ModelProto    model   xgboost,  the flavor's predictor: predict,
                                                     lightgbm, predict_proba, classes, .model
                                                     onnx
anything else, with ``allow_pickle=True``    object  pickle    the object (cloudpickle)
===========================================  ======  ========  ==================================

Everything is written deterministically (Parquet with fixed options; skops archives canonicalized;
JSON with sorted keys), so the same value gives the same bytes and the same sha256 in any process,
under any executor. Models are saved and loaded by the registry's flavors with the same trust
rules: a skops model whose types are not trusted is refused when it is produced, not later.
"""

from __future__ import annotations

import io
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modelyard.core.datasources import ATTRS_KEY
from modelyard.errors import IntegrityError, UnsupportedFormatError, UntrustedTypeError

__all__ = ["ARTIFACT_FORMAT", "Encoded", "decode_value", "encode_value"]

ARTIFACT_FORMAT = 1
"""Bumped whenever an encoding changes; it is part of every cache key."""

_MODEL_FLAVORS = ("xgboost", "lightgbm", "onnx", "sklearn")
_SERIES_COLUMN = "__series__"


@dataclass(frozen=True, slots=True)
class Encoded:
    data: bytes
    kind: str
    format: str
    python_type: str
    meta: dict[str, Any] = field(default_factory=dict)


def encode_value(
    value: Any,
    *,
    label: str,
    allow_pickle: bool = False,
    trusted_types: Sequence[str] = (),
) -> Encoded:
    """Encode ``value``; ``label`` (``"output 'model' of step 'train'"``) names it in errors."""
    python_type = f"{type(value).__module__}.{type(value).__qualname__}"
    try:
        encoded = _encode(value, label, python_type, trusted_types)
    except UnsupportedFormatError:
        if not allow_pickle:
            raise
        return _pickle(value, python_type)
    if encoded is not None:
        return encoded
    if allow_pickle:
        return _pickle(value, python_type)
    raise UnsupportedFormatError(
        f"The {label} is a {python_type}, which modelyard cannot store safely; return a "
        "DataFrame, Series, ndarray, JSON value, bytes or a fitted model, or declare the step "
        "@step(allow_pickle=True) to store it with cloudpickle."
    )


def _encode(
    value: Any, label: str, python_type: str, trusted_types: Sequence[str]
) -> Encoded | None:
    if isinstance(value, bytes):
        return Encoded(value, "bytes", "raw", python_type)
    json_value = _json_value(value)
    if json_value is not _NOT_JSON:
        text = json.dumps(json_value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return Encoded(text.encode(), "json", "json", python_type)
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, pd.DataFrame):
        sources = value.attrs.get(ATTRS_KEY)
        return _parquet(value, label, python_type, "table", {"sources": sources} if sources else {})
    if pd is not None and isinstance(value, pd.Series):
        name = _json_value(value.name)
        meta = {"name": None if name is _NOT_JSON else name}
        return _parquet(value.to_frame(_SERIES_COLUMN), label, python_type, "series", meta)
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        return _npy(value, label, python_type)
    return _model(value, label, python_type, trusted_types)


_NOT_JSON = object()


def _json_value(value: Any) -> Any:
    """``value`` as plain JSON data, or ``_NOT_JSON``."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _NOT_JSON
    if isinstance(value, list | tuple) and type(value) in (list, tuple):
        items = [_json_value(v) for v in value]
        return _NOT_JSON if any(i is _NOT_JSON for i in items) else items
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return _NOT_JSON
        out = {k: _json_value(v) for k, v in value.items()}
        return _NOT_JSON if any(v is _NOT_JSON for v in out.values()) else out
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return _json_value(value.item())
    return _NOT_JSON


def _parquet(frame: Any, label: str, python_type: str, kind: str, meta: dict[str, Any]) -> Encoded:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pa.Table.from_pandas(frame, preserve_index=None)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd", write_statistics=True)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise UnsupportedFormatError(
            f"The {label} cannot be stored as Parquet ({exc}); convert its object columns to "
            "numbers or strings, or declare the step @step(allow_pickle=True)."
        ) from exc
    meta = {**meta, "rows": int(frame.shape[0]), "columns": [str(c) for c in frame.columns]}
    return Encoded(sink.getvalue().to_pybytes(), kind, "parquet", python_type, meta)


def _npy(array: Any, label: str, python_type: str) -> Encoded:
    import numpy as np

    buffer = io.BytesIO()
    try:
        np.save(buffer, array, allow_pickle=False)
    except ValueError as exc:
        raise UnsupportedFormatError(
            f"The {label} is a numpy array of dtype {array.dtype}, which .npy holds only as a "
            "pickle; convert it to a numeric or string dtype, or declare @step(allow_pickle=True)."
        ) from exc
    meta = {"shape": list(array.shape), "dtype": str(array.dtype)}
    return Encoded(buffer.getvalue(), "array", "npy", python_type, meta)


def _model(
    value: Any, label: str, python_type: str, trusted_types: Sequence[str]
) -> Encoded | None:
    from modelyard.flavors import SKOPS_TRUSTED_TYPES, get_flavor

    for name in _MODEL_FLAVORS:
        flavor = get_flavor(name)
        if not flavor.accepts(value):
            continue
        artifact = flavor.dump(value)
        if len(artifact.files) != 1:
            return None  # no flavor writes several files today
        ((file, data),) = artifact.files.items()
        untrusted = [
            t
            for t in artifact.meta.get("untrusted_types", [])
            if t not in SKOPS_TRUSTED_TYPES and t not in trusted_types
        ]
        if untrusted:
            as_args = ", ".join(repr(t) for t in untrusted)
            raise UntrustedTypeError(
                f"The {label} holds types modelyard does not trust when loading skops files "
                f"({', '.join(untrusted)}); if they are plain data, declare the step "
                f"@step(trusted_types=[{as_args}])."
            )
        if name == "sklearn":
            from modelyard.pipelines._skops import canonical_skops

            data = canonical_skops(data)
        meta = {"file": file, "flavor_meta": artifact.meta, "trusted_types": list(trusted_types)}
        return Encoded(data, "model", name, python_type, meta)
    return None


def _pickle(value: Any, python_type: str) -> Encoded:
    try:
        import cloudpickle
    except ImportError as exc:
        raise ImportError(
            "Storing step outputs as pickles needs cloudpickle; install it with "
            "pip install 'modelyard[pickle]'."
        ) from exc
    return Encoded(cloudpickle.dumps(value), "object", "pickle", python_type, {"untrusted": True})


def decode_value(
    data: bytes,
    *,
    kind: str,
    format: str,
    meta: dict[str, Any],
    label: str,
    trusted_types: Sequence[str] = (),
) -> Any:
    """The value ``encode_value`` stored (``data`` already checked against its sha256)."""
    if format == "raw":
        return data
    if format == "json":
        return json.loads(data)
    if format == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        frame = pq.read_table(pa.BufferReader(data)).to_pandas()
        if kind == "series":
            return frame[_SERIES_COLUMN].rename(meta.get("name"))
        if meta.get("sources"):
            frame.attrs[ATTRS_KEY] = meta["sources"]
        return frame
    if format == "npy":
        import numpy as np

        return np.load(io.BytesIO(data), allow_pickle=False)
    if format == "pickle":
        import pickle

        return pickle.loads(data)  # only written for steps declared allow_pickle=True
    if kind == "model":
        return _load_model(data, format, meta, trusted_types)
    raise IntegrityError(
        f"The {label} has format {format!r}, which this version of modelyard does not read; "
        "upgrade modelyard or run the producing step again with --force."
    )


def _load_model(
    data: bytes, flavor_name: str, meta: dict[str, Any], trusted_types: Sequence[str]
) -> Any:
    from modelyard.flavors import Artifact, LoadOptions, get_flavor

    trusted = (*trusted_types, *meta.get("trusted_types", ()))
    predictor = get_flavor(flavor_name).load(
        Artifact(files={meta["file"]: data}, meta=meta.get("flavor_meta", {})),
        LoadOptions(trusted_types=tuple(trusted)),
    )
    if flavor_name == "sklearn":
        return predictor.model  # type: ignore[attr-defined]  # EstimatorPredictor.model
    return predictor
