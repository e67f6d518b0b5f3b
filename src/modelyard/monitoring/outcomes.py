"""Business outcomes: a number per logged prediction (revenue, a conversion as 0 or 1, the cost
of a false alarm), joined to the prediction log on ``(request_id, row)`` as labels are.

Layout: ``<log root>/outcomes/deployment=<name>/<timestamp>-<uuid>.parquet``, one file per
ingest, written under a hidden name and renamed (``monitoring.labels``), so a refused ingest
leaves nothing. Columns: ``request_id`` (string), ``row`` (int64, default 0), ``value``
(double, finite), ``time`` (when the outcome happened, as given, else the ingest time) and
``ingested_at``. The latest ingest per key wins (``latest_outcomes_sql``).

``summarize_outcomes`` aggregates the outcomes of a window's predictions per model, version and
route: count, sum, mean and the standard error of the mean (sample standard deviation over
``sqrt(count)``). Only predictions with an outcome count: a request whose outcome is "nothing
happened" must be sent as 0 to weigh in the mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from modelyard.errors import InvalidInputError, PredictionLogEmptyError
from modelyard.monitoring.labels import (
    IngestResult,
    TableKind,
    cell_values,
    check_duplicates,
    has_predictions,
    ingest_table,
    prediction_files_sql,
    request_ids,
    row_numbers,
    row_place,
    sql_literal,
    times_of,
)
from modelyard.monitoring.performance import _where as window_where

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

REQUIRED_COLUMNS = ("request_id", "value")


class OutcomeColumns(msgspec.Struct, frozen=True, kw_only=True):
    """The source columns holding the request id, the value, the time and the row."""

    request_id: str = "request_id"
    value: str = "value"
    time: str = "time"
    row: str = "row"


class OutcomeGroup(msgspec.Struct, frozen=True, kw_only=True):
    """The outcomes of one (model, version, route)'s predictions: ``count`` of them, their
    ``sum`` and ``mean``, and the standard error of the mean (``None`` below two outcomes)."""

    model: str
    version: str
    route: str
    count: int
    sum: float
    mean: float
    stderr: float | None


class OutcomeSummary(msgspec.Struct, frozen=True, kw_only=True):
    """A window's outcomes: ``predictions`` answered in it, ``groups`` per model, version and
    route (largest first), and the ``total`` over all of them (``None`` without outcomes)."""

    deployment: str
    start: datetime | None
    end: datetime | None
    predictions: int
    groups: list[OutcomeGroup]
    total: OutcomeGroup | None


def outcomes_folder(root: str | Path, name: str) -> Path:
    return Path(root) / "outcomes" / f"deployment={name}"


def has_outcomes(root: str | Path, name: str) -> bool:
    return any(outcomes_folder(root, name).glob("*.parquet"))


def latest_outcomes_sql(root: str | Path, name: str) -> str:
    """A DuckDB query of ``name``'s outcomes, the latest ingest per ``(request_id, row)``, with
    columns request_id, row, value, time (needs at least one outcomes file)."""
    glob = sql_literal(str(outcomes_folder(root, name) / "*.parquet"))
    return (
        'SELECT request_id, "row", value, time '
        f"FROM read_parquet({glob}, union_by_name = true, filename = true) "
        'QUALIFY row_number() OVER (PARTITION BY request_id, "row" '
        "ORDER BY ingested_at DESC, filename DESC) = 1"
    )


def ingest_outcomes(
    root: str | Path,
    name: str,
    source: str | Path | pd.DataFrame,
    *,
    columns: OutcomeColumns | None = None,
    require_log: bool = True,
    count_matched: bool = True,
    on_step: Callable[[str], None] | None = None,
) -> IngestResult:
    """Validate ``source`` (a CSV or Parquet file, or a DataFrame with the ``columns``) and write
    it as one outcomes file of deployment ``name``; nothing is written when anything is wrong.
    ``require_log``, ``count_matched`` and ``on_step`` as for ``ingest_labels``."""
    named = columns or OutcomeColumns()

    def make(frame: pd.DataFrame, what: str, *, csv: bool = False) -> pa.Table:
        return outcomes_table(frame, what, csv=csv, columns=named)

    kind = TableKind("outcomes", "outcome", f"{named.request_id}, {named.value}", make)
    return ingest_table(
        root, name, source, kind, require_log=require_log, count_matched=count_matched,
        on_step=on_step, id_column=named.request_id,
    )  # fmt: skip


def outcomes_table(
    frame: pd.DataFrame,
    what: str = "the outcomes",
    *,
    csv: bool = False,
    columns: OutcomeColumns | None = None,
    now: datetime | None = None,
) -> pa.Table:
    """The validated outcomes file content of ``frame`` (other columns are ignored)."""
    import pyarrow as pa

    named = columns or OutcomeColumns()
    found = [str(c) for c in frame.columns]
    missing = [c for c in (named.request_id, named.value) if c not in found]
    if missing:
        raise InvalidInputError(
            f"Column{'s' if len(missing) > 1 else ''} {' and '.join(missing)} missing from "
            f"{what} (found: {', '.join(found) or 'none'}); outcomes need a request id and a "
            "value column (--id-column, --value-column), optionally row and time."
        )
    if len(frame) == 0:
        raise InvalidInputError(f"There are no rows in {what}; nothing to ingest.")
    ids = request_ids(frame[named.request_id], what, csv)
    has_row = named.row in found
    rows = row_numbers(frame[named.row], what, csv) if has_row else [0] * len(frame)
    values = outcome_values(frame[named.value], what, csv)
    check_duplicates(ids, rows, what, "outcome")
    ingested = now or datetime.now(UTC)
    times = times_of(frame[named.time], what, csv, ingested) if named.time in found else None
    stamp = pa.timestamp("us", tz="UTC")
    return pa.table({
        "request_id": pa.array(ids, pa.string()),
        "row": pa.array(rows, pa.int64()),
        "value": pa.array(values, pa.float64()),
        "time": pa.array(times or [ingested] * len(ids), stamp),
        "ingested_at": pa.array([ingested] * len(ids), stamp),
    })  # fmt: skip


def outcome_values(column: pd.Series[Any], what: str, csv: bool) -> list[float]:
    """Finite numbers; a missing value, a boolean, text (but a number's text in a CSV) or an
    infinity is refused."""
    out: list[float] = []
    for i, (value, missing) in enumerate(cell_values(column)):
        if missing:
            raise InvalidInputError(
                f"The outcome at {row_place(i, csv)} of {what} has no value; give a number "
                "(0 when nothing happened) or drop the row."
            )
        number = None
        # a CSV column with one bad cell is text throughout: its numbers are numbers
        text = isinstance(value, str) and csv
        if text or not isinstance(value, bool | np.bool_ | str | bytes):
            try:
                number = float(value)
            except (TypeError, ValueError, OverflowError):
                number = None
        if number is None or not math.isfinite(number):
            raise InvalidInputError(
                f"Outcome value {value!r} at {row_place(i, csv)} of {what} is not a finite "
                "number; give one number per request (revenue, 1 for a conversion...)."
            )
        out.append(number)
    return out


# -- aggregation -------------------------------------------------------------------------------


def summarize_outcomes(
    root: str | Path,
    name: str,
    *,
    since: timedelta | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    now: datetime | None = None,
) -> OutcomeSummary:
    """The outcomes of ``name``'s predictions answered in the last ``since`` (or in
    ``[start, end)``; all of them when neither is given), per model, version and route.
    ``PredictionLogEmptyError`` when nothing was ever logged for ``name``."""
    from modelyard.monitoring import _duck

    if since is not None:
        end = now or datetime.now(UTC)
        start = end - since
    if not has_predictions(root, name):
        raise PredictionLogEmptyError(
            f"No predictions logged for {name!r} at all (log root {root}); serve it with "
            "'yard serve --log-predictions' (or check the name)."
        )
    source = (
        f"read_parquet({prediction_files_sql(root, name)}, hive_partitioning = true, "
        "union_by_name = true, hive_types = {'deployment': VARCHAR, 'hour': VARCHAR})"
    )
    where, params = window_where(start, end)
    with _duck.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
        if "status" in {str(r[0]) for r in described}:  # failed requests answered nothing
            answered = "coalesce(status, 200) < 400"
            where = f"{where} AND {answered}" if where else f"WHERE {answered}"
        con.execute(
            'CREATE TEMP TABLE p AS SELECT request_id, "row", model, version, route '
            f"FROM {source} {where}",
            params,
        )
        counted = con.execute("SELECT count(*) FROM p").fetchone()
        predictions = int(counted[0]) if counted else 0
        groups: list[OutcomeGroup] = []
        total = None
        if predictions and has_outcomes(root, name):
            con.execute(f"CREATE TEMP TABLE o AS {latest_outcomes_sql(root, name)}")
            joined = 'FROM p JOIN o USING (request_id, "row")'
            stats = "count(*), sum(value), avg(value), stddev_samp(value)"
            found = con.execute(
                f"SELECT model, version, route, {stats} {joined} GROUP BY ALL "
                "ORDER BY count(*) DESC, model, version, route"
            ).fetchall()
            groups = [_group(str(m), str(v), str(r), rest) for m, v, r, *rest in found]
            everything = con.execute(f"SELECT {stats} {joined}").fetchone()
            if everything is not None and everything[0]:
                total = _group("", "", "", list(everything))
    return OutcomeSummary(
        deployment=name, start=start, end=end, predictions=predictions, groups=groups,
        total=total,
    )  # fmt: skip


def _group(model: str, version: str, route: str, stats: list[Any]) -> OutcomeGroup:
    count, total, mean, sd = stats
    n = int(count)
    stderr = float(sd) / math.sqrt(n) if n >= 2 and sd is not None else None
    return OutcomeGroup(
        model=model, version=version, route=route, count=n, sum=float(total), mean=float(mean),
        stderr=stderr,
    )  # fmt: skip
