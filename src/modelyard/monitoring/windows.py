"""Windows of the prediction log: reading their rows, and profiling each hour once.

An hour's ``WindowProfile`` is cached under ``<root>/_profiles/deployment=<name>/<reference key>/``
with a digest of the hour's file names: an hour whose files did not change since it was profiled is
never read again, so a day's drift costs the one new hour. Days and other spans are merged from
hours (profiles add up).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from modelyard.errors import PredictionLogEmptyError
from modelyard.monitoring.drift import DriftDetector, WindowProfile

HOUR = timedelta(hours=1)
_HOUR_FORMAT = "%Y-%m-%dT%H"


@dataclass(frozen=True, slots=True)
class Hour:
    """One ``hour=`` partition of a deployment's log and its files."""

    start: datetime
    files: tuple[Path, ...]

    @property
    def end(self) -> datetime:
        return self.start + HOUR

    @property
    def digest(self) -> str:
        names = "\n".join(sorted(f.name for f in self.files))
        return hashlib.sha256(names.encode()).hexdigest()[:16]


class _Cached(msgspec.Struct, frozen=True):
    digest: str
    profile: WindowProfile


def log_folder(root: str | Path, name: str) -> Path:
    return Path(root) / f"deployment={name}"


def hours(root: str | Path, name: str, start: datetime, end: datetime) -> list[Hour]:
    """The hours of ``name``'s log that overlap ``[start, end)``, oldest first."""
    folder = log_folder(root, name)
    if not folder.is_dir():
        return []
    first = start.replace(minute=0, second=0, microsecond=0)
    found = []
    for entry in sorted(folder.glob("hour=*")):
        try:
            begin = datetime.strptime(entry.name[5:], _HOUR_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            continue
        if first <= begin < end:
            files = tuple(sorted(entry.glob("*.parquet")))
            if files:
                found.append(Hour(begin, files))
    return found


def read_rows(
    files: Sequence[Path],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    last: int | None = None,
) -> pd.DataFrame:
    """The log rows in ``files`` with ``start <= time < end`` (or the newest ``last``), oldest
    first, as a DataFrame."""
    import duckdb

    if not files:
        return pd.DataFrame()
    where, params = [], []
    if start is not None:
        where.append("time >= ?")
        params.append(start)
    if end is not None:
        where.append("time < ?")
        params.append(end)
    source = "read_parquet(?, union_by_name = true, hive_partitioning = false)"
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        paths = [str(f) for f in files]
        described = con.execute(f"DESCRIBE SELECT * FROM {source}", [paths]).fetchall()
        names = {str(r[0]) for r in described}
        if "status" in names:  # failed requests are logged too, without data: leave them out
            where.append("coalesce(status, 200) < 400")
        sql = f"SELECT * FROM {source}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if last is not None:
            sql = f"SELECT * FROM ({sql} ORDER BY time DESC, request_id, row LIMIT {int(last)})"
        sql += " ORDER BY time, request_id, row"
        frame: pd.DataFrame = con.execute(sql, [paths, *params]).df()
    return frame


def log_frames(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The inputs (``in_`` columns, prefix removed) and outputs (``out_``) of log rows; a list
    column such as ``out_predict_proba`` becomes ``proba_0``, ``proba_1``..."""
    inputs = frame[[c for c in frame.columns if c.startswith("in_")]]
    inputs = inputs.rename(columns=lambda c: c[3:])
    outputs: dict[str, Any] = {}
    for column in (c for c in frame.columns if c.startswith("out_")):
        values = frame[column]
        if len(values) and isinstance(values.iloc[0], list | tuple | np.ndarray):
            expanded = pd.DataFrame(values.tolist(), index=frame.index)
            for j in expanded.columns:
                outputs[f"proba_{j}" if column == "out_predict_proba" else f"{column[4:]}_{j}"] = (
                    expanded[j].astype("float64")
                )
        else:
            outputs[column[4:]] = values
    return inputs.reset_index(drop=True), pd.DataFrame(outputs).reset_index(drop=True)


def hour_profiles(
    detector: DriftDetector,
    root: str | Path,
    name: str,
    selected: Sequence[Hour],
    *,
    prepare: Callable[[pd.DataFrame], pd.DataFrame],
    progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[Hour, WindowProfile]]:
    """Each hour's profile against ``detector``'s reference, from the cache when the hour's
    files are unchanged; ``prepare`` turns the hour's log rows into the compared columns."""
    cache = Path(root) / "_profiles" / f"deployment={name}" / detector.key_
    for hour in selected:
        path = cache / f"{hour.start.strftime(_HOUR_FORMAT)}.json"
        profile = _cached(path, hour.digest)
        if profile is None:
            frame = prepare(read_rows(hour.files))
            profile = detector.profile(frame)
            _store(path, _Cached(hour.digest, profile))
        if progress is not None:
            progress(1)
        yield hour, profile


def _cached(path: Path, digest: str) -> WindowProfile | None:
    try:
        cached = msgspec.json.decode(path.read_bytes(), type=_Cached)
    except (OSError, msgspec.DecodeError):
        return None
    return cached.profile if cached.digest == digest else None


def _store(path: Path, cached: _Cached) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        temporary.write_bytes(msgspec.json.encode(cached))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def empty_window(root: str | Path, name: str, what: str) -> PredictionLogEmptyError:
    return PredictionLogEmptyError(
        f"No predictions logged for {name!r} {what} (log root {root}); serve it with "
        "'yard serve --log-predictions' or widen the window."
    )
