"""The monitoring report: one self-contained HTML file drawn from a :class:`ReportData`.

Everything is inline (CSS, and charts as SVG built here), there is no script and nothing is
fetched, so the file opens offline, in a mail attachment or from an artifact store. The page
structure lives in ``templates/report.html.j2`` (autoescaped); the SVG is built in this module
and escapes every string it draws (column names, bin labels).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup

from modelyard.core.sizes import format_size
from modelyard.monitoring.charts import (
    CURRENT_COLOUR,
    REFERENCE_COLOUR,
    Line,
    bars_svg,
    line_svg,
    percent,
    spark_svg,
)
from modelyard.monitoring.drift import P_VALUE_METHODS, null_shares_text, ranked, score_text
from modelyard.monitoring.types import (
    ColumnDrift,
    DriftResult,
    Histogram,
    Performance,
    Reconstruction,
    ReportData,
    WindowPoint,
)

if TYPE_CHECKING:
    from modelyard.monitoring.estimated import EstimatedPerformance

__all__ = ["render_report", "write_report"]

_TEMPLATE = "report.html.j2"


# -- formatting ------------------------------------------------------------------------------


def _when(iso: str, pattern: str = "%Y-%m-%d %H:%M UTC") -> str:
    """An ISO 8601 time for people; unparseable text is shown as it came."""
    try:
        return datetime.fromisoformat(iso).strftime(pattern)
    except ValueError:
        return iso


# -- ordering --------------------------------------------------------------------------------


def _ranked(columns: Iterable[ColumnDrift]) -> list[ColumnDrift]:
    return ranked(columns)


# -- page model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    name: str
    kind: str
    method: str
    rule: str
    score: str
    threshold: str
    drifted: bool
    nulls: str
    nulls_drifted: bool
    spark: Markup | None
    anchor: str | None


@dataclass(frozen=True)
class _Figure:
    testid: str
    anchor: str
    title: str
    subtitle: str
    drifted: bool
    svg: Markup | None


def _histogram_of(column: ColumnDrift) -> Histogram | None:
    """The column's histogram, or ``None`` when it has none or no bins."""
    return column.histogram if column.histogram and column.histogram.labels else None


def _histograms(columns: Sequence[ColumnDrift], prefix: str) -> list[_Figure]:
    """One grouped-bar figure per ranked column that has a histogram."""
    figures: list[_Figure] = []
    for column in columns:
        histogram = _histogram_of(column)
        if histogram is None:
            continue
        figures.append(
            _Figure(
                testid=f"histogram-{prefix}{column.name}",
                anchor=f"hist-{prefix}{len(figures)}",
                title=column.name,
                subtitle=f"{column.kind} · {column.method} {score_text(column, 3)} "
                f"(threshold {column.threshold:.3g})",
                drifted=column.drifted,
                svg=bars_svg(histogram, f"{column.name}: reference vs current shares"),
            )
        )
    return figures


def _rows(columns: Sequence[ColumnDrift], figures: Sequence[_Figure]) -> list[_Row]:
    anchors = {figure.title: figure.anchor for figure in figures}
    return [
        _Row(
            name=c.name,
            kind=c.kind,
            method=c.method,
            rule="p-value: drifts below the threshold"
            if c.method in P_VALUE_METHODS
            else "distance: drifts at or above the threshold",
            score=score_text(c, 3),
            threshold=f"{c.threshold:.3g}",
            drifted=c.drifted,
            nulls=null_shares_text(c),
            nulls_drifted=c.null_drifted,
            spark=spark_svg(histogram, c.name) if (histogram := _histogram_of(c)) else None,
            anchor=anchors.get(c.name),
        )
        for c in columns
    ]


def _verdict(drift: DriftResult) -> tuple[str, str]:
    """The headline and the detail line of the verdict banner."""
    counts = f"{drift.drifted} of {len(drift.columns)} columns ({percent(drift.share)})"
    if drift.dataset_drift:
        return f"Dataset drift detected: {counts} ≥ threshold {percent(drift.threshold)}", ""
    return "No dataset drift", f"{counts} drifted, below the {percent(drift.threshold)} threshold"


def _series_chart(testid: str, title: str, svg: Markup | None) -> _Figure:
    return _Figure(testid=testid, anchor=testid, title=title, subtitle="", drifted=False, svg=svg)


def _series_charts(series: Sequence[WindowPoint], threshold: float) -> list[_Figure]:
    """Drift share, volume, latency, error rate and each performance metric over the windows."""
    if not series:
        return []
    times = [_when(p.start, "%m-%d %H:%M") for p in series]

    def line(label: str, values: Iterable[float | None]) -> Line:
        return Line(label, tuple(values))

    drift_share = line_svg(
        "Share of drifted columns per window",
        times,
        [line("drift share", (p.drift_share for p in series))],
        unit="percent",
        y_range=(0.0, 1.0),
        marker=(threshold, f"threshold {percent(threshold)}"),
    )
    volume = line_svg(
        "Rows and requests per window",
        times,
        [line("rows", (p.rows for p in series)), line("requests", (p.requests for p in series))],
        unit="count",
    )
    latency = line_svg(
        "Latency p50 and p99 per window",
        times,
        [
            line("p50", (p.p50_latency_ms for p in series)),
            line("p99", (p.p99_latency_ms for p in series)),
        ],
        unit="ms",
    )
    errors = line_svg(
        "Error rate per window",
        times,
        [line("error rate", (p.error_rate for p in series))],
        unit="percent",
    )
    charts = [
        _series_chart("series-drift-share", "Drift share", drift_share),
        _series_chart("series-volume", "Volume", volume),
        _series_chart("series-latency", "Latency", latency),
        _series_chart("series-error-rate", "Error rate", errors),
    ]
    for name in dict.fromkeys(name for p in series for name in p.performance):
        values = line(name, (p.performance.get(name) for p in series))
        svg = line_svg(f"{name} per window", times, [values], unit="number", zero_based=False)
        charts.append(_series_chart(f"series-metric-{name}", name, svg))
    return charts


@dataclass(frozen=True)
class _ReconstructionRow:
    window: str
    rows: str
    error: str
    band: str
    alert: bool
    empty: bool


def _reconstruction_chart(result: Reconstruction | None) -> Markup | None:
    """The error per window between its two thresholds (dashed lines drawn as series)."""
    if result is None or not result.windows:
        return None
    times = [_when(w.start or "", "%m-%d %H:%M") for w in result.windows]
    n = len(result.windows)
    return line_svg(
        "Reconstruction error per window, with its thresholds",
        times,
        [
            Line("error", tuple(w.error for w in result.windows)),
            Line("upper threshold", (result.upper_threshold,) * n),
            Line("lower threshold", (result.lower_threshold,) * n),
        ],
        unit="number",
        zero_based=False,
    )


def _reconstruction_rows(result: Reconstruction | None) -> list[_ReconstructionRow]:
    if result is None:
        return []
    return [
        _ReconstructionRow(
            window=_when(w.start or "", "%m-%d %H:%M"),
            rows=f"{w.rows:,}",
            error="-" if w.error is None else f"{w.error:.4g}",
            band="-" if w.sampling_error is None else f"± {3 * w.sampling_error:.2g}",
            alert=w.alert,
            empty=w.error is None,
        )
        for w in result.windows
    ]


@dataclass(frozen=True)
class _EstimateCell:
    value: str
    band: str
    alert: bool
    realised: str | None  # "0.905 (error +0.007)" where labels arrived


@dataclass(frozen=True)
class _EstimateRow:
    window: str
    rows: str
    labelled: str
    cells: list[_EstimateCell]


def _estimate_charts(found: EstimatedPerformance | None) -> list[_Figure]:
    """Per metric: the estimate, its thresholds and the realised value over the windows."""
    if found is None or not found.windows:
        return []
    times = [_when(w.start.isoformat() if w.start else "", "%m-%d %H:%M") for w in found.windows]
    charts = []
    for metric in found.metrics:
        estimates = [w.metrics.get(metric) for w in found.windows]  # none in an empty window

        def line(label: str, field: str, estimates: list[Any] = estimates) -> Line:
            return Line(label, tuple(getattr(e, field) if e else None for e in estimates))

        svg = line_svg(
            f"{metric}: estimated and realised per window",
            times,
            [
                line("estimated", "value"),
                line("realised", "realized"),
                line("lower threshold", "lower_threshold"),
                line("upper threshold", "upper_threshold"),
            ],
            unit="number",
            zero_based=False,
        )
        charts.append(_series_chart(f"estimated-{metric}", metric, svg))
    return charts


def _estimate_rows(found: EstimatedPerformance | None) -> list[_EstimateRow]:
    if found is None:
        return []

    def number(value: float | None, sign: str = "") -> str:
        return "-" if value is None else f"{value:{sign}.3f}"

    rows = []
    for w in (w for w in found.windows if w.rows):
        cells = []
        for metric in found.metrics:
            e = w.metrics.get(metric)
            if e is None:
                cells.append(_EstimateCell(value="-", band="-", alert=False, realised=None))
                continue
            realised = None
            if e.realized is not None:
                realised = f"{e.realized:.3f} (error {number(e.error, '+')})"
            cells.append(
                _EstimateCell(
                    value=number(e.value), band=f"{number(e.lower)} to {number(e.upper)}",
                    alert=e.alert, realised=realised,
                )
            )  # fmt: skip
        rows.append(
            _EstimateRow(
                window=_when(w.start.isoformat() if w.start else "", "%m-%d %H:%M"),
                rows=f"{w.rows:,}", labelled=f"{w.labelled:,}", cells=cells,
            )
        )  # fmt: skip
    return rows


def _performance_rows(performance: Performance | None) -> list[tuple[str, str, str]]:
    if performance is None:
        return []
    return [
        (name, f"{value:.4g}", f"{performance.counts.get(name, 0):,}")
        for name, value in performance.metrics.items()
    ]


# -- entry points ----------------------------------------------------------------------------


def _template() -> jinja2.Template:
    source = (resources.files("modelyard.monitoring") / "templates" / _TEMPLATE).read_text(
        encoding="utf-8"
    )
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    return env.from_string(source)


def render_report(data: ReportData) -> str:
    """The report as one self-contained HTML document (inline CSS and SVG, no script, no
    network): verdict, drift table, histograms, series charts, reconstruction error, estimated
    and realised performance, and each version's cost."""
    drift = data.drift
    columns, outputs = _ranked(drift.columns), _ranked(drift.outputs)
    histograms, output_histograms = _histograms(columns, ""), _histograms(outputs, "output-")
    headline, detail = _verdict(drift)
    return _template().render(
        data=data,
        drift=drift,
        generated=_when(data.generated_at),
        headline=headline,
        detail=detail,
        rows=_rows(columns, histograms),
        outputs=_rows(outputs, output_histograms),
        histograms=histograms,
        output_histograms=output_histograms,
        charts=_series_charts(data.series, drift.threshold),
        performance=data.performance,
        metrics=_performance_rows(data.performance),
        estimated=data.estimated,
        estimate_charts=_estimate_charts(data.estimated),
        estimate_rows=_estimate_rows(data.estimated),
        reconstruction=data.reconstruction,
        reconstruction_chart=_reconstruction_chart(data.reconstruction),
        reconstruction_rows=_reconstruction_rows(data.reconstruction),
        cost=data.cost,
        size=format_size,
        reference_colour=REFERENCE_COLOUR,
        current_colour=CURRENT_COLOUR,
    )


def write_report(data: ReportData, path: str | Path) -> Path:
    """Render ``data`` to ``path`` atomically: a temporary file in the same folder is renamed
    over the target, so readers see the old report or the new one, never half of one. Creates
    missing parent folders; returns the path."""
    target = Path(path)
    html = render_report(data)
    target.parent.mkdir(parents=True, exist_ok=True)
    # opened by name rather than with mkstemp, so the report gets the umask's permissions, not 0600
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with temp.open("x", encoding="utf-8") as handle:
            handle.write(html)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target
