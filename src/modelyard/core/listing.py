"""Names in one-line messages: at most a few, and how many more when some are left out."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["listed"]


def listed(names: Iterable[object], *, limit: int = 20) -> str:
    """``a, b, c and 11 more``: the first ``limit`` names, and a count of the rest."""
    items = [str(n) for n in names]
    more = len(items) - limit
    return ", ".join(items[:limit]) + (f" and {more} more" if more > 0 else "")
