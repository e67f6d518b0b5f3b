"""Performance estimated on the prediction log's windows before their labels arrive (CBPE,
``modelyard.monitoring.estimation``), compared with the realised performance where they have.

The reference is, by default, the oldest ``reference_rows`` labelled predictions of the same
model version in the log (``[monitoring.estimation]``), or a labelled table given by the
caller. Only the rows of that one version are estimated: another version has other scores and
needs its own reference.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from modelyard.core.durations import format_duration, parse_duration
from modelyard.core.types import Scalar  # at run time: msgspec reads the annotations
from modelyard.errors import InvalidInputError, NotFoundError, PredictionLogEmptyError
from modelyard.monitoring._partitions import require_window
from modelyard.monitoring.estimation import (
    CBPE,
    METRICS,
    ChunkEstimate,
    row_chunks,
    time_chunks,
)
from modelyard.monitoring.labels import (
    has_labels,
    has_predictions,
    latest_labels_sql,
    prediction_files_sql,
)
from modelyard.monitoring.performance import _utc, _where
from modelyard.settings import EstimationSettings

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from modelyard.registry import Registry

__all__ = ["EstimatedPerformance", "estimate_performance", "reference_from_log"]


class EstimatedPerformance(msgspec.Struct, frozen=True, kw_only=True):
    """The estimates of one model version's windows, oldest first.

    ``reference``: ``"log"`` (its oldest labelled predictions), ``"table"`` (a labelled table
    given) or ``"fitted"`` (a fitted ``CBPE`` given, e.g. from ``reference_from_log``);
    ``calibrated``: per class (binary: the positive class), whether its scores were calibrated;
    ``unscored``: predictions in the span without usable probabilities (left out)."""

    deployment: str
    model: str
    version: str
    classes: tuple[Scalar, ...]
    metrics: tuple[str, ...]
    chunk: str
    reference: str
    reference_rows: int
    calibrated: tuple[bool, ...]
    windows: list[ChunkEstimate]
    unscored: int = 0

    def latest(self) -> ChunkEstimate | None:
        """The newest window with predictions (``None`` when none has)."""
        return next((w for w in reversed(self.windows) if w.rows), None)


def estimate_performance(
    root: str | Path,
    deployment: str,
    *,
    since: timedelta | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    chunk: str | int | None = None,
    reference: pd.DataFrame | CBPE | None = None,
    version: str | None = None,
    classes: Sequence[Scalar] | None = None,
    registry: Registry | None = None,
    settings: EstimationSettings | None = None,
    now: datetime | None = None,
) -> EstimatedPerformance:
    """CBPE estimates per window of ``deployment``'s logged predictions of the last ``since``
    (or of ``[start, end)``; all of them when neither is given).

    - ``chunk``: a period (``"1h"``: UTC-aligned windows, empty ones included) or a number of
      rows; default ``settings.chunk``.
    - ``reference``: ``None`` (the log's oldest labelled predictions of the version), a fitted
      ``CBPE``, or a labelled DataFrame with ``label``, ``predict_proba`` (a list per row; or
      ``proba_0``, ``proba_1``...) and optionally ``predict``.
    - ``version``: ``"model/version"``; default the version of the newest prediction.
    - ``classes``: the model's classes in its probability columns' order; default the
      registry's signature (with ``registry``), else the sorted labels and predictions.

    ``PredictionLogEmptyError`` when the version logged nothing in the span;
    ``InvalidInputError`` when the log has no probabilities or the reference is too small.
    """
    config = settings or EstimationSettings()
    if since is not None and (start is not None or end is not None):
        raise InvalidInputError("Give either since or start/end, not both.")
    if since is not None:
        require_window(since)
    _require_log(root, deployment)
    every, size = _chunking(config.chunk if chunk is None else chunk)
    start, end = _utc(start), _utc(end)
    with _Log(root, deployment) as log:
        model, ver = _version(log, version)
        if since is not None:
            end = _utc(now) or datetime.now(UTC)
            start = end - since
            if every is not None:  # UTC-aligned windows, like performance_series
                step = int(every.total_seconds())
                start = datetime.fromtimestamp(int(start.timestamp()) // step * step, UTC)
        rows = log.rows(model, ver, start, end)
        labelled = (
            None if reference is not None else log.labelled(model, ver, config.reference_rows)
        )
    if rows.num_rows == 0:
        raise PredictionLogEmptyError(
            f"No predictions of {model}/{ver} logged for {deployment!r} in the window (log root "
            f"{root}); widen it or pick another version."
        )
    if isinstance(reference, CBPE) and hasattr(reference, "classes_"):
        classes = reference.classes_  # the fitted reference knows its classes
    known = _classes(classes, registry, model=model, version=ver, rows=rows, labelled=labelled)
    proba, usable = _proba(rows, len(known), f"{model}/{ver}")
    unscored = int((~usable).sum())
    rows = rows.filter(usable)
    cbpe, source, reference_rows = _reference(
        reference, labelled, classes=known, config=config, size=size, what=f"{model}/{ver}"
    )
    times = rows.column("time").to_numpy()
    if every is not None:
        first = start or _floor(times[0], every)
        last = end or _as_datetime(times[-1]) + timedelta(microseconds=1)
        firsts, spans = time_chunks(times, first, last, every)
    else:
        assert size is not None
        firsts = row_chunks(len(times), size)
        bounds = [*firsts.tolist(), len(times)]
        spans = [
            (_as_datetime(times[a]), _as_datetime(times[b - 1]))
            for a, b in itertools.pairwise(bounds)
        ]
    found = cbpe.estimate(proba, _predictions(rows), starts=firsts, y_true=_labels(rows, known))
    windows = [
        msgspec.structs.replace(w, start=a, end=b, model=model, version=ver)
        for w, (a, b) in zip(found, spans, strict=True)
    ]
    return EstimatedPerformance(
        deployment=deployment,
        model=model,
        version=ver,
        classes=tuple(known),
        metrics=METRICS,
        chunk=f"{size} rows" if every is None else format_duration(every),
        reference=source,
        reference_rows=reference_rows,
        calibrated=cbpe.calibrated_,
        windows=windows,
        unscored=unscored,
    )


def reference_from_log(
    root: str | Path,
    deployment: str,
    *,
    version: str | None = None,
    chunk: str | int | None = None,
    classes: Sequence[Scalar] | None = None,
    registry: Registry | None = None,
    settings: EstimationSettings | None = None,
) -> CBPE:
    """The reference ``estimate_performance`` fits on each call when given none: the oldest
    ``reference_rows`` labelled predictions of ``version`` (default: the newest prediction's).
    A caller that estimates often (a server's gauges) can keep it while the version serves and
    pass it as ``reference``; the same arguments give the same estimates."""
    config = settings or EstimationSettings()
    _require_log(root, deployment)
    _, size = _chunking(config.chunk if chunk is None else chunk)
    with _Log(root, deployment) as log:
        model, ver = _version(log, version)
        labelled = log.labelled(model, ver, config.reference_rows)
    what = f"{model}/{ver}"
    known = _classes(classes, registry, model=model, version=ver, rows=labelled, labelled=labelled)
    cbpe, _, _ = _reference(None, labelled, classes=known, config=config, size=size, what=what)
    return cbpe


def _require_log(root: str | Path, deployment: str) -> None:
    if not has_predictions(root, deployment):
        raise PredictionLogEmptyError(
            f"No predictions logged for {deployment!r} at all (log root {root}); serve it with "
            "'yard serve --log-predictions' (or check the name)."
        )


# -- reading the log ---------------------------------------------------------------------------


class _Log:
    """One DuckDB connection over a deployment's predictions and their latest labels."""

    def __init__(self, root: str | Path, name: str) -> None:
        import duckdb

        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.source = (
            f"read_parquet({prediction_files_sql(root, name)}, hive_partitioning = true, "
            "union_by_name = true, hive_types = {'deployment': VARCHAR, 'hour': VARCHAR})"
        )
        described = self.con.execute(f"DESCRIBE SELECT * FROM {self.source}").fetchall()
        self.columns = {str(r[0]) for r in described}
        if "out_predict_proba" not in self.columns:
            raise InvalidInputError(
                f"The prediction log of {name!r} has no out_predict_proba column, and performance "
                "estimation needs the model's class probabilities; serve a classifier whose "
                "outputs include predict_proba."
            )
        if has_labels(root, name):
            self.con.execute(f"CREATE TEMP TABLE l AS {latest_labels_sql(root, name)}")
        else:
            self.con.execute(
                'CREATE TEMP TABLE l (request_id VARCHAR, "row" BIGINT, label VARCHAR, '
                "label_num DOUBLE, time TIMESTAMPTZ)"
            )
        self.ok = "coalesce(status, 200) < 400" if "status" in self.columns else "true"
        self.predict = "out_predict" if "out_predict" in self.columns else "NULL"

    def __enter__(self) -> _Log:
        return self

    def __exit__(self, *_: object) -> None:
        self.con.close()

    def latest(self) -> tuple[str, str] | None:
        found = self.con.execute(
            f"SELECT model, version FROM {self.source} WHERE {self.ok} ORDER BY time DESC LIMIT 1"
        ).fetchall()
        return (str(found[0][0]), str(found[0][1])) if found else None

    def _select(self, where: str, params: list[Any], join: str, tail: str = "") -> pa.Table:
        sql = (
            f"SELECT p.time, p.out_predict, p.out_predict_proba, l.label, l.label_num FROM "
            f'(SELECT request_id, "row", time, {self.predict} AS out_predict, out_predict_proba '
            f'FROM {self.source} {where}) AS p {join} l USING (request_id, "row") '
            f'ORDER BY p.time, p.request_id, p."row" {tail}'
        )
        result: Any = self.con.sql(sql, params=params)
        fetch = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table
        table: pa.Table = fetch()
        return table

    def rows(
        self, model: str, version: str, start: datetime | None, end: datetime | None
    ) -> pa.Table:
        where, params = _where(start, end)
        clauses = f"{self.ok} AND model = ? AND version = ?"
        where = f"{where} AND {clauses}" if where else f"WHERE {clauses}"
        return self._select(where, [*params, model, version], "LEFT JOIN")

    def labelled(self, model: str, version: str, limit: int) -> pa.Table:
        where = f"WHERE {self.ok} AND model = ? AND version = ?"
        return self._select(where, [model, version], "JOIN", f"LIMIT {int(limit)}")


def _version(log: _Log, version: str | None) -> tuple[str, str]:
    if version is not None:
        model, sep, ver = version.partition("/")
        if not sep or not model or not ver:
            raise InvalidInputError(
                f"Invalid version {version!r}; give it as MODEL/VERSION, e.g. churn/3."
            )
        return model, ver
    latest = log.latest()
    if latest is None:
        raise PredictionLogEmptyError("No answered predictions in the log; serve some first.")
    return latest


# -- columns -----------------------------------------------------------------------------------


def _proba(rows: pa.Table, k: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """The probability matrix of the rows that have ``k`` of them, and which rows those are."""
    import pyarrow.compute as pc

    column = rows.column("out_predict_proba").combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
    usable = lengths == k
    if not usable.any():
        widths = sorted({int(n) for n in lengths if n})
        raise InvalidInputError(
            f"No logged prediction of {what} has {k} probabilities (one per class; found "
            f"{widths or 'none'}); give the model's classes in its probability order."
        )
    values = column.filter(usable).flatten().to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float64).reshape(-1, k), usable


def _predictions(rows: pa.Table) -> np.ndarray | None:
    values = rows.column("out_predict")
    if values.null_count:
        return None  # the most probable class instead
    return np.asarray(values.to_numpy(zero_copy_only=False))


def _labels(rows: pa.Table, classes: Sequence[Scalar]) -> np.ndarray:
    """Labels as numbers where the classes are numbers (NaN where none arrived), else text."""
    if all(isinstance(c, int | float) for c in classes):
        return np.asarray(rows.column("label_num").to_numpy(zero_copy_only=False), np.float64)
    return np.asarray(rows.column("label").to_pylist(), dtype=object)


def _classes(
    given: Sequence[Scalar] | None,
    registry: Registry | None,
    *,
    model: str,
    version: str,
    rows: pa.Table,
    labelled: pa.Table | None,
) -> tuple[Scalar, ...]:
    if given is not None:
        return tuple(given)
    if registry is not None:
        try:
            signature = registry.get_version(f"{model}/{version}").signature
        except NotFoundError:
            signature = None
        if signature is not None and signature.classes is not None:
            return tuple(signature.classes)
    seen: set[Any] = set(v for v in rows.column("out_predict").to_pylist() if v is not None)
    numeric = all(isinstance(v, int | float) for v in seen)
    if labelled is not None:
        column = "label_num" if numeric else "label"
        seen |= {v for v in labelled.column(column).to_pylist() if v is not None}
    if numeric:
        seen = {int(v) if float(v).is_integer() else v for v in seen}
    return tuple(sorted(seen, key=lambda v: (str(type(v)), v)))


# -- the reference -----------------------------------------------------------------------------


def _reference(
    given: pd.DataFrame | CBPE | None,
    labelled: pa.Table | None,
    *,
    classes: tuple[Scalar, ...],
    config: EstimationSettings,
    size: int | None,
    what: str,
) -> tuple[CBPE, str, int]:
    if isinstance(given, CBPE):
        if not hasattr(given, "reference_rows_"):
            raise InvalidInputError("The reference CBPE is not fitted; call fit() first.")
        return given, "fitted", given.reference_rows_
    if given is not None:
        truth, proba, predicted = _table(given, len(classes))
        source = "table"
    else:
        assert labelled is not None
        proba, usable = _proba(labelled, len(classes), what)
        labelled = labelled.filter(usable)
        # counted once the rows without probabilities are out: the calibration uses the rest
        if labelled.num_rows < config.min_reference_rows:
            without = len(usable) - labelled.num_rows
            raise InvalidInputError(
                f"Only {labelled.num_rows} predictions of {what} have labels and class "
                f"probabilities"
                + (f" ({without} more have labels only)" if without else "")
                + f", fewer than min_reference_rows ({config.min_reference_rows}); ingest "
                "labels with 'yard labels ingest' or give a labelled reference table."
            )
        truth, predicted, source = _labels(labelled, classes), _predictions(labelled), "log"
    rows = len(proba)
    chunk = size if size is not None else max(1, rows // config.reference_chunks)
    cbpe = CBPE(chunk_size=chunk, calibration=config.calibration)
    return cbpe.fit(truth, proba, predicted, classes=classes), source, rows


def _table(frame: pd.DataFrame, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if "label" not in frame.columns:
        raise InvalidInputError(
            f"The reference table has no 'label' column (it has {list(frame.columns)[:8]}); "
            "give the true labels in 'label'."
        )
    if "predict_proba" in frame.columns:
        proba = np.asarray(frame["predict_proba"].tolist(), dtype=np.float64)
    else:
        names = [f"proba_{j}" for j in range(k)]
        if not set(names) <= set(frame.columns):
            raise InvalidInputError(
                "The reference table has neither 'predict_proba' nor the columns "
                f"{names}; give the model's class probabilities."
            )
        proba = frame[names].to_numpy(dtype=np.float64)
    predicted = frame["predict"].to_numpy() if "predict" in frame.columns else None
    return frame["label"].to_numpy(), proba, predicted


# -- time --------------------------------------------------------------------------------------


def _chunking(chunk: str | int) -> tuple[timedelta | None, int | None]:
    if isinstance(chunk, int) and not isinstance(chunk, bool):
        if chunk < 1:
            raise InvalidInputError(f"Invalid chunk {chunk}; give at least 1 row per window.")
        return None, chunk
    text = str(chunk).strip()
    if text.isdigit():
        return None, int(text)
    seconds = parse_duration(text)
    if seconds <= 0:
        raise InvalidInputError(f"Invalid chunk {chunk!r}; give a period such as 1h, or rows.")
    return timedelta(seconds=seconds), None


def _as_datetime(value: Any) -> datetime:
    import pandas as pd

    moment: datetime = pd.Timestamp(value).to_pydatetime()
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _floor(value: Any, every: timedelta) -> datetime:
    step = int(every.total_seconds())
    moment = _as_datetime(value)
    return datetime.fromtimestamp(int(moment.timestamp()) // step * step, UTC)
