"""Model quality where labels meet predictions: the prediction log joined to the labels
(``monitoring.labels``) on ``(request_id, row)`` with DuckDB, scored with scikit-learn.

- Predictions count when their ``time`` falls in the window; labels count whenever they were
  given, the latest ingest per key.
- The task comes from the caller, else from the registry (the latest logged version's
  signature, ``labelrules.task_of``: classes, or text/boolean predictions, mean classification,
  numeric predictions without classes regression), else from the log: an ``out_predict_proba``
  column or text/boolean predictions mean classification, numbers mean regression.
- Classification: accuracy, precision, recall and F1 on rows with a predicted class. Binary
  models use the second class (the larger label when inferred) as the positive class, and a
  label outside their two classes is a row that is not positive (it does not turn the scores
  into averages over three classes); more classes use the macro average over the model's
  classes present in the labels or predictions.
  ``roc_auc`` (binary: the positive class's probability; more classes: one-vs-rest macro over the
  classes present in the labels, skipped with fewer than two) and ``log_loss`` (probabilities
  renormalised to sum to 1) need the model's class order: from the registry or ``classes``, else
  inferred as the sorted labels and predictions and skipped when that does not match the width of
  ``out_predict_proba``. Labels outside the model's classes count as wrong answers and are left
  out of ``roc_auc`` and ``log_loss``.
- Regression: mae, rmse and r2 (r2 needs two rows) on rows whose label is a number.

``counts[metric]`` is the number of rows each metric saw.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from modelyard.core.durations import format_duration
from modelyard.errors import InvalidInputError, NotFoundError, PredictionLogEmptyError
from modelyard.monitoring._partitions import require_window
from modelyard.monitoring.labelrules import task_of
from modelyard.monitoring.labels import (
    has_labels,
    has_predictions,
    label_number,
    label_text,
    latest_labels_sql,
    prediction_files_sql,
)
from modelyard.monitoring.types import Performance

if TYPE_CHECKING:
    import pyarrow as pa

    from modelyard.core.types import Scalar
    from modelyard.registry import Registry

logger = logging.getLogger(__name__)

Task = Literal["classification", "regression"]
Every = Literal["1h", "1d"]
EVERY: dict[str, timedelta] = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}
_NUMERIC = ("BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE")
_UNSIGNED = ("UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")


def compute_performance(
    root: str | Path,
    name: str,
    *,
    since: timedelta | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    task: Task | None = None,
    classes: Sequence[Scalar] | None = None,
    registry: Registry | None = None,
    count_unmatched: bool = True,
) -> Performance:
    """The performance of deployment (or model) ``name`` over the predictions of the last
    ``since`` (or of ``[start, end)``; all of them when neither is given). Counting the labels
    that match no logged prediction reads every prediction ever logged (their ids): with
    ``count_unmatched=False`` (the server's monitoring rounds) it is left at 0.

    ``PredictionLogEmptyError`` when nothing was logged in the window; a window without labels
    gives empty ``metrics`` and ``labelled == 0``.
    """
    if since is not None and (start is not None or end is not None):
        raise InvalidInputError("Give either since or start/end, not both.")
    start, end = _utc(start), _utc(end)
    if since is not None:
        require_window(since)
        end = datetime.now(UTC)
        start = end - since
    joined = _collect(root, name, start, end, bucket=None, count_unmatched=count_unmatched)
    if not joined.predictions:
        raise PredictionLogEmptyError(
            f"No predictions logged for {name!r} {_describe(since, start, end)} (log root "
            f"{root}); serve it with 'yard serve --log-predictions' or widen the window."
        )
    kind, known = _resolve(joined, task, classes, registry)
    return _score(joined, 0, kind, known)


def performance_series(
    root: str | Path,
    name: str,
    *,
    since: timedelta,
    every: Every = "1h",
    task: Task | None = None,
    classes: Sequence[Scalar] | None = None,
    registry: Registry | None = None,
    now: datetime | None = None,
) -> list[tuple[datetime, datetime, Performance | None]]:
    """``(start, end, performance)`` of each UTC hour or day (``every``) from the one holding
    ``now - since`` to ``now``, oldest first (the last one is still running); ``None`` for a
    window without labelled predictions (or ``None`` everywhere when nothing was logged in the
    span). The span is read once, not once per window: one DuckDB pass over the log numbers each
    prediction's window, and the metrics are computed per window from the joined rows."""
    size = EVERY[every]
    end = _utc(now) or datetime.now(UTC)
    step_s = int(size.total_seconds())
    first = int((end - since).timestamp()) // step_s * step_s
    start = datetime.fromtimestamp(first, UTC)
    joined = _collect(root, name, start, end, bucket=size)
    bounds = [start + i * size for i in range(math.ceil((end - start) / size))]
    if not joined.predictions:
        return [(begin, min(begin + size, end), None) for begin in bounds]
    kind, known = _resolve(joined, task, classes, registry)
    return [
        (
            begin,
            min(begin + size, end),
            _score(joined, i, kind, known) if joined.labelled(i) else None,
        )
        for i, begin in enumerate(bounds)
    ]


# -- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Joined:
    """Predictions of a span (counted per window ``w``) joined to their labels."""

    columns: dict[str, str]  # log column -> DuckDB type
    counts: dict[int, int]  # window -> predictions
    rows: pa.Table  # w, out_predict, out_predict_proba, label, label_num
    unmatched: int
    latest: tuple[str, str] | None  # (model, version) of the newest prediction

    @property
    def predictions(self) -> int:
        return sum(self.counts.values())

    def window(self, window: int) -> pa.Table:
        """The labelled rows of one window (``rows`` is ordered by window)."""
        ids = self.rows.column("w").to_numpy()
        low, high = np.searchsorted(ids, [window, window + 1])
        return self.rows.slice(int(low), int(high - low))

    def labelled(self, window: int) -> int:
        return int(self.window(window).num_rows)


def _collect(
    root: str | Path,
    name: str,
    start: datetime | None,
    end: datetime | None,
    *,
    bucket: timedelta | None,
    count_unmatched: bool = True,
) -> _Joined:
    from modelyard.monitoring import _duck

    if not has_predictions(root, name):
        raise PredictionLogEmptyError(
            f"No predictions logged for {name!r} at all (log root {root}); serve it with "
            "'yard serve --log-predictions' (or check the name)."
        )
    source = (
        f"read_parquet({prediction_files_sql(root, name)}, hive_partitioning = true, "
        "union_by_name = true, hive_types = {'deployment': VARCHAR, 'hour': VARCHAR})"
    )
    where, params = _where(start, end)
    window = "0"
    if bucket is not None:
        assert start is not None
        start_us = int(start.timestamp() * 1_000_000)
        window = f"(epoch_us(time) - {start_us}) // {int(bucket / _US)}"
    with _duck.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
        columns = {str(r[0]): str(r[1]) for r in described}
        if "status" in columns:  # failed requests are logged too, without predictions
            answered = "coalesce(status, 200) < 400"
            where = f"{where} AND {answered}" if where else f"WHERE {answered}"
        proba = "out_predict_proba" if "out_predict_proba" in columns else "NULL"
        predict = "out_predict" if "out_predict" in columns else "NULL"
        con.execute(
            f'CREATE TEMP TABLE p AS SELECT request_id, "row", time, model, version, '
            f"{predict} AS out_predict, {proba} AS out_predict_proba, {window} AS w "
            f"FROM {source} {where}",
            params,
        )
        labelled = has_labels(root, name)
        if labelled:
            con.execute(f"CREATE TEMP TABLE l AS {latest_labels_sql(root, name)}")
        else:
            con.execute(
                'CREATE TEMP TABLE l (request_id VARCHAR, "row" BIGINT, label VARCHAR, '
                "label_num DOUBLE, time TIMESTAMPTZ)"
            )
        counts = dict(con.execute("SELECT w, count(*) FROM p GROUP BY w").fetchall())
        rows: Any = con.sql(
            "SELECT p.w, p.out_predict, p.out_predict_proba, l.label, l.label_num "
            'FROM p JOIN l USING (request_id, "row") ORDER BY p.w, p.time, request_id, "row"'
        )
        fetch = getattr(rows, "to_arrow_table", None) or rows.fetch_arrow_table
        table: pa.Table = fetch()
        # labels that match no logged prediction (of any time): none without labels, and
        # without reading the whole log (every file of the deployment) to say so
        unmatched = (
            con.execute(
                'SELECT count(*) FROM l ANTI JOIN (SELECT DISTINCT request_id, "row" '
                f'FROM {source}) AS logged USING (request_id, "row")'
            ).fetchone()
            if labelled and count_unmatched
            else (0,)
        )
        latest = con.execute("SELECT model, version FROM p ORDER BY time DESC LIMIT 1").fetchone()
    return _Joined(
        columns=columns,
        counts={int(k): int(v) for k, v in counts.items()},
        rows=table,
        unmatched=int(unmatched[0]) if unmatched else 0,
        latest=(str(latest[0]), str(latest[1])) if latest else None,
    )


_US = timedelta(microseconds=1)


def _utc(moment: datetime | None) -> datetime | None:
    """Naive datetimes are taken as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _where(start: datetime | None, end: datetime | None) -> tuple[str, list[Any]]:
    # the hour partition prunes whole folders before the time filter reads any row
    clauses: list[str] = []
    params: list[Any] = []
    if start is not None:
        clauses += ["hour >= ?", "time >= ?"]
        params += [start.astimezone(UTC).strftime("%Y-%m-%dT%H"), start]
    if end is not None:
        clauses += ["hour <= ?", "time < ?"]
        params += [end.astimezone(UTC).strftime("%Y-%m-%dT%H"), end]
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


def _describe(since: timedelta | None, start: datetime | None, end: datetime | None) -> str:
    if since is not None:
        return f"in the last {format_duration(since)}"
    if start is None and end is None:
        return "at all"
    shown = [t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if t else "..." for t in (start, end)]
    return f"between {shown[0]} and {shown[1]} UTC"


# -- the task ----------------------------------------------------------------------------------


def _resolve(
    joined: _Joined,
    task: Task | None,
    classes: Sequence[Scalar] | None,
    registry: Registry | None,
) -> tuple[Task, tuple[Scalar, ...] | None]:
    known = tuple(classes) if classes is not None else None
    if known is None and registry is not None and joined.latest is not None:
        model, version = joined.latest
        try:
            signature = registry.get_version(f"{model}/{version}").signature
        except NotFoundError:
            logger.warning("%s/%s is not in the registry; inferring the task", model, version)
        else:
            if signature is not None:
                known = signature.classes
                task = task or task_of(signature)
    if task is None:
        proba = "out_predict_proba" in joined.columns
        texts = not _is_numeric(joined.columns.get("out_predict", "DOUBLE"))
        task = "classification" if known is not None or proba or texts else "regression"
    return task, known


def _is_numeric(duck_type: str) -> bool:
    return duck_type.upper() in _NUMERIC + _UNSIGNED or duck_type.upper().startswith("DECIMAL")


# -- scoring -----------------------------------------------------------------------------------


def _score(
    joined: _Joined, window: int, task: Task | str, classes: tuple[Scalar, ...] | None
) -> Performance:
    rows = joined.window(window)
    if rows.num_rows == 0:
        metrics: dict[str, float] = {}
        counts: dict[str, int] = {}
    elif task == "regression":
        metrics, counts = _regression(rows)
    else:
        numeric = _is_numeric(joined.columns.get("out_predict", "VARCHAR"))
        metrics, counts = _classification(rows, numeric=numeric, classes=classes)
    return Performance(
        task="regression" if task == "regression" else "classification",
        metrics=metrics,
        counts=counts,
        labelled=rows.num_rows,
        predictions=joined.counts.get(window, 0),
        unmatched_labels=joined.unmatched,
    )


def _regression(rows: pa.Table) -> tuple[dict[str, float], dict[str, int]]:
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

    truth = _floats(rows.column("label_num").to_pylist())
    predicted = _floats(rows.column("out_predict").to_pylist())
    usable = np.isfinite(truth) & np.isfinite(predicted)
    y, p = truth[usable], predicted[usable]
    n = int(usable.sum())
    if n == 0:
        return {}, {}
    metrics = {
        "mae": float(mean_absolute_error(y, p)),
        "rmse": float(root_mean_squared_error(y, p)),
    }
    if n >= 2:
        metrics["r2"] = float(r2_score(y, p))
    return metrics, dict.fromkeys(metrics, n)


def _floats(values: list[Any]) -> np.ndarray:
    """Numbers as floats; nulls and anything else (a multi-output row) as NaN."""
    out = [float(v) if isinstance(v, int | float) else np.nan for v in values]
    return np.asarray(out, dtype=np.float64)


def _classification(
    rows: pa.Table, *, numeric: bool, classes: tuple[Scalar, ...] | None
) -> tuple[dict[str, float], dict[str, int]]:
    if classes is not None:
        numeric = all(isinstance(c, int | float) for c in classes)

    def key(value: Any) -> Any:
        number = label_number(value) if numeric else None
        return number if number is not None else label_text(value)

    texts, numbers = rows.column("label").to_pylist(), rows.column("label_num").to_pylist()
    truth = [n if numeric and n is not None else t for t, n in zip(texts, numbers, strict=True)]
    predicted = [None if v is None else key(v) for v in rows.column("out_predict").to_pylist()]
    if classes is not None:
        known = [key(c) for c in classes]
    else:
        same = (float if numeric else str,)
        seen = {v for v in [*truth, *predicted] if v is not None and isinstance(v, same)}
        known = sorted(seen)
    index = {k: i for i, k in enumerate(known)}
    for extra in sorted({v for v in [*truth, *predicted] if v is not None} - index.keys(), key=str):
        index[extra] = len(index)
    t = np.array([index[v] for v in truth], dtype=np.int64)
    p = np.array([-1 if v is None else index[v] for v in predicted], dtype=np.int64)
    metrics, counts = _class_metrics(t, p, k=len(known))
    proba = _probabilities(rows.column("out_predict_proba").to_pylist(), len(known))
    if proba is not None:
        more, more_counts = _proba_metrics(t, *proba, k=len(known))
        metrics.update(more)
        counts.update(more_counts)
    return metrics, counts


def _class_metrics(
    t: np.ndarray, p: np.ndarray, *, k: int
) -> tuple[dict[str, float], dict[str, int]]:
    """Scores of class indices ``t`` (truth) and ``p`` (predicted, -1 for none), where the
    model's classes are ``0..k-1`` and higher indices are labels outside them."""
    from sklearn import config_context
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    used = p >= 0
    n = int(used.sum())
    if n == 0:
        return {}, {}
    y, q = t[used], p[used]
    # precision, recall and F1 are over the model's classes whatever else the labels hold: a
    # label outside them is one more row of no class of the model (a binary model's scores
    # stay its positive class's; a macro average does not take in a class the model lacks)
    binary = k == 2
    options: dict[str, Any]
    if binary:
        options = {"average": "binary", "pos_label": True}
    else:
        present = np.union1d(y, q)
        ours = present[present < k]
        options = {"average": "macro", "labels": ours if ours.size else present}
    y_for, q_for = (y == 1, q == 1) if binary else (y, q)
    # the arrays are built here, well formed: checking them again costs a third of the time
    # of a week's hourly series
    with config_context(skip_parameter_validation=True, assume_finite=True):
        metrics = {
            "accuracy": float(accuracy_score(y, q)),
            "precision": float(precision_score(y_for, q_for, zero_division=0, **options)),
            "recall": float(recall_score(y_for, q_for, zero_division=0, **options)),
            "f1": float(f1_score(y_for, q_for, zero_division=0, **options)),
        }
    return metrics, dict.fromkeys(metrics, n)


def _probabilities(values: list[Any], k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The probability rows of width ``k`` and which rows they are (``None`` when none)."""
    if k < 2:
        return None
    present = np.array([v is not None and len(v) == k for v in values], dtype=bool)
    if not present.any():
        return None
    matrix = np.asarray([v for v, ok in zip(values, present, strict=True) if ok], np.float64)
    return matrix, present


def _proba_metrics(
    t: np.ndarray, matrix: np.ndarray, present: np.ndarray, *, k: int
) -> tuple[dict[str, float], dict[str, int]]:
    from sklearn import config_context

    with config_context(skip_parameter_validation=True):  # arrays built here, well formed
        return _scored_proba(t, matrix, present, k=k)


def _scored_proba(
    t: np.ndarray, matrix: np.ndarray, present: np.ndarray, *, k: int
) -> tuple[dict[str, float], dict[str, int]]:
    from sklearn.metrics import log_loss, roc_auc_score

    y_all = t[present]
    inside = y_all < k  # labels the model knows
    y, scores = y_all[inside], matrix[inside]
    metrics: dict[str, float] = {}
    counts: dict[str, int] = {}
    if len(y) == 0:
        return metrics, counts
    if len(np.unique(y)) >= 2:
        if k == 2:
            metrics["roc_auc"] = float(roc_auc_score(y == 1, scores[:, 1]))
        else:
            aucs = [roc_auc_score(y == c, scores[:, c]) for c in range(k) if (y == c).sum() > 0]
            metrics["roc_auc"] = float(np.mean(aucs))
        counts["roc_auc"] = len(y)
    totals = scores.sum(axis=1, keepdims=True)
    usable = (totals[:, 0] > 0) & np.isfinite(totals[:, 0])
    if usable.any():
        normalised = scores[usable] / totals[usable]
        metrics["log_loss"] = float(log_loss(y[usable], normalised, labels=list(range(k))))
        counts["log_loss"] = int(usable.sum())
    return metrics, counts
