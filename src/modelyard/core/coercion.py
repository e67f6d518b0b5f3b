"""Coercing request data to a signature: compile once per model, apply to every request.

``InputCoercer`` compiles a signature into a per-column plan; ``coerce_input`` is the one-shot
form. The dtype rules are those of ``modelyard.core.signature`` (see its docstring): nullable
``int`` and ``bool`` specs become pandas nullable dtypes, datetime columns keep their unit and
text is parsed as ISO 8601, text columns are left as they are, unseen category levels become
missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
import pandas as pd

from modelyard.core.signature import (
    Array,
    InputData,
    _Family,
    _listed,
    _Values,
)
from modelyard.core.types import Signature, TensorSpec
from modelyard.errors import InvalidInputError, InvalidSpecError, SignatureMismatchError

__all__ = ["InputCoercer", "coerce_input"]


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    dtype_name: str
    family: _Family
    target: np.dtype[np.generic] | pd.api.extensions.ExtensionDtype | None
    nullable: bool


def _plan_column(spec: TensorSpec) -> _Column:
    name, dtype = spec.name, spec.dtype
    target: np.dtype[np.generic] | pd.api.extensions.ExtensionDtype | None
    family: _Family
    if dtype == "string":
        family, target = "string", None
    elif dtype == "category":
        family, target = "category", pd.CategoricalDtype(list(spec.categories or ()))
    elif dtype.startswith("datetime64[ns"):
        family = "datetime"
        tz = dtype[len("datetime64[ns") :].strip(", ]")
        target = pd.DatetimeTZDtype("ns", tz) if tz else np.dtype("datetime64[ns]")
    else:
        try:
            target = np.dtype(dtype)
        except TypeError:
            target = None
        kinds: dict[str, _Family] = {"b": "bool", "i": "int", "u": "int", "f": "float"}
        if target is None or target.kind not in kinds:
            raise InvalidSpecError(
                f"Signature input {name!r} has unknown dtype {dtype!r}; re-register the model "
                "or fix the signature."
            )
        family = kinds[target.kind]
        if spec.nullable and family == "bool":
            target = pd.BooleanDtype()
        elif spec.nullable and family == "int":
            target = pd.api.types.pandas_dtype(dtype.replace("uint", "UInt").replace("int", "Int"))
    return _Column(
        name=name, dtype_name=dtype, family=family, target=target, nullable=spec.nullable
    )


class InputCoercer:
    """Coerce request data to one signature; compile once per model, call per request.

    For ``kind="columns"`` the result is a DataFrame with exactly the signature's columns in
    signature order and dtypes; a frame that already matches is returned as is (no copy). For
    ``kind="tensor"`` it is a C-contiguous 2-D ndarray of the spec's dtype. Extra columns raise
    ``SignatureMismatchError`` unless ``allow_extra=True``, which drops them.
    """

    def __init__(self, signature: Signature, *, allow_extra: bool = False) -> None:
        self.signature = signature
        self.allow_extra = allow_extra
        self._columns = tuple(_plan_column(spec) for spec in signature.inputs)
        self._names = [c.name for c in self._columns]
        self._n_features = signature.n_features
        self._tensor = self._columns[0] if signature.kind == "tensor" else None

    def __call__(self, X: InputData) -> pd.DataFrame | Array:
        if self._tensor is not None:
            return self._coerce_tensor(X, self._tensor)
        return self._coerce_frame(X)

    # columns ---------------------------------------------------------------------------------

    def _coerce_frame(self, data: InputData) -> pd.DataFrame:
        frame = self._as_frame(data)
        if len(frame) == 0:
            raise SignatureMismatchError("Input has 0 rows; send at least one row.")
        frame = self._select(frame)
        changed: dict[str, pd.Series] = {}
        for i, (col, dtype) in enumerate(zip(self._columns, frame.dtypes.tolist(), strict=True)):
            if _matches(dtype, col):
                continue
            column = frame.iloc[:, i]
            cast = _cast_column(column, col)
            if cast is not column:
                changed[col.name] = cast
        if not changed:
            return frame
        frame = frame.copy(deep=False)
        for name, values in changed.items():
            frame[name] = values
        return frame

    def _as_frame(self, data: InputData) -> pd.DataFrame:
        if isinstance(data, pd.DataFrame):
            return data
        if isinstance(data, np.ndarray):
            return self._frame_from_array(data)
        if isinstance(data, Mapping):
            return _frame_from_mapping(data)
        if isinstance(data, Sequence) and not isinstance(data, str | bytes):
            if len(data) == 0:
                raise SignatureMismatchError("Input has 0 rows; send at least one row.")
            if isinstance(data[0], Mapping):
                return _frame_from_records(data)
            return self._frame_from_array(_rows_to_array(data))
        raise InvalidInputError(_unsupported(data))

    def _frame_from_array(self, array: _Values) -> pd.DataFrame:
        _check_2d(array, self._n_features)
        self._check_width(array.shape[1])
        frame = pd.DataFrame(array, columns=self._names, copy=False)
        return frame.infer_objects() if array.dtype.kind == "O" else frame

    def _check_width(self, width: int) -> None:
        if width != self._n_features:
            raise SignatureMismatchError(
                f"Input has {width} features per row but the signature expects "
                f"{self._n_features}; send {self._n_features} values per row in signature order."
            )

    def _select(self, frame: pd.DataFrame) -> pd.DataFrame:
        columns = list(frame.columns)
        if columns == self._names:
            return frame
        names = [str(c) for c in columns]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise SignatureMismatchError(
                f"Input has duplicate columns {_listed(dupes)}; send each column once."
            )
        if names != columns:
            frame = frame.set_axis(names, axis=1)
        if names == self._names:
            return frame
        present = set(names)
        missing = [n for n in self._names if n not in present]
        expected = set(self._names)
        extra = [n for n in names if n not in expected]
        if missing:
            also = f" and has extra column(s) {_listed(extra)}" if extra else ""
            raise SignatureMismatchError(
                f"Input is missing column(s) {_listed(missing)}{also}; send every signature "
                f"column ({_listed(self._names)}) or check the names."
            )
        if extra and not self.allow_extra:
            raise SignatureMismatchError(
                f"Input has extra column(s) {_listed(extra)} not in the signature; drop them or "
                "pass allow_extra=True."
            )
        return frame[self._names]

    # tensor ----------------------------------------------------------------------------------

    def _coerce_tensor(self, data: InputData, col: _Column) -> _Values:
        if isinstance(data, pd.DataFrame):
            array = _frame_to_array(data)
        elif isinstance(data, np.ndarray):
            array = data
        elif isinstance(data, Sequence) and not isinstance(data, str | bytes) and data:
            if isinstance(data[0], Mapping):
                raise SignatureMismatchError(_records_for_tensor(self._n_features))
            array = _rows_to_array(data)
        elif isinstance(data, Sequence) and not isinstance(data, str | bytes):
            raise SignatureMismatchError("Input has 0 rows; send at least one row.")
        elif isinstance(data, Mapping):
            raise SignatureMismatchError(_records_for_tensor(self._n_features))
        else:
            raise InvalidInputError(_unsupported(data))
        _check_2d(array, self._n_features)
        if array.shape[0] == 0:
            raise SignatureMismatchError("Input has 0 rows; send at least one row.")
        self._check_width(array.shape[1])
        target = col.target
        assert isinstance(target, np.dtype)
        if array.dtype == target and array.flags.c_contiguous:
            return array
        return np.ascontiguousarray(_cast_array(array, target, col))


def coerce_input(
    X: InputData,
    signature: Signature,
    *,
    allow_extra: bool = False,
) -> pd.DataFrame | Array:
    """Coerce ``X`` to ``signature`` once; for repeated calls build an ``InputCoercer``."""
    return InputCoercer(signature, allow_extra=allow_extra)(X)


# --- input shapes ------------------------------------------------------------------------------


def _unsupported(data: object) -> str:
    return (
        f"Cannot use a {type(data).__name__} as model input; send a DataFrame, a 2-D array or list "
        "of rows, a list of records, or a dict of column -> values."
    )


def _records_for_tensor(n: int) -> str:
    return (
        f"The model takes a 2-D array of {n} features, not named columns; send rows as lists "
        "of numbers in signature order."
    )


def _check_2d(array: _Values, n_features: int) -> None:
    if array.ndim != 2:
        hint = " (wrap a single row in a list, or use X.reshape(1, -1))" if array.ndim == 1 else ""
        raise SignatureMismatchError(
            f"Input is {array.ndim}-D with shape {array.shape} but the model takes a 2-D array of "
            f"rows x {n_features} features; reshape it{hint}."
        )


def _rows_to_array(rows: Sequence[object]) -> _Values:
    try:
        array: _Values = np.asarray(rows)
        if array.dtype.kind not in "biuf":
            array = np.array(rows, dtype=object)
    except ValueError as exc:
        raise SignatureMismatchError(
            "Input rows have different lengths; send the same number of values in every row."
        ) from exc
    return array


def _frame_from_records(records: Sequence[object]) -> pd.DataFrame:
    keys: dict[str, None] = {}
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise SignatureMismatchError(
                f"Input row {i} is a {type(record).__name__}, not a record; send every row as a "
                "dict of column -> value."
            )
        keys.update(dict.fromkeys(record))
    rows: Sequence[Mapping[str, object]] = records  # type: ignore[assignment]  # checked above
    return pd.DataFrame({key: [r.get(key) for r in rows] for key in keys})


def _frame_from_mapping(data: Mapping[str, object]) -> pd.DataFrame:
    values = list(data.values())
    if values and not any(_is_listlike(v) for v in values):
        return pd.DataFrame({k: [v] for k, v in data.items()})
    try:
        return pd.DataFrame(dict(data))
    except ValueError as exc:
        lengths = {k: len(v) for k, v in data.items() if _is_listlike(v)}  # type: ignore[arg-type]  # list-likes have len
        raise SignatureMismatchError(
            f"Input columns have different lengths {lengths}; send the same number of values "
            "for every column."
        ) from exc


def _is_listlike(value: object) -> bool:
    return isinstance(value, list | tuple | np.ndarray | pd.Series | pd.Index)


def _frame_to_array(frame: pd.DataFrame) -> _Values:
    if all(isinstance(d, np.dtype) and d.kind in "biuf" for d in frame.dtypes):
        return frame.to_numpy()
    try:
        return frame.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        return frame.to_numpy(dtype=object)


# --- casting -----------------------------------------------------------------------------------


def _matches(dtype: object, col: _Column) -> bool:
    """Whether a column of ``dtype`` needs no cast for ``col`` (checked without building it)."""
    if col.family == "string":
        return isinstance(dtype, pd.StringDtype)
    if col.family == "datetime":
        if isinstance(col.target, pd.DatetimeTZDtype):
            return isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == str(col.target.tz)
        return isinstance(dtype, np.dtype) and dtype.kind == "M"
    return bool(dtype == col.target)


def _cast_column(column: pd.Series, col: _Column) -> pd.Series:
    if col.family == "string":
        return _cast_string(column)
    if column.dtype == col.target:
        return column
    if col.family == "category":
        return _cast_category(column, col)
    if col.family == "datetime":
        return _cast_datetime(column, col)
    values = _numeric_values(column, col)
    return pd.Series(values, index=column.index, name=column.name)


def _cast_string(column: pd.Series) -> pd.Series:
    dtype = column.dtype
    if isinstance(dtype, pd.StringDtype):
        return column
    if dtype == np.dtype(object) and pd.api.types.infer_dtype(column, skipna=True) in (
        "string",
        "empty",
    ):
        return column
    if isinstance(dtype, np.dtype) and dtype.kind == "f":  # [1234, None] in JSON became floats
        values = column.to_numpy()
        present = values[~np.isnan(values)]
        if np.all(np.isfinite(present) & (present == np.trunc(present))):
            return column.astype("Int64").astype("str")
    return column.astype("str")


def _cast_category(column: pd.Series, col: _Column) -> pd.Series:
    target = col.target
    assert isinstance(target, pd.CategoricalDtype)
    levels = target.categories
    if isinstance(column.dtype, pd.CategoricalDtype):
        lookup = np.append(levels.get_indexer(column.cat.categories), -1)  # code -1 stays -1
        new_codes = lookup[column.cat.codes.to_numpy()]
    else:
        new_codes = levels.get_indexer(pd.Index(column.to_numpy(dtype=object)))
    cat = pd.Categorical.from_codes(new_codes, dtype=target)
    return pd.Series(cat, index=column.index, name=column.name)


def _cast_datetime(column: pd.Series, col: _Column) -> pd.Series:
    tz = getattr(col.target, "tz", None)
    dtype = column.dtype
    parsed: pd.Series
    if isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "M"):
        if isinstance(dtype, pd.DatetimeTZDtype) != (tz is not None):
            fix = "localize it with .dt.tz_localize" if tz else "drop the zone with .dt.tz_convert"
            raise SignatureMismatchError(
                f"Column {column.name!r} expects {col.dtype_name} but got {dtype}; {fix}."
            )
        if tz is None or str(getattr(dtype, "tz", "")) == str(tz):
            return column  # any unit: the same instants the model was trained on
        parsed = column
    elif dtype.kind in "OU":  # object and pandas string columns: parse ISO 8601 text
        parsed = pd.to_datetime(column, errors="coerce", format="ISO8601", utc=tz is not None)
        bad = parsed.isna().to_numpy() & column.notna().to_numpy()
        if bad.any():
            _raise_bad(column, col, bad)
    else:
        _raise_bad(column, col, column.notna().to_numpy())
    result: pd.Series = parsed.dt.tz_convert(tz) if tz is not None else parsed
    return result


def _numeric_values(column: pd.Series, col: _Column) -> npt.ArrayLike:
    """Values of ``column`` cast to a bool/int/float target, or ``SignatureMismatchError``."""
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
        values: _Values = column.to_numpy()
    elif pd.api.types.is_numeric_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype):
        if column.hasnans:
            values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            values = column.to_numpy(dtype=getattr(dtype, "numpy_dtype", np.float64))
    elif isinstance(dtype, np.dtype) and dtype.kind in "mMc":
        _raise_bad(column, col, column.notna().to_numpy())
    else:
        raw = column.to_numpy(dtype=object)
        parsed = pd.to_numeric(pd.Series(raw), errors="coerce")
        values = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isnan(values) & ~pd.isna(raw)
        if bad.any():
            _raise_bad(column, col, bad)
    return _finish_numeric(column, values, col)


def _out_of_range(values: npt.NDArray[Any], info: np.iinfo[Any]) -> npt.NDArray[np.bool_]:
    """Values an integer type cannot hold. Floats compare against ``max + 1`` (a power of two,
    exact in float64): ``max`` itself rounds up to it, so ``2.0**63 > int64 max`` is False and
    the cast would wrap around."""
    high = values >= float(info.max) + 1.0 if values.dtype.kind == "f" else values > info.max
    return (values < info.min) | high


def _finish_numeric(column: pd.Series, values: _Values, col: _Column) -> npt.ArrayLike:
    target = col.target
    assert target is not None
    if col.family == "float":
        return values.astype(target, copy=False)  # type: ignore[arg-type]  # a numpy dtype here
    is_float = values.dtype.kind == "f"
    nulls = np.isnan(values) if is_float else np.zeros(len(values), dtype=bool)
    with np.errstate(invalid="ignore"):
        if col.family == "bool":
            bad = (values != 0) & (values != 1) & ~nulls
        else:
            info = np.iinfo(getattr(target, "numpy_dtype", target))
            bad = _out_of_range(values, info)
            if is_float:
                bad |= ~nulls & (~np.isfinite(values) | (values != np.trunc(values)))
    if bad.any():
        _raise_bad(column, col, bad)
    if isinstance(target, np.dtype):
        if nulls.any():
            row = int(np.flatnonzero(nulls)[0])
            raise SignatureMismatchError(
                f"Column {column.name!r} ({col.dtype_name}, not nullable) has a missing value at "
                f"row {row}; fill it, or retrain with missing values so the signature allows them."
            )
        return values.astype(target, copy=False)
    if col.family == "bool":
        return pd.arrays.BooleanArray(np.where(nulls, 0, values).astype(bool), nulls)
    filled = np.where(nulls, 0, values).astype(target.numpy_dtype)  # type: ignore[attr-defined]  # an Int*Dtype here
    return pd.arrays.IntegerArray(filled, nulls)


def _cast_array(array: _Values, target: np.dtype[np.generic], col: _Column) -> _Values:
    if array.dtype.kind in "biuf":
        flat = array.reshape(-1)
    else:
        raw = array.reshape(-1)
        numeric = pd.to_numeric(pd.Series(raw, dtype=object), errors="coerce")
        flat = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isnan(flat) & ~pd.isna(raw)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            _raise_array(raw[i], divmod(i, array.shape[1]), col)
    bad = np.zeros(flat.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        if target.kind == "b" and flat.dtype.kind != "b":
            bad = (flat != 0) & (flat != 1)
        elif target.kind in "iu" and flat.dtype.kind == "f":
            bad = ~np.isfinite(flat) | (flat != np.trunc(flat))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        _raise_array(flat[i], divmod(i, array.shape[1]), col)
    if target.kind in "iu" and flat.dtype.kind in "iuf" and len(flat):
        info = np.iinfo(target)  # type: ignore[type-var]  # an integer dtype here
        bad = _out_of_range(flat, info)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            _raise_array(flat[i], divmod(i, array.shape[1]), col)
    return flat.astype(target, copy=False).reshape(array.shape)


def _raise_array(value: object, where: tuple[int, int], col: _Column) -> NoReturn:
    value = value.item() if isinstance(value, np.generic) else value
    raise SignatureMismatchError(
        f"Input value {value!r} at row {where[0]}, feature {where[1]} cannot be cast to "
        f"{col.dtype_name}; send {col.dtype_name} values."
    )


def _raise_bad(column: pd.Series, col: _Column, bad: npt.NDArray[np.bool_]) -> NoReturn:
    if not bad.any():  # nothing but missing values, of a dtype that cannot be cast
        raise SignatureMismatchError(
            f"Column {column.name!r} expects {col.dtype_name} but got {column.dtype}; send "
            f"{col.dtype_name} values for {column.name!r}."
        )
    row = int(np.flatnonzero(bad)[0])
    value = column.iloc[row]
    value = value.item() if isinstance(value, np.generic) else value
    raise SignatureMismatchError(
        f"Column {column.name!r} expects {col.dtype_name} but value {value!r} at row {row} cannot "
        f"be cast to it; send {col.dtype_name} values for {column.name!r}."
    )
