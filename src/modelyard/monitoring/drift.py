"""Drift of a dataset against a reference: one statistic per column, and dataset drift as the share
of drifted columns.

A ``DriftDetector`` is fitted once on a reference, either the raw data (a DataFrame) or the
``Profile`` stored with a model version at registration, and then compares any number of current
datasets or window profiles with it.

Default method per column, by the number of rows of the *current* data (``SMALL_ROWS`` =
1,000). These are Evidently's choices except that Evidently counts the *reference's* rows, tests
columns with at most two values by a two-proportion z-test (whose p-value is
``chi2_contingency``'s) and treats numeric columns with at most five values as categorical:

================  ===========================  ==========  =============================
column kind       reference                    rows        method (drifts when)
================  ===========================  ==========  =============================
numeric/datetime  raw data                     <= 1,000    ``ks`` (p-value < 0.05)
numeric/datetime  raw data                     > 1,000     ``wasserstein`` (>= 0.1)
numeric/datetime  stored profile               <= 1,000    ``chi2`` on its bins (p < 0.05)
numeric/datetime  stored profile               > 1,000     ``psi`` on its bins (>= 0.1)
categorical/bool  either                       <= 1,000    ``chi2`` (p-value < 0.05)
categorical/bool  either                       > 1,000     ``js`` (>= 0.1)
================  ===========================  ==========  =============================

``chi2`` is Evidently's chi-square test: goodness of fit of the current counts to the reference's
proportions (``scipy.stats.chisquare``). ``chi2_contingency`` (only by name) is the two-sample
test of homogeneity, which treats the reference as a sample too and so drifts later.
``wasserstein`` is the Wasserstein-1 distance divided by the reference's (population) standard
deviation, floored at 0.001 as Evidently's (``stats.MIN_SCALE``: a constant reference then
scores a finite number): exact on raw data; against a stored profile it can only be estimated
from the quantile bins (mass spread evenly inside each bin), which overstates a shift (0.72 for
a true 0.5 on normal data with 10 bins, measured), so profiles default to ``psi``. ``js`` is the
Jensen-Shannon distance with log base 2 (0 to 1); ``psi`` the Population Stability Index on the
reference's quantile bins (shares clipped below at 1e-4). Each column's method and threshold can
be overridden (``ColumnRule``), and each method's default threshold too. The dataset drifts when
the share of drifted columns is at least ``share_threshold`` (0.5).

Missing values are checked apart, in every column: the share of null rows (NaN, None, NA) in the
current data against the reference's (a stored profile keeps its null counts), by a two-sided
two-proportion z-test (``stats.null_share_test``). The column drifts when the p-value is below
``NULL_P_VALUE`` (0.05) *and* the share moved by at least ``NULL_SHARE_CHANGE`` (0.01, one
percentage point): the test alone flags a move of a few tenths of a point once windows hold
100,000 rows, which is rarely worth an alert. Like Evidently's share-of-missing-values test and
NannyML's missing-values calculator this reads the share of the whole column; unlike Evidently's
default (fail when the share grows past 1.1 times the reference's) it flags a fall too, and
allows for sampling noise in small windows. The values still present are compared as above,
unchanged. A column with no values on one side (all null now) is not compared (``compared`` is
false) and drifts unless both sides are empty.

Current data can also be reduced to a ``WindowProfile``: counts on the reference's bins and
categories, which add up. Hourly windows are profiled once and merged into days or any span
without reading their rows again; ``ks`` and exact ``wasserstein`` need raw rows on both sides, so a
window profile is compared with the binned methods.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, get_args

import msgspec
import numpy as np
import numpy.typing as npt
import pandas as pd

from modelyard.core.profile import (
    Profile,
    column_kind,
    count_in_bins,
    numeric_values,
    quantile_edges,
)
from modelyard.core.signature import column_dtype
from modelyard.errors import InvalidInputError
from modelyard.monitoring import stats
from modelyard.monitoring.types import ColumnDrift, DriftMethod, DriftResult, Histogram

__all__ = [
    "DEFAULT_THRESHOLDS",
    "NULL_P_VALUE",
    "NULL_SHARE_CHANGE",
    "SMALL_ROWS",
    "ColumnCounts",
    "ColumnRule",
    "DriftDetector",
    "WindowProfile",
    "compare",
    "merge_profiles",
    "null_score",
    "null_shares_text",
    "ranked",
    "score_text",
    "severity",
]

SMALL_ROWS = 1000
NULL_P_VALUE = 0.05
NULL_SHARE_CHANGE = 0.01
DEFAULT_THRESHOLDS: Mapping[DriftMethod, float] = {
    "psi": 0.1, "js": 0.1, "wasserstein": 0.1, "ks": 0.05, "chi2": 0.05, "chi2_contingency": 0.05,
    "mmd": 0.05,
}  # fmt: skip
P_VALUE_METHODS: frozenset[str] = frozenset({"ks", "chi2", "chi2_contingency", "mmd"})
METHODS: tuple[str, ...] = get_args(DriftMethod)
OTHER = "(other)"
_Floats = npt.NDArray[np.float64]
_T = TypeVar("_T")
_R = TypeVar("_R")


class ColumnRule(msgspec.Struct, frozen=True, kw_only=True):
    """A column's method and/or threshold, overriding the defaults."""

    method: DriftMethod | None = None
    threshold: float | None = None


class ColumnCounts(msgspec.Struct, frozen=True, kw_only=True):
    """One column of a window, counted on the reference's bins (numeric) or on its categories
    followed by one count for every other value (categorical)."""

    name: str
    rows: int  # values counted (finite numbers, non-null categories)
    nulls: int
    counts: tuple[int, ...]


class WindowProfile(msgspec.Struct, frozen=True, kw_only=True):
    """Current data reduced to counts on a reference's bins; profiles of the same reference
    (``reference_key``) merge by adding their counts."""

    reference_key: str
    rows: int
    columns: tuple[ColumnCounts, ...]

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)

    @classmethod
    def from_json(cls, data: bytes) -> WindowProfile:
        return msgspec.json.decode(data, type=cls)


def merge_profiles(profiles: Sequence[WindowProfile]) -> WindowProfile:
    """The profile of the union of the windows behind ``profiles`` (all of one reference)."""
    if not profiles:
        raise InvalidInputError("No window profiles to merge; profile at least one window.")
    keys = {p.reference_key for p in profiles}
    if len(keys) > 1:
        raise InvalidInputError(
            f"Window profiles of different references ({', '.join(sorted(keys))}) cannot be "
            "merged; profile the windows against one reference."
        )
    first = profiles[0]
    columns = []
    for i, column in enumerate(first.columns):
        counts = np.asarray([p.columns[i].counts for p in profiles], dtype=np.int64).sum(axis=0)
        columns.append(
            ColumnCounts(
                name=column.name,
                rows=sum(p.columns[i].rows for p in profiles),
                nulls=sum(p.columns[i].nulls for p in profiles),
                counts=tuple(int(c) for c in counts),
            )
        )
    return WindowProfile(
        reference_key=first.reference_key,
        rows=sum(p.rows for p in profiles),
        columns=tuple(columns),
    )


@dataclass(frozen=True, slots=True)
class _Reference:
    """What a detector keeps of one reference column."""

    name: str
    kind: str  # numeric, datetime, categorical, bool
    rows: int  # values (finite numbers, non-null categories)
    nulls: int
    total: int  # rows of the reference, nulls included
    edges: tuple[float, ...] | None  # numeric: the quantile bin edges
    levels: tuple[str, ...] | None  # categorical: the top values, as text
    counts: npt.NDArray[np.int64]  # per bin, or per level then "other"
    std: float | None  # numeric: population standard deviation
    ordered: _Floats | None  # numeric, raw reference: every finite value, sorted

    @property
    def numeric(self) -> bool:
        return self.edges is not None


class DriftDetector:
    """Compares current data with a reference fitted once.

    ``columns`` overrides method and threshold per column, ``thresholds`` the default threshold
    per method; ``share_threshold`` is the share of drifted columns at which the dataset drifts.
    ``bins`` and ``top_k`` shape the histograms of a raw reference (a stored profile brings its
    own). ``workers`` threads share the numeric columns (sorting releases the GIL).
    ``nulls`` checks the share of null rows of each column (see the module); off, the null
    shares are still reported but never drift (a model's outputs, where a null means a request
    did not ask for that output).
    """

    def __init__(
        self,
        *,
        columns: Mapping[str, ColumnRule] | None = None,
        thresholds: Mapping[str, float] | None = None,
        share_threshold: float = 0.5,
        bins: int = 20,
        top_k: int = 20,
        workers: int = 2,
        nulls: bool = True,
    ) -> None:
        self.columns = dict(columns or {})
        self.thresholds = dict(thresholds or {})
        self.share_threshold = share_threshold
        self.bins = bins
        self.top_k = top_k
        self.workers = workers
        self.nulls = nulls

    # -- fitting -------------------------------------------------------------------------------

    def fit(
        self, reference: pd.DataFrame | Profile, *, description: str = "reference", salt: str = ""
    ) -> DriftDetector:
        """Learn the reference: a DataFrame (exact statistics) or a stored ``Profile``.

        ``salt`` joins the reference's key (``key_``, which names cached window profiles): what
        else shaped the columns, such as the vocabulary behind text descriptors."""
        self._check_settings()
        if isinstance(reference, Profile):
            fitted = tuple(_from_profile_column(c) for c in reference.columns)
            rows, exact = reference.rows, False
        elif isinstance(reference, pd.DataFrame):
            if reference.empty:
                raise InvalidInputError(
                    f"The reference {description!r} has no rows; pass the training data or a "
                    "model version with a stored profile."
                )
            fitted = tuple(
                self._map(
                    lambda name: _from_raw_column(
                        str(name), reference[name], self.bins, self.top_k
                    ),
                    list(reference.columns),
                )
            )
            rows, exact = len(reference), True
        else:
            raise InvalidInputError(
                f"Cannot use a {type(reference).__name__} as a drift reference; pass a DataFrame "
                "or a Profile."
            )
        unknown = sorted(set(self.columns) - {c.name for c in fitted})
        if unknown:
            raise InvalidInputError(
                f"Drift rules name columns the reference does not have: {_listed(unknown)}; the "
                f"reference has {_listed([c.name for c in fitted])}."
            )
        self.reference_: tuple[_Reference, ...] = fitted
        self.rows_ = rows
        self.exact_ = exact
        self.description_ = description
        self.key_ = _reference_key(fitted, salt)
        return self

    def _check_settings(self) -> None:
        if not 0 < self.share_threshold <= 1:
            raise InvalidInputError(
                f"The drift share threshold {self.share_threshold} is outside (0, 1]; use e.g. 0.5."
            )
        for method, value in self.thresholds.items():
            _check_threshold(f"The default threshold of {method!r}", method, value)
        for name, rule in self.columns.items():
            if rule.method is not None and rule.method not in METHODS:
                raise InvalidInputError(
                    f"Column {name!r} asks for drift method {rule.method!r}; use one of "
                    f"{', '.join(METHODS)}."
                )
            if rule.threshold is not None:
                _check_threshold(f"Column {name!r}'s threshold", rule.method, rule.threshold)

    # -- current data --------------------------------------------------------------------------

    def profile(self, current: pd.DataFrame) -> WindowProfile:
        """``current`` counted on the reference's bins and categories (mergeable)."""
        frame = self._checked(current)
        columns = []
        for ref in self.reference_:
            rows, nulls, counts = _counts(ref, frame[ref.name])
            columns.append(
                ColumnCounts(
                    name=ref.name, rows=rows, nulls=nulls, counts=tuple(int(c) for c in counts)
                )
            )
        return WindowProfile(reference_key=self.key_, rows=len(frame), columns=tuple(columns))

    def compare(
        self,
        current: pd.DataFrame | WindowProfile,
        *,
        description: str = "current",
        progress: Callable[[int], None] | None = None,
    ) -> DriftResult:
        """Drift of ``current`` (raw rows or a window profile); ``progress(n)`` hears of each
        column done."""
        if isinstance(current, WindowProfile):
            if current.reference_key != self.key_:
                raise InvalidInputError(
                    "This window profile was counted on another reference's bins; profile the "
                    "window with this detector (DriftDetector.profile)."
                )
            jobs: list[tuple[_Reference, pd.Series | None, ColumnCounts | None]] = [
                (ref, None, col) for ref, col in zip(self.reference_, current.columns, strict=True)
            ]
            rows = current.rows
        else:
            frame = self._checked(current)
            jobs = [(ref, frame[ref.name], None) for ref in self.reference_]
            rows = len(frame)
        if rows == 0:
            raise InvalidInputError(
                f"The current data {description!r} has no rows; widen the window or check that "
                "predictions are logged."
            )

        def one(job: tuple[_Reference, pd.Series | None, ColumnCounts | None]) -> ColumnDrift:
            result = self._column(*job, total=rows)
            if progress is not None:
                progress(1)
            return result

        # counts compare in microseconds: a thread pool per window costs more than the work
        # (a drift series compares one profile per hour)
        counted = isinstance(current, WindowProfile)
        drifts = tuple(one(job) for job in jobs) if counted else tuple(self._map(one, jobs))
        drifted = sum(d.drifted for d in drifts)
        share = drifted / len(drifts) if drifts else 0.0
        return DriftResult(
            reference=self.description_,
            current=description,
            reference_rows=self.rows_,
            current_rows=rows,
            columns=drifts,
            drifted=drifted,
            share=share,
            threshold=self.share_threshold,
            dataset_drift=bool(drifts) and share >= self.share_threshold,
        )

    def _map(self, function: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        """``function`` over ``items`` on ``workers`` threads (numpy sorts release the GIL)."""
        if self.workers > 1 and len(items) > 1:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="drift") as pool:
                return list(pool.map(function, items))
        return [function(item) for item in items]

    def _checked(self, current: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(current, pd.DataFrame):
            raise InvalidInputError(
                f"Cannot compare a {type(current).__name__} with the reference; pass a DataFrame."
            )
        names = [c.name for c in self.reference_]
        present = [str(c) for c in current.columns]
        missing = [n for n in names if n not in present]
        extra = [n for n in present if n not in names]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"lacks {_listed(missing)}")
            if extra:
                parts.append(f"has {_listed(extra)} the reference does not")
            raise InvalidInputError(
                "The current data's columns differ from the reference's: it "
                f"{' and '.join(parts)}; pass data with the reference's columns."
            )
        for ref in self.reference_:
            kind = column_kind(column_dtype(current[ref.name]))
            numeric = kind in ("numeric", "datetime")
            if ref.numeric != numeric and not (ref.kind == "bool" and kind == "numeric"):
                raise InvalidInputError(
                    f"Column {ref.name!r} is {ref.kind} in the reference but {kind} in the "
                    "current data; pass values of the reference's type."
                )
        return current

    # -- one column ----------------------------------------------------------------------------

    def _method(self, ref: _Reference, rows: int, raw: bool) -> DriftMethod:
        rule = self.columns.get(ref.name)
        if rule is not None and rule.method is not None:
            if rule.method == "ks" and not (raw and ref.ordered is not None):
                raise InvalidInputError(
                    f"Column {ref.name!r} asks for 'ks', which needs raw rows on both sides; "
                    "pass the reference data (--reference FILE) or use chi2, psi, js or "
                    "wasserstein."
                )
            if rule.method == "mmd":
                raise InvalidInputError(
                    f"Column {ref.name!r} asks for 'mmd', which compares embedding outputs "
                    "(rows x dim) only; use psi, chi2, js, ks or wasserstein."
                )
            if rule.method in ("ks", "wasserstein") and not ref.numeric:
                raise InvalidInputError(
                    f"Column {ref.name!r} is {ref.kind}; {rule.method!r} needs numbers, use "
                    "chi2, js or psi."
                )
            return rule.method
        small = rows <= SMALL_ROWS
        if ref.numeric:
            if raw and ref.ordered is not None:
                return "ks" if small else "wasserstein"
            return "chi2" if small else "psi"
        return "chi2" if small else "js"

    def _threshold(self, name: str, method: DriftMethod) -> float:
        rule = self.columns.get(name)
        if rule is not None and rule.threshold is not None:
            return rule.threshold
        return self.thresholds.get(method, DEFAULT_THRESHOLDS[method])

    def _column(
        self,
        ref: _Reference,
        values: pd.Series | None,
        window: ColumnCounts | None,
        *,
        total: int,
    ) -> ColumnDrift:
        ordered: _Floats | None = None
        if values is not None:
            if ref.numeric and ref.ordered is not None:
                numbers = numeric_values(values)
                nulls = int(np.count_nonzero(np.isnan(numbers)))
                ordered = _sorted_finite(numbers)
                counts = _sorted_counts(ordered, ref.edges or ())
                rows = ordered.size
            else:
                rows, nulls, counts = _counts(ref, values)
        else:
            assert window is not None
            rows, nulls = window.rows, window.nulls
            counts = np.asarray(window.counts, dtype=np.int64)
        method = self._method(ref, rows, raw=ordered is not None)
        threshold = self._threshold(ref.name, method)
        histogram = _histogram(ref, counts)
        base = ColumnDrift(
            name=ref.name, kind=ref.kind, method=method, score=0.0, threshold=threshold,
            drifted=False, reference_rows=ref.rows, current_rows=rows, histogram=histogram,
            **_null_check(ref, nulls, total, test=self.nulls),
        )  # fmt: skip
        if rows == 0 or ref.rows == 0:  # a column that lost (or never had) every value drifted
            score = 0.0 if method in P_VALUE_METHODS else math.inf
            drifted = rows != ref.rows or base.null_drifted
            return msgspec.structs.replace(base, score=score, drifted=drifted, compared=False)
        try:
            score, statistic = self._score(method, ref, counts, ordered)
        except ValueError as exc:
            raise InvalidInputError(f"Cannot measure drift of column {ref.name!r}: {exc}") from exc
        drifted = score < threshold if method in P_VALUE_METHODS else score >= threshold
        return msgspec.structs.replace(
            base, score=score, drifted=drifted or base.null_drifted, statistic=statistic
        )

    def _score(
        self,
        method: DriftMethod,
        ref: _Reference,
        counts: npt.NDArray[np.int64],
        ordered: _Floats | None,
    ) -> tuple[float, float | None]:
        if method == "ks":
            assert ordered is not None and ref.ordered is not None
            statistic, p_value = stats.ks_sorted(ref.ordered, ordered)
            return p_value, statistic
        if method == "chi2":
            statistic, p_value = stats.chi2_goodness_of_fit(ref.counts, counts)
            return p_value, statistic
        if method == "chi2_contingency":
            statistic, p_value = stats.chi2_two_sample(ref.counts, counts)
            return p_value, statistic
        if method == "psi":
            return stats.psi(ref.counts, counts), None
        if method == "js":
            return stats.js_distance(ref.counts, counts), None
        # wasserstein, normalised by the reference's spread
        if ordered is not None and ref.ordered is not None:
            return stats.wasserstein_normalized(ref.ordered, ordered, reference_std=ref.std), None
        distance = stats.binned_wasserstein(ref.edges or (), ref.counts, counts)
        return _normalise(distance, ref.std), None


def null_score(column: ColumnDrift) -> float:
    """What an alert rule's ``null_drift:<column>`` reads: the null-share test's p-value, or 1
    when the share moved by less than ``NULL_SHARE_CHANGE``; below ``NULL_P_VALUE`` exactly
    when ``column.null_drifted``."""
    moved = abs(column.current_null_share - column.reference_null_share) >= NULL_SHARE_CHANGE
    return column.null_p_value if moved else 1.0


def _null_check(ref: _Reference, nulls: int, total: int, *, test: bool) -> dict[str, Any]:
    """The null-share fields of a column's ``ColumnDrift`` (see the module); never drifted
    without ``test``."""
    p_value = 1.0
    if test:
        _, p_value = stats.null_share_test(ref.nulls, ref.total, nulls, total)
    reference_share = ref.nulls / ref.total if ref.total else 0.0
    current_share = nulls / total if total else 0.0
    moved = abs(current_share - reference_share) >= NULL_SHARE_CHANGE
    return {
        "reference_null_share": reference_share,
        "current_null_share": current_share,
        "null_p_value": p_value,
        "null_drifted": p_value < NULL_P_VALUE and moved,
    }


def compare(
    reference: pd.DataFrame | Profile,
    current: pd.DataFrame | WindowProfile,
    *,
    columns: Mapping[str, ColumnRule] | None = None,
    thresholds: Mapping[str, float] | None = None,
    share_threshold: float = 0.5,
    progress: Callable[[int], None] | None = None,
) -> DriftResult:
    """Drift of ``current`` against ``reference`` with the default methods (see the module)."""
    detector = DriftDetector(
        columns=columns, thresholds=thresholds, share_threshold=share_threshold
    ).fit(reference)
    return detector.compare(current, progress=progress)


def severity(column: ColumnDrift) -> float:
    """How far past its threshold a column is, comparable across methods (>= 1: drifted, up to
    ties at the threshold): score / threshold for distances, threshold / p-value for tests."""
    if column.method in P_VALUE_METHODS:
        return math.inf if column.score <= 0 else column.threshold / column.score
    if column.threshold <= 0:
        return math.inf if column.score > 0 else 0.0
    return column.score / column.threshold


def score_text(column: ColumnDrift, digits: int = 4) -> str:
    """The score as people read it: the number, or why there is none (no values compared)."""
    if column.compared:
        return f"{column.score:.{digits}g}"
    if column.current_rows == 0 and column.current_null_share == 1.0:
        return "all null"
    return "no values"


def null_shares_text(column: ColumnDrift) -> str:
    """``"10.0% -> 70.0%"``: the reference's and the current share of null rows."""
    return f"{column.reference_null_share:.1%} → {column.current_null_share:.1%}"


def ranked(columns: Iterable[ColumnDrift]) -> list[ColumnDrift]:
    """Most drifted first: drifted columns, then by descending ``severity``, then by descending
    test statistic (p-values that underflowed to the same number), then by name."""
    return sorted(
        columns, key=lambda c: (not c.drifted, -severity(c), -(c.statistic or 0.0), c.name)
    )


# --- the reference side ------------------------------------------------------------------------


def _from_raw_column(name: str, column: pd.Series, bins: int, top_k: int) -> _Reference:
    kind = column_kind(column_dtype(column))
    if kind in ("numeric", "datetime"):
        numbers = numeric_values(column)
        nulls = int(np.count_nonzero(np.isnan(numbers)))
        ordered = _sorted_finite(numbers)
        edges = tuple(quantile_edges(ordered, bins).tolist()) if ordered.size else ()
        std = float(np.std(ordered)) if ordered.size else None
        return _Reference(
            name=name, kind=kind, rows=ordered.size, nulls=nulls, total=len(column), edges=edges,
            levels=None,
            counts=_sorted_counts(ordered, edges), std=std, ordered=ordered,
        )  # fmt: skip
    found = _value_counts(column)
    ranked = sorted(found.items(), key=lambda item: (-item[1], item[0]))
    levels = tuple(level for level, _ in ranked[:top_k])
    kept = [count for _, count in ranked[:top_k]]
    total = sum(found.values())
    counts = np.array([*kept, total - sum(kept)], dtype=np.int64)
    return _Reference(
        name=name, kind=kind, rows=total, nulls=len(column) - total, total=len(column),
        edges=None, levels=levels, counts=counts, std=None, ordered=None,
    )  # fmt: skip


def _from_profile_column(column: Any) -> _Reference:
    total = column.count + column.nulls + column.infinite
    if column.kind in ("numeric", "datetime"):
        edges = tuple(column.bin_edges or ())
        counts = np.asarray(column.bin_counts or (), dtype=np.int64)
        std = None
        if column.std is not None and column.count > 1:
            std = column.std * math.sqrt((column.count - 1) / column.count)  # to ddof=0
        elif column.count == 1:
            std = 0.0
        return _Reference(
            name=column.name, kind=column.kind, rows=column.count, nulls=column.nulls,
            total=total, edges=edges, levels=None, counts=counts, std=std, ordered=None,
        )  # fmt: skip
    top = column.top or ()
    levels = tuple(str(c.value) for c in top)
    counts = np.array([*(c.count for c in top), column.other_count or 0], dtype=np.int64)
    return _Reference(
        name=column.name, kind=column.kind, rows=column.count, nulls=column.nulls, total=total,
        edges=None, levels=levels, counts=counts, std=None, ordered=None,
    )  # fmt: skip


def _reference_key(columns: Sequence[_Reference], salt: str = "") -> str:
    shape = [(c.name, c.kind, c.edges, c.levels) for c in columns]
    digest = hashlib.sha256(msgspec.json.encode(shape))
    if salt:
        digest.update(salt.encode())
    return digest.hexdigest()[:16]


def _sorted_finite(numbers: _Floats) -> _Floats:
    """The finite values, sorted, in one new array (``numbers`` may be the caller's data)."""
    finite = np.isfinite(numbers)
    if finite.all():
        return np.sort(numbers)
    kept = numbers[finite]
    kept.sort()
    return kept


# --- counting ----------------------------------------------------------------------------------


def _sorted_counts(ordered: _Floats, edges: Sequence[float]) -> npt.NDArray[np.int64]:
    """Bin counts of sorted finite values, as ``count_in_bins`` counts them."""
    if len(edges) <= 2:
        return np.array([ordered.size], dtype=np.int64)
    starts = np.searchsorted(ordered, np.asarray(edges[1:-1]), side="left")
    return np.diff(np.append(starts, ordered.size), prepend=0).astype(np.int64)


def _value_counts(column: pd.Series) -> dict[str, int]:
    counts = column.value_counts(dropna=True, sort=False)
    found: dict[str, int] = {}
    for value, count in zip(counts.index.tolist(), counts.tolist(), strict=True):
        key = str(value)
        found[key] = found.get(key, 0) + int(count)
    return found


def _counts(ref: _Reference, column: pd.Series) -> tuple[int, int, npt.NDArray[np.int64]]:
    """Values counted, nulls, and counts on ``ref``'s bins or levels."""
    if ref.numeric:
        numbers = numeric_values(column)
        finite = np.isfinite(numbers)
        rows = int(np.count_nonzero(finite))
        return (
            rows,
            int(np.count_nonzero(np.isnan(numbers))),
            count_in_bins(numbers, ref.edges or ()),
        )
    found = _value_counts(column)
    levels = ref.levels or ()
    kept = [found.get(level, 0) for level in levels]
    total = sum(found.values())
    counts = np.array([*kept, total - sum(kept)], dtype=np.int64)
    return total, len(column) - total, counts


def _histogram(ref: _Reference, counts: npt.NDArray[np.int64]) -> Histogram:
    if ref.numeric:
        labels = _bin_labels(ref.edges or ())
        return Histogram(labels=labels, reference=_shares(ref.counts), current=_shares(counts))
    labels = (*(ref.levels or ()), OTHER)
    reference, current = _shares(ref.counts), _shares(counts)
    if ref.counts[-1] == 0 and counts[-1] == 0:  # no "other" on either side
        labels, reference, current = labels[:-1], reference[:-1], current[:-1]
    return Histogram(labels=labels, reference=reference, current=current)


@functools.lru_cache(maxsize=4096)
def _bin_labels(edges: tuple[float, ...]) -> tuple[str, ...]:
    """``[a, b)`` per bin (the last one closed); the same reference edges label every window of
    a drift series, so they are formatted once."""
    if len(edges) <= 1:
        return tuple(_number(e) for e in edges) or ("(none)",)
    return tuple(
        f"[{_number(a)}, {_number(b)}{']' if i == len(edges) - 2 else ')'}"
        for i, (a, b) in enumerate(itertools.pairwise(edges))
    )


def _shares(counts: npt.NDArray[np.int64]) -> tuple[float, ...]:
    """Each count over the total (the same float division as ``float(c) / total``, in numpy)."""
    total = int(counts.sum())
    if total == 0:
        return (0.0,) * len(counts)
    shares: list[float] = (np.asarray(counts, dtype=np.float64) / float(total)).tolist()
    return tuple(shares)


def _number(value: float) -> str:
    return f"{value:.4g}"


def _normalise(distance: float, std: float | None) -> float:
    """``distance`` over the reference's std, floored at ``stats.MIN_SCALE`` (finite)."""
    if std is None:  # no reference values: nothing to scale by
        return 0.0 if distance == 0 else math.inf
    return distance / max(std, stats.MIN_SCALE)


def _check_threshold(what: str, method: str | None, value: float) -> None:
    if method is not None and method not in METHODS:
        raise InvalidInputError(
            f"{what} names drift method {method!r}; use one of {', '.join(METHODS)}."
        )
    if not math.isfinite(value) or value < 0 or (method in P_VALUE_METHODS and value > 1):
        raise InvalidInputError(
            f"{what} is {value}; use a number >= 0 (a p-value in [0, 1] for "
            f"{', '.join(sorted(P_VALUE_METHODS))})."
        )


def _listed(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
