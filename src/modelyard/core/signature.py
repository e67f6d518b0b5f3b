"""Signatures: infer them from training data (coercing request data to them is ``coercion``).

``infer_signature`` reads a DataFrame (one column spec each) or a 2-D ndarray (one tensor spec).
``modelyard.core.coercion.InputCoercer`` compiles a signature once into a per-column plan and
coerces every request with it.

Dtype names (``TensorSpec.dtype``): numpy names for numbers (``float64``, ``int32``, ``uint8``)
and ``bool``; ``string`` for text (object or pandas ``str`` columns); ``category`` with the levels
in ``categories``; ``datetime64[ns]`` (or ``datetime64[ns, TZ]``) for timestamps of any unit.
pandas nullable types (``Int64``, ``boolean``, ``Float64``) get the numpy name plus
``nullable=True`` when they hold missing values.

Coercion casts each column to its spec, with three deliberate exceptions: nullable ``int`` and
``bool`` specs become pandas nullable dtypes (``Int64``, ``boolean``), since numpy integers and
booleans cannot hold missing values; datetime columns keep their unit (the instants the model saw
in training) and text is parsed as ISO 8601; ``string`` columns that already hold text are left
as they are (object or pandas ``str``). Missing values are accepted wherever the target dtype can
hold them; unseen category levels become missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from modelyard.core.types import Scalar, Signature, TensorSpec
from modelyard.errors import InvalidInputError

__all__ = [
    "InputData",
    "column_dtype",
    "column_names",
    "infer_signature",
    "output_specs",
]

Array = npt.NDArray[np.generic]
_Values = npt.NDArray[Any]  # internal: numpy arrays whose dtype is checked at runtime
InputData = (
    pd.DataFrame
    | Array
    | Sequence[Sequence[object]]
    | Sequence[Mapping[str, object]]
    | Mapping[str, object]
)
"""What ``coerce_input`` accepts: a DataFrame, a 2-D array or list of rows, a list of records, a
dict of column -> values, or one record (a dict of column -> scalar)."""

_Family = Literal["bool", "int", "float", "string", "category", "datetime"]
_MAX_LISTED = 10
_OBJECT_KINDS: dict[str, str] = {
    "string": "string",
    "empty": "string",
    "integer": "int64",
    "floating": "float64",
    "mixed-integer-float": "float64",
    "boolean": "bool",
    "datetime64": "datetime64[ns]",
    "datetime": "datetime64[ns]",
}


# --- inference ---------------------------------------------------------------------------------


def column_dtype(column: pd.Series) -> str:
    """The signature dtype name of one column (see the module docstring)."""
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return f"datetime64[ns, {dtype.tz}]"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if isinstance(dtype, pd.StringDtype):
        return "string"
    if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
        return str(getattr(dtype, "numpy_dtype", dtype))
    if isinstance(dtype, np.dtype) and dtype.kind == "M":
        return "datetime64[ns]"
    if isinstance(dtype, np.dtype) and dtype.kind == "O":
        inferred = pd.api.types.infer_dtype(column, skipna=True)
        if inferred in _OBJECT_KINDS:
            return _OBJECT_KINDS[inferred]
        raise InvalidInputError(
            f"Column {column.name!r} holds {inferred} Python objects, which have no signature "
            "dtype; convert it to strings or numbers first."
        )
    raise InvalidInputError(
        f"Column {column.name!r} has dtype {dtype}, which signatures do not support; convert it "
        "to a number, bool, string, category or datetime column."
    )


def infer_signature(X: pd.DataFrame | Array) -> Signature:
    """The input signature of training data; ``outputs`` is left empty (see ``output_specs``).

    A DataFrame gives ``kind="columns"`` with one spec per column (names as ``str``); a 2-D ndarray
    gives ``kind="tensor"`` with one spec ``"input"`` of shape ``(-1, n_columns)``.
    """
    if isinstance(X, pd.DataFrame):
        names = column_names(X)
        if not names:
            raise InvalidInputError("The DataFrame has no columns; pass the training features.")
        specs = tuple(
            _column_spec(name, column) for name, (_, column) in zip(names, X.items(), strict=True)
        )
        return Signature(kind="columns", inputs=specs)
    if isinstance(X, np.ndarray):
        if X.ndim != 2:
            raise InvalidInputError(
                f"The training array is {X.ndim}-D with shape {X.shape}; pass a 2-D array of "
                "rows x features, e.g. X.reshape(-1, 1) for a single feature."
            )
        if X.dtype.kind not in "biuf":
            raise InvalidInputError(
                f"The training array has dtype {X.dtype}; tensors must be numeric or bool, so "
                "pass non-numeric data as a DataFrame."
            )
        if X.shape[1] == 0:
            raise InvalidInputError("The training array has no columns; pass the features.")
        nullable = X.dtype.kind == "f" and bool(np.isnan(X).any())
        spec = TensorSpec(
            name="input", dtype=X.dtype.name, shape=(-1, X.shape[1]), nullable=nullable
        )
        return Signature(kind="tensor", inputs=(spec,))
    raise InvalidInputError(
        f"Cannot infer a signature from {type(X).__name__}; pass a pandas DataFrame or a 2-D "
        "numpy array."
    )


def column_names(frame: pd.DataFrame) -> list[str]:
    """A frame's column names as ``str``, or ``InvalidInputError`` if two of them collide."""
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise InvalidInputError(
            f"The DataFrame has duplicate column names {_listed(dupes)}; rename them so each "
            "column is unique."
        )
    return names


def _column_spec(name: str, column: pd.Series) -> TensorSpec:
    dtype = column_dtype(column)
    nullable = bool(column.isna().any())
    if dtype != "category":
        return TensorSpec(name=name, dtype=dtype, nullable=nullable)
    levels = column.cat.categories
    if levels.dtype.kind not in "biufO" and not isinstance(levels.dtype, pd.StringDtype):
        raise InvalidInputError(
            f"Column {name!r} is a category of {levels.dtype} levels; signatures keep only "
            "string, number or bool levels, so convert the levels with .cat.rename_categories(str)."
        )
    categories = tuple(_scalar(v) for v in levels.tolist())
    return TensorSpec(name=name, dtype=dtype, nullable=nullable, categories=categories)


def _scalar(value: object) -> Scalar:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str | bool | int | float):
        return value
    return str(value)


def output_specs(
    predictions: npt.ArrayLike,
    probabilities: npt.ArrayLike | None,
    classes: Sequence[Scalar] | None,
) -> tuple[TensorSpec, ...]:
    """Output specs: ``predict`` and, when probabilities are given, ``predict_proba``."""
    pred = np.asarray(predictions)
    if pred.ndim not in (1, 2):
        raise InvalidInputError(
            f"Predictions are {pred.ndim}-D with shape {pred.shape}; pass a 1-D array (one label "
            "or value per row) or a 2-D array (one row of outputs per row)."
        )
    shape = (-1,) if pred.ndim == 1 else (-1, pred.shape[1])
    specs = [TensorSpec(name="predict", dtype=_array_dtype(pred), shape=shape)]
    if probabilities is not None:
        proba = np.asarray(probabilities)
        if proba.ndim != 2:
            raise InvalidInputError(
                f"Probabilities have shape {proba.shape}; pass predict_proba's 2-D output "
                "(rows x classes)."
            )
        if classes is not None and len(classes) != proba.shape[1]:
            raise InvalidInputError(
                f"Probabilities have {proba.shape[1]} columns but {len(classes)} classes were "
                "given; pass the model's classes_ in predict_proba's column order."
            )
        specs.append(TensorSpec(name="predict_proba", dtype="float64", shape=(-1, proba.shape[1])))
    return tuple(specs)


def _array_dtype(values: _Values) -> str:
    if values.dtype.kind in "OUS":
        return column_dtype(pd.Series(values.ravel(), dtype=object, name="predict"))
    return column_dtype(pd.Series(values.ravel()[:0], name="predict"))


# --- coercion ----------------------------------------------------------------------------------


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return f"[{shown}, and {more} more]" if more > 0 else f"[{shown}]"
