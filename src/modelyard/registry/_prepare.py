"""Everything a new version needs, computed before anything is written.

A registration validates and builds all of its pieces here (model bytes, signature, input
example, reference profile and sample, lineage, the optional ONNX twin); only when all of them
succeed does the registry store blobs and insert rows. A bad input therefore changes nothing.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from modelyard.core.coercion import coerce_input
from modelyard.core.datasources import sources_of
from modelyard.core.fingerprint import fingerprint_dataset
from modelyard.core.lineage import LineageCollector
from modelyard.core.listing import listed
from modelyard.core.profile import compute_profile, profile_to_json
from modelyard.core.signature import infer_signature, output_specs
from modelyard.core.types import Lineage, Signature, describe_mismatch
from modelyard.errors import InvalidInputError, ModelyardError, SignatureMismatchError, first_line
from modelyard.flavors import (
    REFERENCE_TEXTS,
    TEXT_COLUMN,
    TEXT_MODEL_FILE,
    Artifact,
    ExampleFlavor,
    Flavor,
    LoadOptions,
    Predictor,
    TextOnnxPredictor,
    check_text_parity,
    convert_to_onnx,
    fuse_text_model,
    quantize_text_model,
    texts_of,
)

logger = logging.getLogger(__name__)

EXAMPLE_ROWS = 5
ConvertTo = Literal["onnx"] | None
Optimize = Literal["quantize"] | None
#: At most this many texts (the example's, then the reference sample's) check a text model's
#: export and its int8 twin: the eager model runs on each of them at registration.
TEXT_CHECK_ROWS = 256

_FLAVOR_PACKAGES = {
    "sklearn": ("scikit-learn", "skops"),
    "xgboost": ("xgboost", "xgboost-cpu"),
    "lightgbm": ("lightgbm",),
    "onnx": ("onnx", "onnxruntime"),
    "torch": ("torch", "onnxscript", "safetensors", "onnx", "onnxruntime"),
    "pickle": ("cloudpickle",),
    "transformers": (
        "torch", "transformers", "sentence-transformers", "tokenizers", "onnxruntime",
    ),
}  # fmt: skip


class OnnxConversionSkipped(UserWarning):
    """The ONNX twin was not kept (conversion failed or its outputs differ); the version is fine."""


class QuantizationSkipped(UserWarning):
    """The int8 twin of a text model was not kept (its outputs differ too much from float32);
    the version is fine and serves its float32 graph."""


@dataclass(frozen=True, slots=True)
class StoredFile:
    role: str
    name: str
    data: bytes


@dataclass(frozen=True, slots=True)
class PreparedVersion:
    flavor: str
    files: list[StoredFile]
    signature: Signature | None
    input_example: dict[str, Any] | None
    flavor_meta: dict[str, Any]
    lineage: Lineage
    untrusted: bool
    notes: list[str] = field(default_factory=list)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file, with one clear error for anything else."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"Data file {str(p)!r} does not exist; give a CSV or Parquet file.")
    suffix = p.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"}:
            return pd.read_parquet(p)
        if suffix in {".csv", ".txt"}:
            return pd.read_csv(p)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InvalidInputError(f"Cannot read data file {str(p)!r}: {first_line(exc)}.") from exc
    raise InvalidInputError(
        f"Data file {str(p)!r} has an unsupported suffix {suffix!r}; use .csv or .parquet."
    )


def split_target(data: Any, target: Any) -> tuple[Any, Any]:
    """Features and target from ``data`` and ``target`` (a column name or an array)."""
    if isinstance(data, (str, Path)):
        data = read_table(data)
    if target is None:
        return data, None
    if isinstance(target, str):
        if not isinstance(data, pd.DataFrame):
            raise InvalidInputError(
                f"Target {target!r} names a column, but the data is not a table; pass the "
                "target values instead."
            )
        if target not in data.columns:
            raise SignatureMismatchError(
                f"The data has no target column {target!r} (columns: {listed(data.columns)}); "
                "pass --target with one of them."
            )
        return data.drop(columns=[target]), data[target]
    return data, target


def dump_model(
    flavor: Flavor, model: object, *, name: str, data: Any, target: Any, input_example: Any
) -> tuple[Artifact, Any]:
    """The model's artifact and the input example to record. A flavor that saves a model by
    running it (PyTorch) gets the input example, else the features of ``data``, and gives back
    the example as the model takes it."""
    if not isinstance(flavor, ExampleFlavor):
        return flavor.dump(model), input_example
    example = input_example
    if example is None and data is not None:
        example, _ = split_target(data, target)
    artifact, taken = flavor.dump_with_example(model, example, name=name)
    return artifact, taken if input_example is not None else None


def prepare_version(
    flavor: Flavor,
    artifact: Artifact,
    *,
    name: str,
    model: object | None,
    data: Any,
    target: Any,
    input_example: Any,
    convert: ConvertTo,
    options: LoadOptions,
    source: str | None,
    lineage: LineageCollector,
    signature_hint: Signature | None = None,
    sample_rows: int = 10_000,
    truncate: bool = False,
    optimize: Optimize = None,
) -> PreparedVersion:
    if convert not in (None, "onnx"):
        raise InvalidInputError(f"convert={convert!r} is unknown; use 'onnx' or leave it out.")
    text = flavor.name == "transformers"
    _check_text_options(flavor.name, truncate=truncate, optimize=optimize)
    if text:
        artifact = Artifact(files=artifact.files, meta={**artifact.meta, "truncate": truncate})
    predictor = flavor.load(artifact, options)
    X, y = split_target(data, target)
    if text:
        X, input_example = _text_inputs(X, input_example)
    files = [StoredFile(_role(name_), name_, blob) for name_, blob in artifact.files.items()]
    meta: dict[str, Any] = {"model": artifact.meta}
    signature: Signature | None = None
    example: dict[str, Any] | None = None
    fingerprint = None
    check_rows: Any = None
    head: Any = None
    if X is not None:
        _check_features(name, _expected_features(artifact.meta, model, predictor), X)
        signature = infer_signature(X)
        fingerprint = fingerprint_dataset(X, y)
        profile, sample = compute_profile(X, sample_rows=sample_rows)
        files.append(StoredFile("profile", "profile.json", profile_to_json(profile)))
        files.append(StoredFile("sample", "reference_sample.parquet", _parquet(sample)))
        head = _head(X, EXAMPLE_ROWS)
        check_rows = coerce_input(_concat(head, sample), signature)
    elif input_example is not None:
        head = _head(input_example, EXAMPLE_ROWS)
        signature = infer_signature(head)
    elif signature_hint is not None:
        # what the model's origin recorded (an MLflow signature): inputs only, no example
        signature = signature_hint
    if signature is not None and head is not None:
        coerced = coerce_input(head, signature)
        signature = _with_outputs(name, signature, predictor, coerced)
        example = example_to_json(head)
        if check_rows is None:
            check_rows = coerced
    notes: list[str] = []
    if text:
        checked = input_example if X is None else check_rows
        notes += _check_text_model(
            name, model, predictor, artifact=artifact, rows=checked, meta=meta, files=files,
            options=options, optimize=optimize,
        )  # fmt: skip
    if convert == "onnx":
        onnx_files, onnx_meta, note = _convert(
            name, flavor, model=model, predictor=predictor, X=check_rows, options=options
        )
        files.extend(onnx_files)
        if onnx_meta is not None:
            meta["onnx"] = onnx_meta
        if note:
            notes.append(note)
    recorded = lineage.collect(
        dataset=fingerprint, packages=_FLAVOR_PACKAGES.get(flavor.name, ()), source=source,
        data_sources=sources_of(data),
    )  # fmt: skip
    return PreparedVersion(
        flavor=flavor.name,
        files=files,
        signature=signature,
        input_example=example,
        flavor_meta=meta,
        lineage=recorded,
        untrusted=flavor.name == "pickle",
        notes=notes,
    )


def _role(file_name: str) -> str:
    """``weights`` for a flavor's ``weights/...`` file (kept for the native runtime, not read
    to serve), else ``model``."""
    return "weights" if file_name.startswith("weights/") else "model"


def _with_outputs(name: str, signature: Signature, predictor: Predictor, X: Any) -> Signature:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            predictions = predictor.predict(X)
            proba = predictor.predict_proba(X) if predictor.has_proba else None
    except ModelyardError:
        raise
    except Exception as exc:
        raise SignatureMismatchError(
            f"Model {name!r} cannot predict on the data given ({first_line(exc)}); pass the "
            f"data it was trained on (columns: {listed(signature.column_names)})."
        ) from exc
    classes = predictor.classes
    return Signature(
        kind=signature.kind,
        inputs=signature.inputs,
        outputs=output_specs(predictions, proba, classes),
        classes=tuple(_scalar(c) for c in classes) if classes is not None else None,
    )


def _expected_features(
    meta: dict[str, Any], model: object | None, predictor: Predictor
) -> tuple[list[str] | None, int | None]:
    """The feature names (when the model was trained on named columns) and count it expects."""
    source = model if model is not None else getattr(predictor, "model", None)
    names = getattr(source, "feature_names_in_", None)
    if names is None:
        names = meta.get("feature_names")
    if names is not None:
        names = [str(n) for n in names]
        if all(re.fullmatch(r"(Column_|f)\d+", n) for n in names):
            names = None  # names the library made up for an unnamed array
    count = meta.get("n_features") or getattr(source, "n_features_in_", None)
    return names, int(count) if count is not None else None


def _check_features(name: str, expected: tuple[list[str] | None, int | None], X: Any) -> None:
    names, count = expected
    width = X.shape[1] if hasattr(X, "shape") and len(X.shape) == 2 else None
    if names and isinstance(X, pd.DataFrame):
        given = [str(c) for c in X.columns]
        missing = [c for c in names if c not in given]
        extra = [c for c in given if c not in names]
        if missing or extra:
            raise SignatureMismatchError(
                f"The data's columns do not match model {name!r} "
                f"({describe_mismatch(missing, extra)}); pass "
                "the columns the model was trained on (and --target for the label column)."
            )
    elif count is not None and width is not None and width != count:
        raise SignatureMismatchError(
            f"Model {name!r} expects {count} features but the data has {width} columns; pass "
            "the data the model was trained on (and --target for the label column)."
        )


def _convert(
    name: str,
    flavor: Flavor,
    *,
    model: object | None,
    predictor: Predictor,
    X: Any,
    options: LoadOptions,
) -> tuple[list[StoredFile], dict[str, Any] | None, str | None]:
    if X is None:
        reason = "no data or input example to check its outputs against"
    elif flavor.name in ("onnx", "torch", "transformers"):
        return [], None, None  # the model is ONNX already
    else:
        source = model if model is not None else getattr(predictor, "model", None)
        result = convert_to_onnx(source, flavor.name, X, options=options)
        if result.artifact is not None:
            files = [StoredFile("onnx", f"onnx/{n}", b) for n, b in result.artifact.files.items()]
            return files, result.artifact.meta, None
        reason = result.reason or "unknown reason"
    message = f"ONNX conversion of {name!r} skipped: {reason}; the native model is registered."
    warnings.warn(message, OnnxConversionSkipped, stacklevel=4)
    logger.warning(message)
    return [], None, message


def _check_text_options(flavor: str, *, truncate: bool, optimize: Optimize) -> None:
    if optimize not in (None, "quantize"):
        raise InvalidInputError(
            f"optimize={optimize!r} is unknown; use 'quantize' or leave it out."
        )
    if flavor != "transformers" and (truncate or optimize):
        option = "truncate=True" if truncate else f"optimize={optimize!r}"
        raise InvalidInputError(
            f"{option} applies to text models (transformers, sentence-transformers), not to a "
            f"{flavor} model; leave it out."
        )


def text_table(values: Any, what: str) -> pd.DataFrame:
    """Texts (a list, a Series, a 1-D array, a DataFrame with a ``text`` column or one column)
    as a one-column DataFrame ``text``; ``InvalidInputError`` naming ``what`` otherwise."""
    texts = texts_of(values, TEXT_COLUMN)
    if not texts:
        raise InvalidInputError(f"The {what} has no texts; give at least one.")
    for i, value in enumerate(texts):
        if not isinstance(value, str):
            raise InvalidInputError(
                f"Row {i} of the {what} is not text ({type(value).__name__} {value!r:.40}); "
                "give one string per row."
            )
    return pd.DataFrame({TEXT_COLUMN: pd.Series(texts, dtype=object)})


def _text_inputs(X: Any, input_example: Any) -> tuple[Any, Any]:
    """A text model's data and input example as ``text`` tables; without either, the
    reference texts are the example."""
    if X is not None:
        return text_table(X, "data"), input_example
    given = input_example if input_example is not None else list(REFERENCE_TEXTS)
    return None, text_table(given, "input_example")


def _check_text_model(
    name: str,
    model: object | None,
    predictor: Predictor,
    *,
    artifact: Artifact,
    rows: Any,
    meta: dict[str, Any],
    files: list[StoredFile],
    options: LoadOptions,
    optimize: Optimize,
) -> list[str]:
    """The export's parity numbers (``meta["parity"]``, raising when it disagrees) and, with
    ``optimize="quantize"``, the int8 twin (``meta["quantized"]``, its file added to ``files``
    when it was kept). Returns the notes for the user."""
    if model is None or not isinstance(predictor, TextOnnxPredictor):
        raise InvalidInputError(
            f"Model {name!r} is a text model without its eager original to check the "
            "export against; register the model object or its folder."
        )
    texts = [str(t) for t in texts_of(rows, TEXT_COLUMN)[:TEXT_CHECK_ROWS]]
    meta["parity"] = check_text_parity(model, predictor, texts)
    fused = fuse_text_model(model, artifact, texts, options=options)
    meta["fusion"] = fused.meta
    if fused.artifact is not None and fused.predictor is not None:
        # the fused graph is the one stored, served and quantized
        artifact, predictor = fused.artifact, fused.predictor
        meta["parity"] = fused.meta["parity"]
        graph = artifact.files[TEXT_MODEL_FILE]
        files[:] = [
            StoredFile(f.role, f.name, graph) if f.name == TEXT_MODEL_FILE else f for f in files
        ]
    else:
        logger.info("%s: the unfused graph is kept: %s", name, fused.meta.get("reason"))
    if optimize != "quantize":
        return []
    twin_files, meta["quantized"], note = _quantize(name, artifact, texts, options, predictor)
    files.extend(twin_files)
    return [note] if note else []


def _quantize(
    name: str,
    artifact: Artifact,
    texts: list[str],
    options: LoadOptions,
    fp32: TextOnnxPredictor,
) -> tuple[list[StoredFile], dict[str, Any], str | None]:
    twin = quantize_text_model(artifact, texts, options=options, fp32=fp32)
    meta = {"kept": twin.files is not None, **twin.meta}
    if twin.files is not None:
        files = [StoredFile("quantized", f"quantized/{n}", b) for n, b in twin.files.items()]
        return files, meta, None
    meta["reason"] = twin.reason
    message = (
        f"The int8 twin of {name!r} was not kept: {twin.reason}; the float32 model is registered."
    )
    warnings.warn(message, QuantizationSkipped, stacklevel=4)
    logger.warning(message)
    return [], meta, message


def example_to_json(X: Any) -> dict[str, Any]:
    """A small JSON-safe example: ``{"columns": [...], "data": [[...]]}`` (MLflow's split form)."""
    if isinstance(X, pd.DataFrame):
        rows = [[_scalar(v) for v in row] for row in X.itertuples(index=False, name=None)]
        return {"columns": [str(c) for c in X.columns], "data": rows}
    array = np.asarray(X)
    rows = [[_scalar(v) for v in row] for row in array.tolist()]
    return {"data": rows}


def example_from_json(example: dict[str, Any]) -> Any:
    if "columns" in example:
        return pd.DataFrame(example["data"], columns=example["columns"])
    return np.asarray(example["data"])


def _scalar(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _head(X: Any, n: int) -> Any:
    if isinstance(X, pd.DataFrame):
        return X.head(n).reset_index(drop=True)
    if isinstance(X, list) and X and isinstance(X[0], dict):
        return pd.DataFrame(X[:n])
    array = np.asarray(X)
    if array.ndim != 2:
        raise InvalidInputError(
            f"Model data must be a table or a 2-D array; got {array.ndim}-D; reshape it."
        )
    return array[:n]


def _concat(head: Any, sample: pd.DataFrame) -> Any:
    if isinstance(head, pd.DataFrame):
        return pd.concat([head, sample[head.columns]], ignore_index=True)
    return np.vstack([head, sample.to_numpy(dtype=head.dtype)])


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()
