"""The caches kept beside a prediction log, one JSON list per hour of what was computed from each
log file (drift profiles, reconstruction error sums, traffic): log files never change once
written, so each is read once. Written atomically (a temporary file renamed over the old one):
readers see all of a list or none; one that cannot be read counts as empty (computed again)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

T = TypeVar("T")


def load_cached(path: Path, kind: type[T]) -> list[T]:
    """The cached items at ``path``, as ``kind``; none when it is missing or unreadable."""
    try:
        return msgspec.json.decode(path.read_bytes(), type=list[kind])  # type: ignore[valid-type]
    except (OSError, msgspec.DecodeError):
        return []


def store_cached(path: Path, items: Sequence[Any]) -> None:
    """Replace the cached items at ``path``."""
    replace_with(path, lambda temporary: temporary.write_bytes(msgspec.json.encode(items)))


def replace_with(path: Path, write: Callable[[Path], object]) -> None:
    """``write`` a temporary file beside ``path`` (its name ends in ``path``'s suffix, which
    ``np.save`` wants), then rename it over ``path``: readers see the old file or the new one,
    never half of one, and a failed write leaves no temporary behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp{path.suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def place(
    rows: int, first: datetime, last: datetime, *, start: datetime, end: datetime
) -> Literal["out", "inside", "edge"]:
    """Where a file whose ``rows`` run from ``first`` to ``last`` falls against the window
    ``[start, end)``: ``out`` (none of its rows in it), ``inside`` (all of them: its cached
    result counts whole) or ``edge`` (some: its rows are read with the window's bounds)."""
    if not rows or last < start or first >= end:
        return "out"
    return "inside" if first >= start and last < end else "edge"
