"""What each prediction-log file holds (its columns, its rows per model version and their time
span), read once per process.

A log file is written once, under a temporary name and then renamed, and never changed, so a
file's facts are keyed by its path, size and modification time. Before this cache every drift
query over a 7-day window re-read 168 Parquet footers for the column names and scanned every
row for the version that answered most (``benchmarks/ui.py``: 30-40% of a warm
``deployment_drift`` over 7 days).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: Entries kept before the caches start again (a few hundred bytes each).
MAX_ENTRIES = 200_000

_Key = tuple[str, int, int]
#: (model, version, rows, first time, last time) of the rows with a version, per file.
_Counts = tuple[tuple[str, str, int, datetime, datetime], ...]

_lock = threading.Lock()
_schemas: dict[_Key, tuple[str, ...]] = {}
_counts: dict[_Key, _Counts] = {}


def _key(path: Path) -> _Key:
    stat = path.stat()
    return (str(path), stat.st_size, stat.st_mtime_ns)


def _remember(cache: dict[_Key, Any], key: _Key, value: Any) -> None:
    with _lock:
        if len(cache) >= MAX_ENTRIES:
            cache.clear()
        cache[key] = value


def clear() -> None:
    with _lock:
        _schemas.clear()
        _counts.clear()


def columns(files: Sequence[Path]) -> tuple[str, ...]:
    """Every column of ``files``, in first-seen order (from their Parquet footers)."""
    import pyarrow.parquet as pq

    names: dict[str, None] = {}
    for file in files:
        key = _key(file)
        found = _schemas.get(key)
        if found is None:
            found = tuple(pq.read_schema(file).names)
            _remember(_schemas, key, found)
        names.update(dict.fromkeys(found))
    return tuple(names)


def versions(files: Sequence[Path], start: datetime) -> list[tuple[str, str, int]]:
    """(model, version, rows) of the rows of ``files`` with a version and ``time >= start``,
    most rows first (then the highest version)."""
    keys = [_key(f) for f in files]
    # a local view: another thread may clear the cache meanwhile
    known = {k: _counts.get(k) for k in keys}
    missing = [f for f, k in zip(files, keys, strict=True) if known[k] is None]
    if missing:
        key_of = dict(zip(files, keys, strict=True))
        for file, counts in _read_counts(missing).items():
            known[key_of[file]] = counts
            _remember(_counts, key_of[file], counts)
    totals: dict[tuple[str, str], int] = {}
    straddling: list[Path] = []
    for file, key in zip(files, keys, strict=True):
        for model, version, rows, first, last in known[key] or ():
            if first >= start:
                totals[(model, version)] = totals.get((model, version), 0) + rows
            elif last >= start and file not in straddling:
                straddling.append(file)
    for model, version, rows in _read_since(straddling, start):
        totals[(model, version)] = totals.get((model, version), 0) + rows
    found = [(m, v, n) for (m, v), n in totals.items()]
    found.sort(key=lambda t: t[1], reverse=True)  # stable sorts: version DESC within n DESC
    found.sort(key=lambda t: t[2], reverse=True)
    return found


_SOURCE = "read_parquet(?, union_by_name = true, hive_partitioning = false{})"


def _read_counts(files: Sequence[Path]) -> dict[Path, _Counts]:
    from modelyard.monitoring import _duck

    sql = (
        f"SELECT filename, model, version, count(*), min(time), max(time) FROM "
        f"{_SOURCE.format(', filename = true')} WHERE version <> '' GROUP BY ALL"
    )
    by_name: dict[str, list[tuple[str, str, int, datetime, datetime]]] = {}
    with _duck.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        for name, model, version, n, first, last in con.execute(
            sql, [[str(f) for f in files]]
        ).fetchall():
            by_name.setdefault(str(name), []).append(
                (str(model), str(version), int(n), _utc(first), _utc(last))
            )
    return {f: tuple(by_name.get(str(f), ())) for f in files}


def _read_since(files: Sequence[Path], start: datetime) -> list[tuple[str, str, int]]:
    if not files:
        return []
    from modelyard.monitoring import _duck

    sql = (
        f"SELECT model, version, count(*) FROM {_SOURCE.format('')} "
        "WHERE time >= ? AND version <> '' GROUP BY ALL"
    )
    with _duck.connect() as con:
        found = con.execute(sql, [[str(f) for f in files], start]).fetchall()
    return [(str(m), str(v), int(n)) for m, v, n in found]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
