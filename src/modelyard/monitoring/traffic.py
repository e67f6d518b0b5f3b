"""Traffic of a deployment from its prediction log: volume, latency and errors, for a window or as
an hourly or daily series (one DuckDB pass over the window's files).

Latency and errors are per request (a request's rows share them). A request is an error when it
was answered with a 5xx status; the log holds such requests with their status and no rows of
data (files written before statuses were logged count as all answered).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from modelyard.monitoring._partitions import log_columns
from modelyard.monitoring.types import WindowPoint

__all__ = ["traffic_points"]


def traffic_points(
    files: Sequence[Path], *, start: datetime, end: datetime, every: timedelta | None = None
) -> list[WindowPoint]:
    """One point for ``[start, end)`` (``every=None``) or one per ``every`` (an hour or a day)
    that has traffic, oldest first."""
    from modelyard.monitoring import _duck

    if not files:
        return []
    step = int(every.total_seconds()) if every is not None else None
    bucket = f"time_bucket(INTERVAL {step} SECOND, time)" if step else "NULL::TIMESTAMPTZ"
    source = "read_parquet(?, union_by_name = true, hive_partitioning = false)"
    paths = [str(f) for f in files]
    with _duck.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        # files written before statuses were logged: every request was answered
        status = "coalesce(status, 200)" if "status" in log_columns(con, paths) else "200"
        sql = f"""
            WITH requests AS (
                SELECT {bucket} AS bucket, request_id, max(row) + 1 AS rows,
                       max(latency_ms) AS latency_ms, max({status}) AS status
                FROM {source} WHERE time >= ? AND time < ? GROUP BY ALL
            )
            SELECT bucket, sum(rows) FILTER (WHERE status < 400), count(*),
                   quantile_cont(latency_ms, 0.5), quantile_cont(latency_ms, 0.99),
                   avg(CASE WHEN status >= 500 THEN 1.0 ELSE 0.0 END)
            FROM requests GROUP BY bucket ORDER BY bucket
        """
        found = con.execute(sql, [paths, start, end]).fetchall()
    points = []
    for began, rows, requests, p50, p99, errors in found:
        first = start if began is None else _utc(began)
        last = end if every is None else min(first + every, end)
        points.append(
            WindowPoint(
                start=max(first, start).isoformat(),
                end=last.isoformat(),
                rows=int(rows or 0),
                requests=int(requests),
                p50_latency_ms=_float(p50),
                p99_latency_ms=_float(p99),
                error_rate=_float(errors),
            )
        )
    return points


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
