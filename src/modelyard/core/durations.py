"""Durations as people write them: ``90``, ``90s``, ``5m``, ``1h30m``, ``1.5h``, ``250ms``,
``2d``; and a period written back in the largest whole unit (``24h`` is ``1d``)."""

from __future__ import annotations

import math
import re
from datetime import timedelta

from modelyard.errors import InvalidInputError

__all__ = ["format_duration", "parse_duration"]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str | float) -> float:
    """Seconds from ``90``, ``90s``, ``5m``, ``1h30m``, ``1.5h``, ``250ms`` or ``2d``."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        raw = str(text).strip().lower()
        try:
            seconds = float(raw)
        except ValueError:
            parts = _DURATION_PART.findall(raw)
            if not parts or "".join(n + u for n, u in parts) != raw:
                raise InvalidInputError(
                    f"Invalid duration {text!r}; use e.g. 90s, 5m, 1h30m or a number of seconds."
                ) from None
            seconds = sum(float(n) * _UNITS_S[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidInputError(
            f"Invalid duration {text!r}: it must be zero or more; use e.g. 90s, 5m or 1h."
        )
    return seconds


def format_duration(span: timedelta) -> str:
    """``span`` in whole seconds, in the largest unit that divides it: ``1d``, ``6h``, ``90m``,
    ``45s`` (``0s`` for nothing)."""
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
