"""Reading the prediction log with DuckDB (imported lazily: ``import modelyard`` stays light)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.core.durations import format_duration
from modelyard.errors import PredictionLogEmptyError
from modelyard.monitoring import _deltalog

if TYPE_CHECKING:
    import pyarrow as pa


def _describe(since: timedelta | None) -> str:
    return "at all" if since is None else f"in the last {format_duration(since)}"


def read_log(
    root: str | Path,
    name: str,
    *,
    since: timedelta | None = None,
    limit: int | None = 20,
    version: int | None = None,
) -> pa.Table:
    """The latest log rows of deployment (or model) ``name``, newest first, optionally only those
    of the last ``since``; ``PredictionLogEmptyError`` when there are none. ``version``: a Delta
    log as of that table version (time travel)."""
    import duckdb

    folder = Path(root) / f"deployment={name}"
    empty = PredictionLogEmptyError(
        f"No predictions logged for {name!r} {_describe(since)}; serve it with "
        f"'yard serve --log-predictions' (log root {root}) or widen --since."
    )
    active = _deltalog.active_names(folder, version)  # a Delta log: only its current files
    files = [
        str(f)
        for f in sorted(folder.glob("hour=*/*.parquet"))
        if active is None or f.name in active
    ]
    if not files:
        raise empty
    where, params = "", []
    if since is not None:
        start = datetime.now(UTC) - since
        # the hour partition prunes whole folders before the time filter reads any row
        where = "WHERE hour >= ? AND time >= ?"
        params = [start.strftime("%Y-%m-%dT%H"), start]
    sql = (
        f"SELECT * EXCLUDE (hour) FROM read_parquet(?, hive_partitioning = true, "
        f"union_by_name = true, hive_types = {{'deployment': VARCHAR, 'hour': VARCHAR}}) "
        f"{where} ORDER BY time DESC, request_id, row"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    with duckdb.connect() as con:
        result: Any = con.sql(sql, params=[files, *params])
        # DuckDB 2 renamed fetch_arrow_table to to_arrow_table
        fetch = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table
        table: pa.Table = fetch()
    if table.num_rows == 0:
        raise empty
    return table
