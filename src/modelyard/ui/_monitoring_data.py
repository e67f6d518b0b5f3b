"""The monitoring pages' data: read through ``monitoring.dashboard`` (the service functions of
``yard monitor``), kept for a minute in ``UIState.caches`` keyed by the log's state, and shaped
into what the templates draw (charts as SVG from ``monitoring.charts``).

Everything here blocks (DuckDB, the registry): the pages call it through ``blocking``.
"""

from __future__ import annotations

import functools
import logging
import shlex
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from markupsafe import Markup

from modelyard.errors import ModelyardError, PredictionLogEmptyError
from modelyard.monitoring.alerts import Incident, alert_history
from modelyard.monitoring.charts import (
    LINE_COLOURS,
    Line,
    bars_svg,
    line_svg,
    percent,
    spark_svg,
)
from modelyard.monitoring.dashboard import (
    LogSummary,
    check_logged,
    check_name,
    log_fingerprint,
    log_summary,
    logged_names,
    monitoring_report,
    parse_window,
)
from modelyard.monitoring.drift import null_shares_text, ranked, score_text
from modelyard.monitoring.mirror import mirror_folder, readable_root, store_named
from modelyard.monitoring.predlog import is_remote
from modelyard.monitoring.service import DriftOptions
from modelyard.rollout.queries import list_deployments

if TYPE_CHECKING:
    from modelyard.monitoring.estimated import EstimatedPerformance
    from modelyard.monitoring.types import ColumnDrift, ReportData, WindowPoint
    from modelyard.ui._base import UIState

T = TypeVar("T")
logger = logging.getLogger(__name__)
TTL_S = 60.0
MAX_ENTRIES = 256
#: Columns whose reference vs current histogram is drawn in full (the most drifted first).
MAX_HISTOGRAMS = 12


@dataclass(frozen=True)
class _Entry:
    at: float  # time.monotonic() when computed
    stamp: Hashable  # what the value was computed from (the log's fingerprint)
    value: Any


class TTLCache:
    """Values under a key, fresh for ``ttl`` seconds while their ``stamp`` (what they depend
    on: the log's fingerprint) stays the same; the oldest go past ``size`` entries.

    A stale value (older, or its stamp changed) is still answered at once while a background
    thread computes its replacement (stale while revalidate): a week over a million predictions
    takes seconds to compute, and a page should not wait for it every minute. ``lookup`` does
    not wait for a key never computed either: it answers ``None`` and starts it. At most
    ``workers`` computations run at once, one per key."""

    def __init__(self, ttl: float = TTL_S, size: int = MAX_ENTRIES, workers: int = 2) -> None:
        self.ttl = ttl
        self.size = size
        self._lock = threading.Lock()
        self._items: dict[Hashable, _Entry] = {}
        self._refreshing: set[Hashable] = set()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="yard-ui-monitoring")

    def lookup(
        self, key: Hashable, stamp: Hashable, compute: Callable[[], T]
    ) -> tuple[T | None, bool]:
        """The value (``None`` while it is computed for the first time) and whether it is
        fresh; a missing or stale value is computed in the background."""
        with self._lock:
            found = self._items.get(key)
            if (
                found is not None
                and found.stamp == stamp
                and time.monotonic() - found.at < self.ttl
            ):
                return found.value, True
            if key not in self._refreshing:
                self._refreshing.add(key)
                self._pool.submit(self._refresh, key, stamp, compute)
            return (None if found is None else found.value), False

    def _store(self, key: Hashable, stamp: Hashable, value: T) -> T:
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = _Entry(time.monotonic(), stamp, value)
            while len(self._items) > self.size:
                del self._items[next(iter(self._items))]
        return value

    def _refresh(self, key: Hashable, stamp: Hashable, compute: Callable[[], Any]) -> None:
        try:
            self._store(key, stamp, compute())
        except Exception:  # the stale value stays; the next request tries again
            logger.exception("Computing the monitoring page's data (%r) failed", key)
        finally:
            with self._lock:
                self._refreshing.discard(key)


def cache(ui: UIState) -> TTLCache:
    found = ui.caches.get(__name__)
    if not isinstance(found, TTLCache):
        found = ui.caches.setdefault(__name__, TTLCache())
    assert isinstance(found, TTLCache)
    return found


def _root(ui: UIState) -> Path:
    """Where the logs are read for the list (a remote root's local mirror)."""
    root = ui.settings.resolved_log_root
    return mirror_folder(ui.settings) if is_remote(root) else Path(root)


# -- the list ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListRow:
    name: str
    kind: str  # "deployment" (yard deploy), else "model" (a model served by its name)
    summary: LogSummary | None  # None: being computed for the first time, or failed
    error: str | None


def overview(ui: UIState) -> list[ListRow]:
    """A summary per logged name, each cached for a minute while its log stays the same; one
    not computed yet is computed in the background (the page reloads until it is)."""
    root = _root(ui)
    options = DriftOptions.from_settings(ui.settings)
    deployed = {d.name for d in list_deployments(ui.registry.db)}
    rows = []
    for name in logged_names(root):
        kind = "deployment" if name in deployed else "model"
        compute = functools.partial(_summary, ui, root, name, options)
        found, _ = cache(ui).lookup(("summary", name), log_fingerprint(root, name), compute)
        if isinstance(found, ModelyardError):
            rows.append(ListRow(name, kind, None, str(found)))
        else:
            rows.append(ListRow(name, kind, found, None))
    return rows


def _summary(
    ui: UIState, root: Path, name: str, options: DriftOptions
) -> LogSummary | ModelyardError:
    try:
        return log_summary(ui.registry, root, name, options=options)
    except ModelyardError as exc:
        return exc


# -- one name ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    title: str
    subtitle: str
    drifted: bool
    svg: Markup


@dataclass(frozen=True)
class ColumnRow:
    column: ColumnDrift
    spark: Markup | None

    @property
    def score(self) -> str:
        return score_text(self.column, 3)

    @property
    def nulls(self) -> str:
        return null_shares_text(self.column)


@dataclass(frozen=True)
class Detail:
    name: str
    window: str
    fresh: bool  # False: older than a minute or than the log, being computed again
    report: ReportData | None  # None: nothing logged in the window
    empty: str | None  # why there is no report
    columns: list[ColumnRow]
    outputs: list[ColumnRow]
    histograms: list[Figure]
    output_histograms: list[Figure]
    charts: list[Figure]
    estimate_charts: list[Figure]
    incidents: list[Incident]
    verdict: str

    @property
    def ingest(self) -> str:
        """The command that sends this name's labels, quoted for a shell."""
        return f"yard labels ingest {shlex.quote(self.name)} FILE"


def detail(ui: UIState, name: str, window_text: str | None) -> Detail | None:
    """Everything the page of ``name`` draws for a window (``None`` while it is computed for the
    first time, in the background); 4xx errors for a bad name or window.
    The report and its charts are cached together (drawing a week's charts again on every
    request would cost more than the rest of the page)."""
    window, span = parse_window(window_text)
    check_name(name)
    with store_named(ui.settings):
        root = readable_root(ui.settings, name)
        check_logged(root, name)
        options = DriftOptions.from_settings(ui.settings)

        def compute() -> Detail | ModelyardError:
            try:
                found = monitoring_report(
                    ui.registry, root, name, window=span, options=options, now=datetime.now(UTC)
                )
            except PredictionLogEmptyError as exc:
                return Detail(name, window, True, None, str(exc), [], [], [], [], [], [], [], "")
            except ModelyardError as exc:  # shown as the error page it maps to
                return exc
            return _drawn(name, window, found)

        stamp = log_fingerprint(root, name)
        drawn, fresh = cache(ui).lookup(("report", name, window), stamp, compute)
    if drawn is None:
        return None
    if isinstance(drawn, ModelyardError):
        raise drawn
    incidents = alert_history(ui.registry.db, deployment=name, limit=50)
    return replace(drawn, fresh=fresh, incidents=incidents)


def _drawn(name: str, window: str, found: ReportData) -> Detail:
    drift = found.drift
    columns, outputs = ranked(drift.columns), ranked(drift.outputs)
    return Detail(
        name=name,
        window=window,
        fresh=True,
        report=found,
        empty=None,
        columns=_rows(columns),
        outputs=_rows(outputs),
        histograms=_histograms(columns[:MAX_HISTOGRAMS]),
        output_histograms=_histograms(outputs[:MAX_HISTOGRAMS]),
        # the realised performance per hour beside drift, volume and latency
        charts=_series(found.series, drift.threshold) + _performance(found.series),
        estimate_charts=_estimates(found.estimated),
        incidents=[],
        verdict=_verdict(found),
    )


def _verdict(data: ReportData) -> str:
    drift = data.drift
    counts = f"{drift.drifted} of {len(drift.columns)} columns ({percent(drift.share)})"
    if drift.dataset_drift:
        return f"Dataset drift: {counts} drifted, at or above {percent(drift.threshold)}"
    return f"No dataset drift: {counts} drifted, below {percent(drift.threshold)}"


def _rows(columns: Sequence[ColumnDrift]) -> list[ColumnRow]:
    return [
        ColumnRow(c, spark_svg(c.histogram, c.name) if c.histogram and c.histogram.labels else None)
        for c in columns
    ]


def _histograms(columns: Sequence[ColumnDrift]) -> list[Figure]:
    return [
        Figure(
            title=c.name,
            subtitle=f"{c.method} {score_text(c, 3)} (threshold {c.threshold:.3g})",
            drifted=c.drifted,
            svg=bars_svg(c.histogram, f"{c.name}: reference vs current shares"),
        )
        for c in columns
        if c.histogram is not None and c.histogram.labels
    ]


def _times(starts: Sequence[str]) -> list[str]:
    return [datetime.fromisoformat(s).strftime("%m-%d %H:%M") for s in starts]


def _series(series: Sequence[WindowPoint], threshold: float) -> list[Figure]:
    """Drift share per hour (with the threshold), rows and latency."""
    times = _times([p.start for p in series])
    drift_share = line_svg(
        "Drift share per hour", times, [Line("drift share", tuple(p.drift_share for p in series))],
        unit="percent", y_range=(0.0, 1.0), marker=(threshold, f"threshold {percent(threshold)}"),
    )  # fmt: skip
    rows = line_svg(
        "Rows per hour", times, [Line("rows", tuple(float(p.rows) for p in series))], unit="count"
    )
    latency = line_svg(
        "Latency per hour", times,
        [Line("p50", tuple(p.p50_latency_ms for p in series)),
         Line("p99", tuple(p.p99_latency_ms for p in series))],
        unit="ms",
    )  # fmt: skip
    return _figures([("Drift share", drift_share), ("Rows", rows), ("Latency", latency)])


def _performance(series: Sequence[WindowPoint]) -> list[Figure]:
    """The realised metrics per hour, up to four on one chart (where labels arrived)."""
    metrics = list(dict.fromkeys(m for p in series for m in p.performance))[: len(LINE_COLOURS)]
    if not metrics:
        return []
    times = _times([p.start for p in series])
    lines = [Line(m, tuple(p.performance.get(m) for p in series)) for m in metrics]
    chart = line_svg("Performance per hour", times, lines, unit="number", zero_based=False)
    return _figures([("Performance (labelled predictions)", chart)])


def _figures(charts: Sequence[tuple[str, Markup | None]]) -> list[Figure]:
    return [Figure(title, "", False, svg) for title, svg in charts if svg is not None]


def _estimates(found: EstimatedPerformance | None) -> list[Figure]:
    """Per metric: the estimate, its thresholds and the realised value over the windows."""
    if found is None or not found.windows:
        return []
    times = [w.start.strftime("%m-%d %H:%M") if w.start else "" for w in found.windows]
    figures = []
    for metric in found.metrics:
        estimates = [w.metrics.get(metric) for w in found.windows]

        def line(label: str, field: str, estimates: list[Any] = estimates) -> Line:
            return Line(label, tuple(getattr(e, field) if e else None for e in estimates))

        svg = line_svg(
            f"{metric}: estimated and realised per window", times,
            [line("estimated", "value"), line("realised", "realized"),
             line("lower threshold", "lower_threshold"),
             line("upper threshold", "upper_threshold")],
            unit="number", zero_based=False,
        )  # fmt: skip
        if svg is not None:
            latest = next((e for e in reversed(estimates) if e is not None), None)
            alert = latest is not None and latest.alert
            figures.append(Figure(metric, "alert" if alert else "", alert, svg))
    return figures
