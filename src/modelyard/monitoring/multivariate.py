"""Multivariate drift: how well a PCA learned on the reference reconstructs a window's rows
(NannyML's "data reconstruction" method), for drift that no single column shows, such as a
correlation between two inputs that changes sign while each input keeps its distribution.

``ReconstructionDrift.fit`` learns, on the reference rows:

- which inputs take part: numeric ones as they are, categorical and bool ones by frequency
  encoding (each value becomes its share of the reference; a value the reference never had
  becomes 0); datetime inputs and free text are left out;
- imputation: a missing numeric value becomes the reference mean, a missing category the
  reference's most frequent one;
- standardisation (mean 0, variance 1 per input; a constant input is only centred);
- a PCA keeping the fewest components whose explained variance exceeds ``variance`` (65%);
- the reconstruction error of a set of rows: the mean Euclidean distance between each
  standardised row and its reconstruction from those components;
- thresholds: the reference split into ``chunks`` consecutive chunks (10), the mean of their
  errors plus and minus ``sigmas`` (3) population standard deviations (the lower one no less
  than 0). A window whose error is not strictly between them raises the alert flag.

Each window also carries a sampling error (the standard deviation of its rows' errors over the
square root of its rows: the standard error of its mean), so a small window's wobble can be told
from drift. These choices are NannyML 0.13's: ``benchmarks/multivariate.py`` compares the two.

``reconstruction_error`` runs it on a deployment's prediction log: fitted on the stored reference
sample of the model version that answered most rows (or on a given version or data file), scored
on the window, or on each hour or day of it. For one window, each log file's error count, sum
and sum of squares are cached per fitted model under
``<root>/_profiles/deployment=<name>/reconstruction-<key>/<hour>.json`` (log files never change),
so a server refreshing its gauges every minute scores only the new files and the few at the
window's edges.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Self

import msgspec
import numpy as np
import numpy.typing as npt
import pandas as pd

from modelyard.core.profile import column_kind
from modelyard.core.signature import column_dtype
from modelyard.core.tables import read_data_file
from modelyard.errors import InvalidInputError, ModelyardError
from modelyard.monitoring._filecache import load_cached, place, store_cached
from modelyard.monitoring._partitions import (
    Hour,
    empty_window,
    hours,
    log_columns,
    log_folder,
    require_window,
)
from modelyard.monitoring.text import looks_like_text
from modelyard.monitoring.types import Reconstruction, ReconstructionWindow
from modelyard.monitoring.windows import log_inputs, read_by_file, read_rows
from modelyard.settings import ReconstructionSettings

if TYPE_CHECKING:
    from modelyard.monitoring.service import DriftOptions
    from modelyard.registry.client import Registry

__all__ = [
    "DEFAULT_CHUNKS",
    "DEFAULT_SIGMAS",
    "DEFAULT_VARIANCE",
    "MIN_CHUNK_ROWS",
    "ReconstructionDrift",
    "reconstruction_error",
    "reconstruction_metrics",
]

DEFAULT_VARIANCE = 0.65
DEFAULT_CHUNKS = 10
DEFAULT_SIGMAS = 3.0
#: The fewest reference rows per chunk: the thresholds come from the chunks' spread.
MIN_CHUNK_ROWS = 10

Floats = npt.NDArray[np.float64]


class ReconstructionDrift:
    """PCA reconstruction error against a reference (scikit-learn's fit contract)."""

    def __init__(
        self,
        *,
        variance: float = DEFAULT_VARIANCE,
        chunks: int = DEFAULT_CHUNKS,
        sigmas: float = DEFAULT_SIGMAS,
    ) -> None:
        self.variance = variance
        self.chunks = chunks
        self.sigmas = sigmas

    def fit(
        self,
        reference: pd.DataFrame,
        *,
        columns: Sequence[str] | None = None,
        description: str = "the reference",
    ) -> Self:
        """Learn the encoding, the scaling, the PCA and the thresholds from ``reference``'s
        ``columns`` (default: all of them; datetime and free-text columns are left out)."""
        _check_params(self.variance, self.chunks, self.sigmas)
        names = [str(c) for c in (reference.columns if columns is None else columns)]
        missing = [c for c in names if c not in reference.columns]
        if missing:
            raise InvalidInputError(
                f"{description} lacks the columns {', '.join(map(repr, missing))}; compare "
                "data of the same model."
            )
        numeric, categorical = _usable(reference, names)
        if len(numeric) + len(categorical) < 2:
            raise InvalidInputError(
                f"Reconstruction error needs at least 2 numeric or categorical input columns; "
                f"{description} has {len(numeric) + len(categorical)} "
                f"({', '.join(numeric + categorical) or 'none'}); use the per-column drift "
                "('yard monitor drift') instead."
            )
        needed = self.chunks * MIN_CHUNK_ROWS
        if len(reference) < needed:
            raise InvalidInputError(
                f"{description} has {len(reference)} rows; reconstruction error needs at least "
                f"{needed} ({self.chunks} chunks of {MIN_CHUNK_ROWS}) for its thresholds; "
                "register the model with more reference data or use fewer chunks."
            )
        self.description_ = description
        self.reference_rows_ = len(reference)
        self.numeric_ = tuple(numeric)
        self.categorical_ = tuple(categorical)
        self.means_ = np.array([_mean(_numbers(reference[c])) for c in numeric])
        self.levels_: list[pd.Index] = []
        self.shares_: list[Floats] = []
        for column in categorical:
            counts = _labels(reference[column]).value_counts(sort=True)
            shares = counts.to_numpy(dtype=np.float64) / max(1, int(counts.sum()))
            self.levels_.append(pd.Index(counts.index.astype(str)))
            self.shares_.append(shares)
        encoded = self._encode(reference)
        self.center_ = encoded.mean(axis=1)
        scale = encoded.std(axis=1)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        scaled = (encoded - self.center_[:, None]) / self.scale_[:, None]
        # the principal axes from the inputs' small Gram matrix (as an SVD of the rows would
        # give, without its rows x inputs factor): 0.6 s less on 100k rows of 13 inputs
        power, vectors = np.linalg.eigh(scaled @ scaled.T)
        order = np.argsort(power)[::-1]
        power, vt = np.clip(power[order], 0.0, None), vectors[:, order].T
        ratio = power / power.sum() if power.sum() > 0 else np.ones_like(power) / len(power)
        keep = min(
            int(np.searchsorted(np.cumsum(ratio), self.variance, side="right")) + 1, len(ratio)
        )
        self.components_ = vt[:keep]
        self.explained_ = float(ratio[:keep].sum())
        # this times a centred row is its residual: scaling, then removing the kept components
        residual = np.eye(len(ratio)) - self.components_.T @ self.components_
        self.residual_ = residual / self.scale_[None, :]
        errors = self._distances(encoded)
        chunk_means = np.array([part.mean() for part in np.array_split(errors, self.chunks)])
        self.reference_error_ = float(chunk_means.mean())
        spread = float(chunk_means.std())  # ddof 0, as NannyML 0.13
        self.upper_ = self.reference_error_ + self.sigmas * spread
        self.lower_ = max(0.0, self.reference_error_ - self.sigmas * spread)
        return self

    @property
    def columns_(self) -> tuple[str, ...]:
        return self.numeric_ + self.categorical_

    def errors(self, frame: pd.DataFrame) -> Floats:
        """Each row's reconstruction error (its Euclidean distance, standardised)."""
        missing = [c for c in self.columns_ if c not in frame.columns]
        if missing:
            raise InvalidInputError(
                f"The current data lacks the columns {', '.join(map(repr, missing))} that "
                f"{self.description_} has; compare data of the same model."
            )
        return self._distances(self._encode(frame))

    def score(
        self, frame: pd.DataFrame, *, start: datetime | None = None, end: datetime | None = None
    ) -> ReconstructionWindow:
        """The window of rows ``frame`` (from ``start`` to ``end``): its mean error, sampling
        error and alert flag (no error and no alert when it has no rows)."""
        return self.window(self.errors(frame), start=start, end=end)

    def window(
        self, errors: Floats, *, start: datetime | None = None, end: datetime | None = None
    ) -> ReconstructionWindow:
        """A window from its rows' errors (``errors``)."""
        rows = len(errors)
        error = float(errors.mean()) if rows else None
        spread = float(errors.std(ddof=1) / np.sqrt(rows)) if rows > 1 else None
        return self._window(rows, error, spread, start=start, end=end)

    def summed(
        self, rows: int, total: float, squares: float, *, start: datetime, end: datetime
    ) -> ReconstructionWindow:
        """A window from the count, sum and sum of squares of its rows' errors."""
        error = total / rows if rows else None
        spread = None
        if rows > 1:
            variance = max(0.0, (squares - total * total / rows) / (rows - 1))
            spread = float(np.sqrt(variance / rows))
        return self._window(rows, error, spread, start=start, end=end)

    def _window(
        self,
        rows: int,
        error: float | None,
        spread: float | None,
        *,
        start: datetime | None,
        end: datetime | None,
    ) -> ReconstructionWindow:
        return ReconstructionWindow(
            start=start.isoformat() if start else None,
            end=end.isoformat() if end else None,
            rows=rows,
            error=error,
            sampling_error=spread,
            alert=error is not None and not self.lower_ < error < self.upper_,
        )

    @property
    def key_(self) -> str:
        """A digest of what was fitted: the cache of a log file's errors is kept under it."""
        digest = hashlib.sha256(repr((self.columns_, self.description_)).encode())
        for part in (self.center_, self.scale_, self.components_, self.means_, *self.shares_):
            digest.update(np.ascontiguousarray(part).tobytes())
        for levels in self.levels_:
            digest.update("\x00".join(levels).encode())
        return digest.hexdigest()[:16]

    def result(self, windows: Sequence[ReconstructionWindow]) -> Reconstruction:
        return Reconstruction(
            reference=self.description_,
            reference_rows=self.reference_rows_,
            columns=self.columns_,
            components=len(self.components_),
            variance=self.explained_,
            reference_error=self.reference_error_,
            lower_threshold=self.lower_,
            upper_threshold=self.upper_,
            windows=tuple(windows),
        )

    def _encode(self, frame: pd.DataFrame) -> Floats:
        """Rows as floats, one row of the result per input (inputs x rows: the layout the
        matrix products below run 5x faster on): numeric inputs imputed, categorical ones
        frequency encoded."""
        out = np.empty((len(self.columns_), len(frame)), dtype=np.float64)
        for j, column in enumerate(self.numeric_):
            values = _numbers(frame[column])
            out[j] = np.where(np.isnan(values), self.means_[j], values)
        offset = len(self.numeric_)
        for j, column in enumerate(self.categorical_):
            labels = frame[column]
            keys = labels if pd.api.types.is_string_dtype(labels.dtype) else labels.astype(str)
            codes = self.levels_[j].get_indexer(pd.Index(keys))  # unseen: -1
            # a missing value is the most frequent one (value_counts put it first: code 0)
            codes = np.where(labels.isna().to_numpy(), 0, codes)
            table = np.append(self.shares_[j], 0.0)  # code -1 (unseen) reads the 0 at the end
            out[offset + j] = table[codes]
        return out

    def _distances(self, encoded: Floats) -> Floats:
        """Each encoded row's distance to its reconstruction, in standardised units."""
        residual = self.residual_ @ (encoded - self.center_[:, None])
        distances: Floats = np.sqrt(np.einsum("ij,ij->j", residual, residual))
        return distances


def _check_params(variance: float, chunks: int, sigmas: float) -> None:
    if not 0 < variance <= 1:
        raise InvalidInputError(
            f"variance {variance!r} is not a share of variance; use a number in (0, 1], e.g. 0.65."
        )
    if chunks < 2:
        raise InvalidInputError(
            f"chunks {chunks!r} gives no spread for the thresholds; use 2 or more, e.g. 10."
        )
    if not sigmas > 0:
        raise InvalidInputError(f"sigmas {sigmas!r} is not positive; use e.g. 3.")


def _usable(frame: pd.DataFrame, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """The numeric and the categorical (and bool) columns among ``names``; datetime and free
    text left out."""
    numeric, categorical = [], []
    for name in names:
        column = frame[name]
        try:
            kind = column_kind(column_dtype(column))
        except ModelyardError:
            continue  # Python objects without a dtype (lists...)
        if kind == "numeric":
            numeric.append(name)
        elif kind in ("categorical", "bool") and not looks_like_text(column):
            categorical.append(name)
    return numeric, categorical


def _numbers(column: pd.Series) -> Floats:
    values: Floats = pd.to_numeric(column, errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    return np.where(np.isfinite(values), values, np.nan)


def _mean(values: Floats) -> float:
    """The mean of the present values (0 for a column without any)."""
    present = values[~np.isnan(values)]
    return float(present.mean()) if len(present) else 0.0


def _labels(column: pd.Series) -> pd.Series:
    """A categorical column's values, missing ones as NA (bools and strings compare as text)."""
    return column.astype("object").where(column.notna(), None)


# --- the prediction log ------------------------------------------------------------------------


def reconstruction_error(
    registry: Registry,
    root: str | Path,
    name: str,
    *,
    window: timedelta = timedelta(hours=1),
    every: timedelta | None = None,
    reference: str | None = None,
    options: DriftOptions | None = None,
    now: datetime | None = None,
) -> Reconstruction:
    """The reconstruction error of ``name``'s logged inputs over the last ``window`` (one
    window), or of each UTC hour or day (``every``) from the one holding ``now - window``,
    oldest first.

    The reference is ``reference`` (``NAME/VERSION``: its stored reference sample; or a CSV or
    Parquet file), by default the stored sample of the version that answered most rows in the
    window. Hashed or dropped inputs (``options.exclude``) and free text are left out;
    ``options.reconstruction``: the PCA's share of variance, the chunks and the sigmas.
    """
    params = options.reconstruction if options is not None else ReconstructionSettings()
    now = now or datetime.now(UTC)
    require_window(window)
    if every is not None and every <= timedelta(0):
        raise InvalidInputError(f"--every {every} is empty; use e.g. --every 1h.")
    if not log_folder(root, name).is_dir():
        raise empty_window(root, name, "at all")
    start = now - window
    if every is not None:  # from the whole UTC hour or day, like CBPE's windows
        step_s = int(every.total_seconds())
        start = datetime.fromtimestamp(int(start.timestamp()) // step_s * step_s, UTC)
    found = hours(root, name, start, now + timedelta(seconds=1))
    files = [f for h in found for f in h.files]
    empty = empty_window(root, name, f"from {start:%Y-%m-%d %H:%M} to {now:%Y-%m-%d %H:%M} UTC")

    def fitted(data: pd.DataFrame, description: str, logged: Sequence[str]) -> ReconstructionDrift:
        keep = [c for c in logged if c not in (options.exclude if options else ())]
        if options is not None and options.text_columns:
            keep = [c for c in keep if c not in options.text_columns]
        return ReconstructionDrift(
            variance=params.variance, chunks=params.chunks, sigmas=params.sigmas
        ).fit(data, columns=[c for c in keep if c in data.columns], description=description)

    if every is None:  # one window: each log file's errors are cached, as drift's profiles are
        served = _served(files, start, now)
        if served is None:
            raise empty
        model = fitted(*_reference_rows(registry, served, reference), _logged_inputs(files))
        sums = _window_sums(model, root, name, found, start=start, end=now)
        if not sums[0]:
            raise empty
        return model.result([model.summed(*sums, start=start, end=now)])
    rows = read_rows(files, start=start, end=now)
    if rows.empty:
        raise empty
    inputs = log_inputs(rows)
    model = fitted(*_reference_rows(registry, _most_served(rows), reference), list(inputs.columns))
    errors = model.errors(inputs)
    step = every.total_seconds()
    since_epoch = pd.to_datetime(rows["time"], utc=True) - pd.Timestamp(0, tz="UTC")
    buckets = since_epoch.dt.total_seconds().to_numpy() // int(step)
    first = int(start.timestamp()) // int(step)
    windows = []
    for bucket in range(first, int(now.timestamp()) // int(step) + 1):
        begin = datetime.fromtimestamp(bucket * step, UTC)
        windows.append(
            model.window(errors[buckets == bucket], start=begin, end=min(begin + every, now))
        )
    return model.result(windows)


def _most_served(rows: pd.DataFrame) -> str:
    """``model/version`` of the version that answered most of ``rows`` ("" when none says)."""
    served = rows[rows["version"].astype(str) != ""]
    counts = served.groupby(["model", "version"]).size().sort_values(ascending=False)
    if counts.empty:
        return ""
    model, number = counts.index[0]
    return f"{model}/{number}"


def _served(files: Sequence[Path], start: datetime, end: datetime) -> str | None:
    """``model/version`` that answered most rows of ``files`` in ``[start, end)`` ("" when the
    rows name none; ``None`` when there are none), reading only those two columns."""
    from modelyard.monitoring import _duck

    if not files:
        return None
    with _duck.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        paths = [str(f) for f in files]
        ok = "coalesce(status, 200) < 400" if "status" in log_columns(con, paths) else "true"
        found = con.execute(
            "SELECT model, version, count(*) AS n FROM read_parquet(?, union_by_name = true, "
            f"hive_partitioning = false) WHERE time >= ? AND time < ? AND {ok} "
            "GROUP BY model, version ORDER BY (version <> '') DESC, n DESC, version DESC LIMIT 1",
            [paths, start, end],
        ).fetchall()
    if not found:
        return None
    model, version, _ = found[0]
    return f"{model}/{version}" if version else ""


def _logged_inputs(files: Sequence[Path]) -> list[str]:
    """The input columns of the log ``files`` (their Parquet footers; no rows read)."""
    import pyarrow.parquet as pq

    names: dict[str, None] = {}
    for file in files:
        names.update(dict.fromkeys(n[3:] for n in pq.read_schema(file).names if n[:3] == "in_"))
    return list(names)


class _FileErrors(msgspec.Struct, frozen=True):
    """One log file's rows scored by a fitted model: their time span and error sums."""

    name: str
    first: datetime
    last: datetime
    rows: int
    total: float
    squares: float


def _window_sums(
    model: ReconstructionDrift,
    root: str | Path,
    name: str,
    selected: Sequence[Hour],
    *,
    start: datetime,
    end: datetime,
) -> tuple[int, float, float]:
    """The count, sum and sum of squares of the errors of the rows in ``[start, end)``: files
    inside from their cached sums (a file is scored once per fitted model), the few files at
    the edges from their rows."""
    folder = Path(root) / "_profiles" / f"deployment={name}" / f"reconstruction-{model.key_}"
    rows, total, squares = 0, 0.0, 0.0
    straddling: list[Path] = []
    for hour in selected:
        path = folder / f"{hour.start:%Y-%m-%dT%H}.json"
        cached = {f.name: f for f in load_cached(path, _FileErrors)}
        new = [f for f in hour.files if f.name not in cached]
        if new:
            groups = read_by_file(new)[0]
            for file in new:
                part = groups.get(str(file))
                if part is None:  # only failed requests
                    cached[file.name] = _FileErrors(file.name, hour.start, hour.start, 0, 0.0, 0.0)
                    continue
                errors = model.errors(log_inputs(part).reindex(columns=list(model.columns_)))
                cached[file.name] = _FileErrors(
                    file.name, _utc(part["time"].min()), _utc(part["time"].max()), len(errors),
                    float(errors.sum()), float(errors @ errors),
                )  # fmt: skip
            store_cached(path, [cached[f.name] for f in hour.files])
        for file in hour.files:
            sums = cached[file.name]
            where = place(sums.rows, sums.first, sums.last, start=start, end=end)
            if where == "inside":
                rows, total, squares = rows + sums.rows, total + sums.total, squares + sums.squares
            elif where == "edge":
                straddling.append(file)
    if straddling:
        frame = read_rows(straddling, start=start, end=end)
        if not frame.empty:
            errors = model.errors(log_inputs(frame).reindex(columns=list(model.columns_)))
            rows, total = rows + len(errors), total + float(errors.sum())
            squares += float(errors @ errors)
    return rows, total, squares


def _utc(value: object) -> datetime:
    moment: datetime = pd.Timestamp(value).to_pydatetime()  # type: ignore[arg-type]  # a time
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _reference_rows(
    registry: Registry, served: str, reference: str | None
) -> tuple[pd.DataFrame, str]:
    """The reference rows and their description: a data file, or the stored sample of
    ``reference`` (default ``served``, the version that answered most of the window)."""
    if reference is not None and Path(reference).suffix.lower() in (".csv", ".parquet", ".pq"):
        return read_data_file(reference, "reference"), Path(reference).name
    if reference is None:
        if not served:
            raise InvalidInputError(
                "The window's predictions name no model version; pass --reference NAME/VERSION "
                "or a reference data file."
            )
        reference = served
    found = registry.get_version(reference)
    try:
        sample = pd.read_parquet(io.BytesIO(registry.read_file(found.ref, "sample")))
    except ModelyardError as exc:
        raise InvalidInputError(
            f"Model {found.ref} has no stored reference sample ({exc}); pass --reference with "
            "the training data file."
        ) from exc
    return sample, f"{found.ref} (stored reference sample)"


def reconstruction_metrics(result: Reconstruction) -> dict[str, float]:
    """What alert rules and gauges read from one window's result: ``reconstruction_error`` and
    its thresholds (``reconstruction_threshold:lower``, ``:upper``); empty without rows."""
    error = result.windows[-1].error if result.windows else None
    if error is None:
        return {}
    return {
        "reconstruction_error": error,
        "reconstruction_threshold:lower": result.lower_threshold,
        "reconstruction_threshold:upper": result.upper_threshold,
    }
