"""Traffic of a deployment from its prediction log: volume, latency and errors, for a window or as
an hourly or daily series (one DuckDB pass over the window's files).

Latency and errors are per request (a request's rows share them). A request is an error when it
was answered with a 5xx status; the log holds such requests with their status and no rows of
data (files written before statuses were logged count as all answered).

``window_traffic`` is the one-window figure the server's gauges and alert rules read every round:
it keeps each log file's traffic (counts and a latency histogram) in a cache beside the drift
profiles, so that a round reads the new files and the few at the window's edges, not the window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from modelyard.monitoring._filecache import load_cached, place, store_cached
from modelyard.monitoring._partitions import _HOUR_FORMAT, Hour, log_columns
from modelyard.monitoring.types import WindowPoint

__all__ = ["traffic_points", "window_traffic"]


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


#: The latency histogram's buckets grow by this factor: a quantile read from it (the mean of the
#: latencies in its bucket) is within 1% of the exact one, and exact when they are all equal.
BUCKET_GROWTH = 1.01
#: Latencies below this (ms) share bucket 0.
_SMALLEST_MS = 1e-3
_LOG_GROWTH = math.log(BUCKET_GROWTH)


class FileTraffic(msgspec.Struct, frozen=True, array_like=True):
    """One log file's traffic: its rows' time span, answered rows, requests, 5xx answers, and
    its requests' latencies as a histogram (bucket, count, sum of the latencies in it)."""

    name: str
    first: datetime
    last: datetime
    rows: int
    requests: int
    errors: int
    buckets: list[int]
    counts: list[int]
    sums: list[float]


class _Requests(msgspec.Struct, frozen=True):
    """Requests, one item each: time, answered rows, latency (ms, NaN when none), status."""

    times: npt.NDArray[np.int64]
    rows: npt.NDArray[np.int64]
    latency_ms: npt.NDArray[np.float64]
    status: npt.NDArray[np.int64]

    def traffic(self, name: str, fallback: datetime) -> FileTraffic:
        times = self.times
        first = _from_us(int(times.min())) if len(times) else fallback
        last = _from_us(int(times.max())) if len(times) else fallback
        buckets, counts, sums = _histogram(self.latency_ms)
        return FileTraffic(
            name, first, last, int(self.rows[self.status < 400].sum()), len(times),
            int((self.status >= 500).sum()), buckets, counts, sums,
        )  # fmt: skip


def window_traffic(
    root: str | Path, name: str, selected: Sequence[Hour], *, start: datetime, end: datetime
) -> WindowPoint | None:
    """``traffic_points(..., every=None)``'s point for ``[start, end)`` of ``selected`` hours'
    files (``None`` without a request), from each file's cached traffic: the files inside the
    window as cached, new files read once, the rows of files at its edges read with the window's
    bounds. Counts and the error rate are exact; p50 and p99 come from the latency histogram
    (``BUCKET_GROWTH``).

    Measured against ``traffic_points`` over the window, which reads all of it: 540,000 rows in
    60 files (a minute at 9,000 requests/s) took it 0.26-0.55 s of CPU, so an hour at that rate
    is some 15-30 s each round; here a round reads only the last minute's files."""
    parts: list[FileTraffic] = []
    straddling: list[Path] = []
    for hour in selected:
        path = _cache_path(root, name, hour)
        cached = {t.name: t for t in load_cached(path, FileTraffic)}
        new = [f for f in hour.files if f.name not in cached]
        if new:
            by_file = _read_requests(new, start=None, end=None)
            for i, file in enumerate(new):
                found = by_file.get(i)
                cached[file.name] = (
                    found.traffic(file.name, hour.start)
                    if found is not None
                    else FileTraffic(file.name, hour.start, hour.start, 0, 0, 0, [], [], [])
                )
            store_cached(path, [cached[f.name] for f in hour.files])
        for file in hour.files:
            traffic = cached[file.name]
            where = place(traffic.requests, traffic.first, traffic.last, start=start, end=end)
            if where == "inside":
                parts.append(traffic)
            elif where == "edge":
                straddling.append(file)
    if straddling:
        edges = _read_requests(straddling, start=start, end=end)
        parts.extend(requests.traffic("", start) for requests in edges.values())
    requests = sum(p.requests for p in parts)
    if not requests:
        return None
    merged: dict[int, tuple[int, float]] = {}
    for part in parts:
        for bucket, count, total in zip(part.buckets, part.counts, part.sums, strict=True):
            had = merged.get(bucket, (0, 0.0))
            merged[bucket] = (had[0] + count, had[1] + total)
    p50, p99 = _quantiles(merged, (0.5, 0.99))
    return WindowPoint(
        start=start.isoformat(), end=end.isoformat(), rows=sum(p.rows for p in parts),
        requests=requests, p50_latency_ms=p50, p99_latency_ms=p99,
        error_rate=sum(p.errors for p in parts) / requests,
    )  # fmt: skip


def _read_requests(
    files: Sequence[Path], *, start: datetime | None, end: datetime | None
) -> dict[int, _Requests]:
    """The requests of ``files`` (with ``start <= time < end`` when given), by the file's
    position in ``files``."""
    from modelyard.monitoring import _duck

    paths = [str(f) for f in files]
    source = (
        "read_parquet($paths, union_by_name = true, hive_partitioning = false, filename = true)"
    )
    where: list[str] = []
    params: dict[str, Any] = {"paths": paths}
    if start is not None:
        where.append("time >= $start")
        params["start"] = start
    if end is not None:
        where.append("time < $end")
        params["end"] = end
    with _duck.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        status = "coalesce(status, 200)" if "status" in log_columns(con, paths) else "200"
        found = con.execute(
            f"""
            SELECT list_position($paths, filename) - 1 AS file,
                   epoch_us(max(time)) AS time, max("row") + 1 AS rows,
                   max(latency_ms) AS latency_ms, max({status}) AS status
            FROM {source} {"WHERE " + " AND ".join(where) if where else ""}
            GROUP BY file, request_id ORDER BY file
            """,
            params,
        ).fetchnumpy()
    files_of = np.asarray(found["file"], dtype=np.int64)
    if not len(files_of):
        return {}
    times = np.asarray(found["time"], dtype=np.int64)
    rows = np.asarray(found["rows"], dtype=np.int64)
    latency_ms = _floats(found["latency_ms"])
    statuses = np.asarray(found["status"], dtype=np.int64)
    bounds = [0, *(np.flatnonzero(np.diff(files_of)) + 1).tolist(), len(files_of)]
    return {
        int(files_of[a]): _Requests(times[a:b], rows[a:b], latency_ms[a:b], statuses[a:b])
        for a, b in pairwise(bounds)
    }


def _floats(values: Any) -> npt.NDArray[np.float64]:
    """A column as floats, NULL as NaN (DuckDB gives a masked array when one is NULL)."""
    if isinstance(values, np.ma.MaskedArray):
        return np.asarray(np.ma.filled(values.astype(np.float64), np.nan), dtype=np.float64)
    return np.asarray(values, dtype=np.float64)


def _histogram(latency_ms: npt.NDArray[np.float64]) -> tuple[list[int], list[int], list[float]]:
    known = latency_ms[~np.isnan(latency_ms)]
    if not len(known):
        return [], [], []
    scaled = np.maximum(known, _SMALLEST_MS) / _SMALLEST_MS
    buckets = np.floor(np.log(scaled) / _LOG_GROWTH).astype(np.int64)
    found, index = np.unique(buckets, return_inverse=True)
    counts = np.bincount(index)
    sums = np.bincount(index, weights=known)
    return found.tolist(), counts.tolist(), sums.tolist()


def _quantiles(
    histogram: dict[int, tuple[int, float]], qs: tuple[float, ...]
) -> tuple[float | None, ...]:
    """Quantiles as DuckDB's ``quantile_cont`` takes them (between the order statistics around
    ``q * (n - 1)``), each order statistic read as the mean of its bucket's latencies."""
    if not histogram:
        return tuple(None for _ in qs)
    order = sorted(histogram)
    counts = np.array([histogram[b][0] for b in order], dtype=np.int64)
    means = np.array([histogram[b][1] / histogram[b][0] for b in order])
    ends = np.cumsum(counts)  # order statistics 0..ends[i]-1 are in bucket i (and before)
    n = int(ends[-1])

    def statistic(k: int) -> float:
        return float(means[int(np.searchsorted(ends, k, side="right"))])

    found: list[float | None] = []
    for q in qs:
        h = q * (n - 1)
        low = math.floor(h)
        value = statistic(low)
        if h > low:
            value += (h - low) * (statistic(low + 1) - value)
        found.append(value)
    return tuple(found)


def _from_us(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def _cache_path(root: str | Path, name: str, hour: Hour) -> Path:
    folder = Path(root) / "_profiles" / f"deployment={name}" / "traffic"
    return folder / f"{hour.start.strftime(_HOUR_FORMAT)}.json"
