"""What the dashboard's monitoring pages read: which names have a prediction log, a summary of
each (volume of the last hour and day, the last hour's drift, firing alerts), a name's report
data with hourly points over any window, and a fingerprint of a log's state to cache on.

The drift and the series are ``service.deployment_drift`` and ``service.build_report``, the
functions ``yard monitor drift`` and ``yard monitor report`` call; the incidents are
``alerts.alert_history``, as ``yard monitor alerts`` lists them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from modelyard.errors import InvalidInputError, ModelyardError, NotFoundError
from modelyard.monitoring._partitions import HOUR, hours, log_folder
from modelyard.monitoring.alerts import Incident, alert_history
from modelyard.monitoring.labels import labels_folder
from modelyard.monitoring.service import DriftOptions, build_report, deployment_drift
from modelyard.monitoring.traffic import window_traffic
from modelyard.monitoring.types import DriftResult, ReportData

if TYPE_CHECKING:
    from modelyard.registry.client import Registry

__all__ = [
    "WINDOWS",
    "LogSummary",
    "check_logged",
    "check_name",
    "log_fingerprint",
    "log_summary",
    "logged_names",
    "monitoring_report",
    "parse_window",
]

DAY = timedelta(days=1)
#: The windows a monitoring page offers, by their name in the URL.
WINDOWS: dict[str, timedelta] = {"1h": HOUR, "24h": DAY, "7d": 7 * DAY}
MAX_NAME_CHARS = 200


def parse_window(text: str | None, default: str = "24h") -> tuple[str, timedelta]:
    """A window's name and length from a URL's ``window``; anything but one of ``WINDOWS``
    is an ``InvalidInputError`` naming them."""
    key = default if text is None or text == "" else text
    if key not in WINDOWS:
        raise InvalidInputError(
            f"Window {key[:40]!r} is not one of {', '.join(WINDOWS)}; pick one of those."
        )
    return key, WINDOWS[key]


def logged_names(root: str | Path) -> list[str]:
    """The deployments and models with a prediction log under ``root``, sorted."""
    base = Path(root)
    if not base.is_dir():
        return []
    return sorted(
        p.name.removeprefix("deployment=")
        for p in base.glob("deployment=*")
        if p.is_dir() and any(p.glob("hour=*"))
    )


def check_name(name: str) -> None:
    """``name`` could name a log folder (else ``InvalidInputError``): checked before any path
    or object-store key is built from it."""
    if (
        not name
        or len(name) > MAX_NAME_CHARS
        or name.startswith(".")
        or any(c in name for c in "/\\\0")
    ):
        raise InvalidInputError(
            f"{name[:60]!r} is not a deployment or model name; pick one from the monitoring list."
        )


def check_logged(root: str | Path, name: str) -> None:
    """``name`` is a plausible log name (else ``InvalidInputError``) that has a prediction log
    under ``root`` (else ``NotFoundError`` naming the next step)."""
    check_name(name)
    if not log_folder(root, name).is_dir():
        raise NotFoundError(
            f"No prediction log for {name!r}; serve it with 'yard serve --log-predictions' or "
            "pick one from the monitoring list."
        )


def log_fingerprint(root: str | Path, name: str) -> tuple[tuple[str, int], ...]:
    """What changes when ``name``'s log or labels change: each hour folder's and labels file's
    modification time (a log file is written, then renamed into its hour's folder, so a new file
    changes the folder's time; files are never rewritten)."""
    found: list[tuple[str, int]] = []
    for folder in (log_folder(root, name), labels_folder(root, name)):
        if folder.is_dir():
            found.extend((p.name, p.stat().st_mtime_ns) for p in sorted(folder.iterdir()))
    return tuple(found)


class LogSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One row of the monitoring list: rows logged in the last hour and day, the newest hour
    with a log file, the last hour's drift (``None`` with ``drift_error`` when it cannot be
    computed: no rows in the hour, no stored profile...), and the unresolved incidents."""

    name: str
    rows_hour: int
    rows_day: int
    latest_hour: datetime | None
    drift: DriftResult | None
    drift_error: str | None
    firing: tuple[Incident, ...]


def log_summary(
    registry: Registry,
    root: str | Path,
    name: str,
    *,
    options: DriftOptions | None = None,
    now: datetime | None = None,
) -> LogSummary:
    """The summary of ``name``'s log at ``now``."""
    now = now or datetime.now(UTC)
    every = hours(root, name, datetime(1970, 1, 1, tzinfo=UTC), now + timedelta(seconds=1))
    # from the per-file traffic cache the server's gauges keep: a page reads new files only
    day = window_traffic(
        root, name, [h for h in every if h.end > now - DAY], start=now - DAY, end=now
    )
    last = window_traffic(
        root, name, [h for h in every if h.end > now - HOUR], start=now - HOUR, end=now
    )
    rows_day = day.rows if day is not None else 0
    rows_hour = last.rows if last is not None else 0
    drift, error = None, None
    if rows_hour:
        try:
            drift = deployment_drift(registry, root, name, window=HOUR, options=options, now=now)
        except ModelyardError as exc:
            error = str(exc)
    else:
        error = "No predictions in the last hour."
    return LogSummary(
        name=name,
        rows_hour=rows_hour,
        rows_day=rows_day,
        latest_hour=every[-1].start if every else None,
        drift=drift,
        drift_error=error,
        firing=tuple(alert_history(registry.db, deployment=name, firing=True)),
    )


def monitoring_report(
    registry: Registry,
    root: str | Path,
    name: str,
    *,
    window: timedelta,
    options: DriftOptions | None = None,
    now: datetime | None = None,
) -> ReportData:
    """``yard monitor report``'s data for ``name`` over ``window``, with a point per hour
    whatever the window (a week is 168 points: the drift share per hour comes from the cached
    hour profiles), without the reconstruction error (the pages do not draw it, and it reads
    every row of the window: 8 of 35 s for a week of a million predictions)."""
    return build_report(
        registry, root, name, window=window, options=options, now=now, every=HOUR,
        reconstruction=False,
    )  # fmt: skip
