"""Where a deployment's prediction log lies: its ``hour=`` partitions, their files and columns.

Kept free of pandas, scipy and the drift code, so that what only lists files (``yard monitor
cost``, ``yard assess``) starts without importing them.
"""

from __future__ import annotations

from collections.abc import KeysView, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from modelyard.core.durations import format_duration
from modelyard.errors import InvalidInputError, PredictionLogEmptyError
from modelyard.monitoring import _deltalog

__all__ = [
    "HOUR", "Hour", "empty_window", "hours", "log_columns", "log_folder", "require_window",
]  # fmt: skip

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


def log_folder(root: str | Path, name: str) -> Path:
    return Path(root) / f"deployment={name}"


def hours(root: str | Path, name: str, start: datetime, end: datetime) -> list[Hour]:
    """The hours of ``name``'s log that overlap ``[start, end)``, oldest first."""
    folder = log_folder(root, name)
    if not folder.is_dir():
        return []
    first = start.replace(minute=0, second=0, microsecond=0)
    active = _deltalog.active_names(folder)  # a Delta log: only its current files
    found = []
    for entry in sorted(folder.glob("hour=*")):
        try:
            begin = datetime.strptime(entry.name[5:], _HOUR_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            continue
        if first <= begin < end:
            files = tuple(
                f for f in sorted(entry.glob("*.parquet")) if active is None or f.name in active
            )
            if files:
                found.append(Hour(begin, files))
    return found


def log_columns(con: Any, paths: Sequence[str]) -> KeysView[str]:
    """The columns of log files (files written before a column existed lack it), in the
    order the files give them."""
    source = "read_parquet(?, union_by_name = true, hive_partitioning = false)"
    described = con.execute(f"DESCRIBE SELECT * FROM {source}", [paths]).fetchall()
    return dict.fromkeys(str(r[0]) for r in described).keys()


def require_window(window: timedelta) -> None:
    """Refuse a window of no time (``--window 0s``): it holds no predictions by definition."""
    if window <= timedelta(0):
        raise InvalidInputError(
            f"The window {format_duration(window)!r} is empty; use a positive one such as "
            "--window 1h."
        )


def empty_window(root: str | Path, name: str, what: str) -> PredictionLogEmptyError:
    return PredictionLogEmptyError(
        f"No predictions logged for {name!r} {what} (log root {root}); serve it with "
        "'yard serve --log-predictions' or widen the window."
    )
