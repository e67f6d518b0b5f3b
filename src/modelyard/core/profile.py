"""Reference profiles of training data: per-column statistics, fixed bins and a seeded sample.

A profile is computed once, at registration, over every row; monitoring later bins live data on the
profile's ``bin_edges`` (``count_in_bins``) and compares the shares (PSI and friends).

- ``numeric`` columns (ints and floats) and ``datetime`` columns get min, max, mean, std, quantile
  ``bin_edges`` and ``bin_counts``. Datetimes are measured in seconds since the Unix epoch (UTC),
  as floats. ``count`` counts finite values; NaN and missing values are ``nulls``; infinities are
  ``infinite`` and left out of every statistic.
- ``categorical`` columns (``string`` and ``category``) and ``bool`` columns get the ``top_k`` most
  frequent values (ties broken by value), ``other_count`` and ``n_unique``; ``bool`` also gets
  ``mean``, the share of ``True``.

Bins: ``bins + 1`` reference quantiles, deduplicated, so they strictly increase (20 bins by default:
with 10, PSI misses a 40% change of scale of an exponential column, 0.096 against the 0.1 threshold,
measured); the outer edges are the column's min and max. Quantiles use the "lower" method, so every
edge is a value of the column and no reference bin is empty (drift measures divide by reference
shares). Bin ``i`` holds ``edges[i] <= x < edges[i + 1]`` and the last bin is closed on the right,
so ``bin_counts`` sums to ``count``. A constant column has one edge and one bin. A 2-D ndarray is
profiled with columns ``input_0`` ... ``input_{n-1}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt
import pandas as pd

from modelyard.core.signature import column_dtype, column_names
from modelyard.core.types import Scalar
from modelyard.errors import InvalidInputError

__all__ = [
    "CategoryCount",
    "ColumnKind",
    "ColumnProfile",
    "Profile",
    "column_kind",
    "compute_profile",
    "count_in_bins",
    "numeric_values",
    "quantile_edges",
    "profile_from_json",
    "profile_to_json",
]

ColumnKind = Literal["numeric", "categorical", "bool", "datetime"]
_Values = npt.NDArray[Any]  # internal: numpy arrays whose dtype is checked at runtime
_SECONDS = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


class CategoryCount(msgspec.Struct, frozen=True, kw_only=True):
    value: Scalar
    count: int


class ColumnProfile(msgspec.Struct, frozen=True, kw_only=True):
    """Statistics of one column; fields that do not apply to its ``kind`` are ``None``."""

    name: str
    dtype: str
    kind: ColumnKind
    count: int
    nulls: int
    infinite: int = 0
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    bin_edges: tuple[float, ...] | None = None
    bin_counts: tuple[int, ...] | None = None
    top: tuple[CategoryCount, ...] | None = None
    other_count: int | None = None
    n_unique: int | None = None


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    """A dataset's profile: ``rows`` profiled, and the sample's size and seed."""

    rows: int
    columns: tuple[ColumnProfile, ...]
    sample_rows: int
    seed: int
    bins: int
    top_k: int


def compute_profile(
    X: pd.DataFrame | npt.NDArray[np.generic],
    *,
    sample_rows: int = 10_000,
    seed: int = 0,
    bins: int = 20,
    top_k: int = 20,
) -> tuple[Profile, pd.DataFrame]:
    """Profile every row of ``X``; return it with a seeded sample of at most ``sample_rows`` rows.

    The sample keeps the rows' original order and gets a fresh ``RangeIndex``.
    """
    if sample_rows < 0 or bins < 1 or top_k < 0:
        raise InvalidInputError(
            f"Cannot profile with sample_rows={sample_rows}, bins={bins}, top_k={top_k}; use "
            "sample_rows >= 0, bins >= 1 and top_k >= 0."
        )
    frame = _as_frame(X)
    columns = tuple(
        _profile_column(name, frame.iloc[:, i], bins=bins, top_k=top_k)
        for i, name in enumerate(frame.columns)
    )
    sample = _sample(frame, sample_rows, seed)
    profile = Profile(
        rows=len(frame),
        columns=columns,
        sample_rows=len(sample),
        seed=seed,
        bins=bins,
        top_k=top_k,
    )
    return profile, sample


def profile_to_json(profile: Profile) -> bytes:
    return msgspec.json.encode(profile)


def profile_from_json(data: bytes) -> Profile:
    """Decode a profile; malformed bytes raise ``InvalidInputError``."""
    try:
        return msgspec.json.decode(data, type=Profile)
    except msgspec.DecodeError as exc:
        raise InvalidInputError(
            f"The profile JSON is invalid ({exc}); recompute it with compute_profile."
        ) from exc


def numeric_values(column: pd.Series) -> npt.NDArray[np.float64]:
    """A numeric, bool or datetime column as float64 (datetimes in epoch seconds, NaN if null)."""
    dtype = column.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        column = column.dt.tz_convert("UTC").dt.tz_localize(None)
    elif dtype == np.dtype(object) and column_dtype(column).startswith("datetime"):
        column = pd.to_datetime(column)
    values = column.to_numpy()
    if values.dtype.kind == "M":
        unit = np.datetime_data(values.dtype)[0]
        if unit not in _SECONDS:
            values = values.astype("datetime64[ns]")
            unit = "ns"
        seconds = values.view(np.int64) / _SECONDS[unit]
        seconds[np.isnat(values)] = np.nan
        return seconds
    if values.dtype.kind in "biuf":
        return values.astype(np.float64, copy=False)
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


def count_in_bins(values: npt.NDArray[np.float64], edges: Sequence[float]) -> npt.NDArray[np.int64]:
    """Count finite ``values`` in the bins of ``edges`` (a profile's ``bin_edges``).

    Values below the first edge count in the first bin and values above the last in the last
    bin; NaN and infinities are left out. Gives ``len(edges) - 1`` counts (one for one edge).
    """
    finite = values[np.isfinite(values)]
    n_bins = max(len(edges) - 1, 1)
    if n_bins == 1:
        return np.array([finite.size], dtype=np.int64)
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), finite, side="right") - 1
    np.clip(index, 0, n_bins - 1, out=index)
    return np.bincount(index, minlength=n_bins).astype(np.int64, copy=False)


# --- per column --------------------------------------------------------------------------------


def _as_frame(X: pd.DataFrame | npt.NDArray[np.generic]) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        names = column_names(X)
        return X if list(X.columns) == names else X.set_axis(names, axis=1)
    if isinstance(X, np.ndarray):
        if X.ndim != 2:
            raise InvalidInputError(
                f"Cannot profile a {X.ndim}-D array of shape {X.shape}; pass a 2-D array of rows "
                "x features or a DataFrame."
            )
        return pd.DataFrame(X, columns=[f"input_{i}" for i in range(X.shape[1])], copy=False)
    raise InvalidInputError(
        f"Cannot profile a {type(X).__name__}; pass a pandas DataFrame or a 2-D numpy array."
    )


def column_kind(dtype: str) -> ColumnKind:
    """The profile kind of a ``column_dtype``: numeric, categorical, bool or datetime."""
    if dtype == "bool":
        return "bool"
    if dtype in ("string", "category"):
        return "categorical"
    if dtype.startswith("datetime"):
        return "datetime"
    return "numeric"


def _profile_column(name: str, column: pd.Series, *, bins: int, top_k: int) -> ColumnProfile:
    dtype = column_dtype(column)
    kind = column_kind(dtype)
    if kind in ("numeric", "datetime"):
        return _profile_numeric(name, dtype, kind, numeric_values(column), bins)
    if kind == "bool":
        values = numeric_values(column)
        nulls = np.isnan(values)
        n_true = int(np.count_nonzero(values[~nulls]))
        count = int(values.size - np.count_nonzero(nulls))
        levels, counts = np.array([False, True], dtype=object), np.array([count - n_true, n_true])
        top, other, n_unique = _top(levels, counts, top_k)
        return ColumnProfile(
            name=name,
            dtype=dtype,
            kind=kind,
            count=count,
            nulls=values.size - count,
            mean=n_true / count if count else None,
            top=top,
            other_count=other,
            n_unique=n_unique,
        )
    levels, counts, nulls_count = _value_counts(column)
    top, other, n_unique = _top(levels, counts, top_k)
    return ColumnProfile(
        name=name,
        dtype=dtype,
        kind=kind,
        count=len(column) - nulls_count,
        nulls=nulls_count,
        top=top,
        other_count=other,
        n_unique=n_unique,
    )


def _profile_numeric(
    name: str, dtype: str, kind: ColumnKind, values: npt.NDArray[np.float64], bins: int
) -> ColumnProfile:
    nan = np.isnan(values)
    infinite = np.isinf(values)
    finite = values[~(nan | infinite)]
    base = ColumnProfile(
        name=name,
        dtype=dtype,
        kind=kind,
        count=finite.size,
        nulls=int(np.count_nonzero(nan)),
        infinite=int(np.count_nonzero(infinite)),
    )
    if finite.size == 0:
        return base
    ordered = np.sort(finite)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = np.mean(ordered)
        std = np.std(ordered, ddof=1) if ordered.size >= 2 else None
    edges = quantile_edges(ordered, bins)
    starts = np.searchsorted(ordered, edges[1:-1], side="left")  # inner edges open bins
    counts = np.diff(np.append(starts, ordered.size), prepend=0)
    return msgspec.structs.replace(
        base,
        min=float(ordered[0]),
        max=float(ordered[-1]),
        mean=_finite(mean),
        std=_finite(std),
        bin_edges=tuple(edges.tolist()),
        bin_counts=tuple(int(c) for c in counts),
    )


def quantile_edges(ordered: npt.NDArray[np.float64], bins: int) -> npt.NDArray[np.float64]:
    """Lower quantiles of sorted finite values (each edge is a value), deduplicated."""
    position = np.floor(np.linspace(0.0, 1.0, bins + 1) * (ordered.size - 1)).astype(np.intp)
    return np.unique(ordered[position])


def _finite(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]  # numpy floating scalars
    return number if np.isfinite(number) else None


def _value_counts(column: pd.Series) -> tuple[_Values, _Values, int]:
    """Distinct non-null values with their counts (any order), and the number of nulls."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        present = codes >= 0
        counts = np.bincount(codes[present], minlength=len(column.cat.categories))
        seen = counts > 0
        levels = column.cat.categories.to_numpy(dtype=object)[seen]
        return levels, counts[seen], int(codes.size - np.count_nonzero(present))
    counts_series = column.value_counts(dropna=True, sort=False)
    nulls = len(column) - int(counts_series.sum())
    return counts_series.index.to_numpy(dtype=object), counts_series.to_numpy(), nulls


def _top(
    levels: _Values, counts: _Values, top_k: int
) -> tuple[tuple[CategoryCount, ...], int, int]:
    """The ``top_k`` most frequent levels (ties by value), the count of the rest, and n_unique."""
    seen = counts > 0
    levels, counts = levels[seen], counts[seen]
    total = int(counts.sum())
    if top_k == 0 or levels.size == 0:
        return (), total, int(levels.size)
    if levels.size > top_k:  # keep the top_k counts and every level tied with the smallest
        threshold = np.partition(counts, levels.size - top_k)[levels.size - top_k]
        keep = counts >= threshold
        levels, counts_kept = levels[keep], counts[keep]
    else:
        counts_kept = counts
    order = np.lexsort((_value_ranks(levels), -counts_kept))[:top_k]
    top = tuple(CategoryCount(value=_scalar(levels[i]), count=int(counts_kept[i])) for i in order)
    return top, total - sum(c.count for c in top), int(seen.sum())


def _value_ranks(levels: _Values) -> _Values:
    try:
        return np.asarray(pd.Index(levels).argsort()).argsort()
    except TypeError:  # mixed types that do not compare: order by type name, then text
        keys = pd.Index([f"{type(v).__name__}\x00{v}" for v in levels])
        return np.asarray(keys.argsort()).argsort()


def _scalar(value: object) -> Scalar:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, str | bool | int | float):
        return value
    return str(value)


def _sample(frame: pd.DataFrame, sample_rows: int, seed: int) -> pd.DataFrame:
    if len(frame) <= sample_rows:
        return frame.reset_index(drop=True)
    rows = np.random.default_rng(seed).choice(len(frame), size=sample_rows, replace=False)
    return frame.iloc[np.sort(rows)].reset_index(drop=True)
