"""The monitoring report: one self-contained HTML file drawn from a :class:`ReportData`.

Everything is inline (CSS, and charts as SVG built here), there is no script and nothing is
fetched, so the file opens offline, in a mail attachment or from an artifact store. The page
structure lives in ``templates/report.html.j2`` (autoescaped); the SVG is built in this module
and escapes every string it draws (column names, bin labels).
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import jinja2
from markupsafe import Markup, escape

from modelyard.monitoring.drift import P_VALUE_METHODS, ranked
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

_REFERENCE_COLOUR = "#2563eb"
_CURRENT_COLOUR = "#ea580c"
_LINE_COLOURS = ("#2563eb", "#ea580c", "#7c3aed", "#059669")
_MAX_LABEL_CHARS = 16

Unit = Literal["percent", "ms", "count", "number"]


# -- formatting ------------------------------------------------------------------------------


def _percent(share: float) -> str:
    text = f"{share * 100:.1f}"
    return (text[:-2] if text.endswith(".0") else text) + "%"


def _compact(value: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def _format(value: float, unit: Unit) -> str:
    if unit == "percent":
        return _percent(value)
    if unit == "ms":
        return f"{_compact(value)} ms"
    if unit == "count":
        return _compact(value)
    return f"{value:.3g}"


def _when(iso: str, pattern: str = "%Y-%m-%d %H:%M UTC") -> str:
    """An ISO 8601 time for people; unparseable text is shown as it came."""
    try:
        return datetime.fromisoformat(iso).strftime(pattern)
    except ValueError:
        return iso


def _short(label: str) -> str:
    return label if len(label) <= _MAX_LABEL_CHARS else label[: _MAX_LABEL_CHARS - 1] + "…"


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value``."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0):
        if value <= step * magnitude * (1 + 1e-9):
            return step * magnitude
    return 10 * magnitude


# -- ordering --------------------------------------------------------------------------------


def _ranked(columns: Iterable[ColumnDrift]) -> list[ColumnDrift]:
    return ranked(columns)


# -- SVG -------------------------------------------------------------------------------------


def _svg(width: float, height: float, title: str, body: Iterable[str], css: str) -> Markup:
    return Markup(
        f'<svg class="{css}" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
        f'height="{height:.0f}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def _text(x: float, y: float, text: str, *, anchor: str = "middle", css: str = "tick") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" class="{css}">{escape(text)}</text>'
    )


def _legend(x: float, y: float, entries: Sequence[tuple[str, str]]) -> list[str]:
    """Colour swatches with labels, laid out left to right from ``(x, y)``."""
    out = []
    for label, colour in entries:
        out.append(
            f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" rx="2" fill="{colour}"/>'
        )
        out.append(_text(x + 14, y, label, anchor="start", css="legend"))
        x += 28 + 8 * len(label)  # room for the larger phone-sized text too
    return out


def _spark_svg(hist: Histogram, name: str) -> Markup:
    """A 100x24 mini-histogram for a table cell: reference and current bars side by side."""
    width, height = 100.0, 24.0
    top = max(max(hist.reference, default=0), max(hist.current, default=0)) or 1.0
    slot = width / len(hist.labels)
    bars = []
    for i, (ref, cur) in enumerate(zip(hist.reference, hist.current, strict=True)):
        for j, (share, colour) in enumerate(((ref, _REFERENCE_COLOUR), (cur, _CURRENT_COLOUR))):
            h = max(share / top * (height - 2), 0.5 if share > 0 else 0)
            x = i * slot + slot * (0.1 + 0.4 * j)
            bars.append(
                f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{slot * 0.4:.1f}" '
                f'height="{h:.1f}" fill="{colour}"/>'
            )
    return _svg(width, height, f"{name}: reference vs current distribution", bars, "spark")


@dataclass(frozen=True)
class _Plot:
    """The plotting area inside an SVG, in user units, and the margins around it."""

    left: float
    top: float
    width: float
    height: float
    right: float = 14.0
    bottom_margin: float = 26.0

    @property
    def bottom(self) -> float:
        return self.top + self.height

    @property
    def svg_size(self) -> tuple[float, float]:
        return self.left + self.width + self.right, self.bottom + self.bottom_margin

    def y(self, value: float, y_range: tuple[float, float]) -> float:
        lo, hi = y_range
        return self.bottom - self.height * (min(max(value, lo), hi) - lo) / (hi - lo)


def _y_axis(plot: _Plot, y_range: tuple[float, float], unit: Unit) -> list[str]:
    """Gridlines labelled at the minimum, middle and maximum; the lowest is the x axis."""
    lo, hi = y_range
    out = []
    for fraction in (0.0, 0.5, 1.0):
        value = lo + (hi - lo) * fraction
        y = plot.y(value, y_range)
        out.append(
            f'<line x1="{plot.left:.1f}" x2="{plot.left + plot.width:.1f}" y1="{y:.1f}" '
            f'y2="{y:.1f}" class="{"axis" if fraction == 0 else "grid"}"/>'
        )
        out.append(_text(plot.left - 6, y + 3.5, _format(value, unit), anchor="end"))
    return out


def _bars_svg(hist: Histogram, title: str) -> Markup:
    """Grouped bars of reference and current shares per bin, with a share axis, a legend and bin
    labels (slanted when they would not fit under their bars; full text in each bar's tooltip)."""
    labels = [_short(label) for label in hist.labels]
    longest = max(len(label) for label in labels)
    slot = max(36.0, 280.0 / len(labels))
    slanted = longest * 6.0 > slot - 4
    plot = _Plot(
        left=44.0,
        top=30.0,
        width=slot * len(labels),
        height=150.0,
        right=12.0,
        bottom_margin=20 + (0.64 * 6.0 * longest if slanted else 0),
    )
    y_range = (0.0, _nice_ceiling(max(*hist.reference, *hist.current)))
    body = _y_axis(plot, y_range, "percent")
    body += _legend(plot.left, 14, (("reference", _REFERENCE_COLOUR), ("current", _CURRENT_COLOUR)))
    bins = zip(hist.labels, labels, hist.reference, hist.current, strict=True)
    for i, (full, label, ref, cur) in enumerate(bins):
        x0 = plot.left + i * slot
        for j, (share, colour, which) in enumerate(
            ((ref, _REFERENCE_COLOUR, "reference"), (cur, _CURRENT_COLOUR, "current"))
        ):
            y = plot.y(share, y_range)
            body.append(
                f'<rect x="{x0 + slot * (0.12 + 0.38 * j):.1f}" y="{y:.1f}" '
                f'width="{slot * 0.36:.1f}" height="{plot.bottom - y:.1f}" fill="{colour}">'
                f"<title>{escape(full)}: {which} {_percent(share)}</title></rect>"
            )
        cx = x0 + slot / 2
        if slanted:
            body.append(
                f'<text transform="translate({cx:.1f} {plot.bottom + 12:.1f}) rotate(-40)" '
                f'text-anchor="end" class="tick">{escape(label)}</text>'
            )
        else:
            body.append(_text(cx, plot.bottom + 14, label))
    return _svg(*plot.svg_size, title, body, "chart bars")


@dataclass(frozen=True)
class _Line:
    label: str
    values: tuple[float | None, ...]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _y_range(values: Sequence[float], *, zero_based: bool) -> tuple[float, float]:
    """From zero to a round number above the maximum for non-negative quantities, else the
    values' span with 10% headroom either side."""
    lo, hi = min(values), max(values)
    if zero_based and lo >= 0:
        return 0.0, _nice_ceiling(hi)
    span = (hi - lo) or abs(hi) * 0.1 or 1.0
    return lo - span * 0.1, hi + span * 0.1


def _line_svg(
    title: str,
    times: Sequence[str],
    lines: Sequence[_Line],
    *,
    unit: Unit,
    zero_based: bool = True,
    y_range: tuple[float, float] | None = None,
    marker: tuple[float, str] | None = None,
) -> Markup | None:
    """Lines over the windows in ``times`` (evenly spaced); ``None`` values leave gaps and lone
    points show as dots. ``marker`` draws a dashed horizontal line, e.g. a threshold. ``None``
    when no line has a value."""
    present = [v for line in lines for v in map(_finite, line.values) if v is not None]
    if not present:
        return None
    y_range = y_range or _y_range(present, zero_based=zero_based)
    plot = _Plot(left=64.0, top=28.0, width=454.0, height=140.0)
    n = len(times)

    def x(i: int) -> float:
        return plot.left + (plot.width * i / (n - 1) if n > 1 else plot.width / 2)

    body = _y_axis(plot, y_range, unit)
    for i in sorted({0, n // 2, n - 1}):
        anchor = "middle" if n == 1 or 0 < i < n - 1 else "start" if i == 0 else "end"
        body.append(_text(x(i), plot.bottom + 16, times[i], anchor=anchor))
    if marker is not None and y_range[0] <= marker[0] <= y_range[1]:
        y, end = plot.y(marker[0], y_range), plot.left + plot.width
        body.append(
            f'<line x1="{plot.left:.1f}" x2="{end:.1f}" y1="{y:.1f}" y2="{y:.1f}" class="marker"/>'
        )
        # labelled in the legend row, where no data point can cover it
        body.append(f'<line x1="{end - 16:.1f}" x2="{end:.1f}" y1="10" y2="10" class="marker"/>')
        body.append(_text(end - 22, 14, marker[1], anchor="end", css="marker-label"))
    coloured = [(line, _LINE_COLOURS[k % len(_LINE_COLOURS)]) for k, line in enumerate(lines)]
    if len(lines) > 1:
        body += _legend(plot.left, 14, [(line.label, colour) for line, colour in coloured])
    for line, colour in coloured:
        values = [_finite(v) for v in line.values]
        points = [None if v is None else (x(i), plot.y(v, y_range)) for i, v in enumerate(values)]
        body += _polyline(line.label, values, points, times, colour=colour, unit=unit)
    return _svg(*plot.svg_size, title, body, "chart line")


def _polyline(
    label: str,
    values: Sequence[float | None],
    points: Sequence[tuple[float, float] | None],
    times: Sequence[str],
    *,
    colour: str,
    unit: Unit,
) -> list[str]:
    """One series as a path broken at the gaps (``None`` points), and a dot with a tooltip per
    value, so lone values between gaps still show."""
    segments: list[list[str]] = [[]]
    dots = []
    for when, value, point in zip(times, values, points, strict=True):
        if value is None or point is None:
            segments.append([])
            continue
        segments[-1].append(f"{point[0]:.1f},{point[1]:.1f}")
        dots.append(
            f'<circle cx="{point[0]:.1f}" cy="{point[1]:.1f}" r="2.5" fill="{colour}"><title>'
            f"{escape(when)} · {escape(label)} {_format(value, unit)}</title></circle>"
        )
    path = " ".join("M" + " L".join(segment) for segment in segments if len(segment) > 1)
    stroke = f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"/>' if path else ""
    return [stroke, *dots]


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
                subtitle=f"{column.kind} · {column.method} {column.score:.3g} "
                f"(threshold {column.threshold:.3g})",
                drifted=column.drifted,
                svg=_bars_svg(histogram, f"{column.name}: reference vs current shares"),
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
            score=f"{c.score:.3g}",
            threshold=f"{c.threshold:.3g}",
            drifted=c.drifted,
            spark=_spark_svg(histogram, c.name) if (histogram := _histogram_of(c)) else None,
            anchor=anchors.get(c.name),
        )
        for c in columns
    ]


def _verdict(drift: DriftResult) -> tuple[str, str]:
    """The headline and the detail line of the verdict banner."""
    counts = f"{drift.drifted} of {len(drift.columns)} columns ({_percent(drift.share)})"
    if drift.dataset_drift:
        return f"Dataset drift detected: {counts} ≥ threshold {_percent(drift.threshold)}", ""
    return "No dataset drift", f"{counts} drifted, below the {_percent(drift.threshold)} threshold"


def _series_chart(testid: str, title: str, svg: Markup | None) -> _Figure:
    return _Figure(testid=testid, anchor=testid, title=title, subtitle="", drifted=False, svg=svg)


def _series_charts(series: Sequence[WindowPoint], threshold: float) -> list[_Figure]:
    """Drift share, volume, latency, error rate and each performance metric over the windows."""
    if not series:
        return []
    times = [_when(p.start, "%m-%d %H:%M") for p in series]

    def line(label: str, values: Iterable[float | None]) -> _Line:
        return _Line(label, tuple(values))

    drift_share = _line_svg(
        "Share of drifted columns per window",
        times,
        [line("drift share", (p.drift_share for p in series))],
        unit="percent",
        y_range=(0.0, 1.0),
        marker=(threshold, f"threshold {_percent(threshold)}"),
    )
    volume = _line_svg(
        "Rows and requests per window",
        times,
        [line("rows", (p.rows for p in series)), line("requests", (p.requests for p in series))],
        unit="count",
    )
    latency = _line_svg(
        "Latency p50 and p99 per window",
        times,
        [
            line("p50", (p.p50_latency_ms for p in series)),
            line("p99", (p.p99_latency_ms for p in series)),
        ],
        unit="ms",
    )
    errors = _line_svg(
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
        svg = _line_svg(f"{name} per window", times, [values], unit="number", zero_based=False)
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
    return _line_svg(
        "Reconstruction error per window, with its thresholds",
        times,
        [
            _Line("error", tuple(w.error for w in result.windows)),
            _Line("upper threshold", (result.upper_threshold,) * n),
            _Line("lower threshold", (result.lower_threshold,) * n),
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

        def line(label: str, field: str, estimates: list[Any] = estimates) -> _Line:
            return _Line(label, tuple(getattr(e, field) if e else None for e in estimates))

        svg = _line_svg(
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
    and realised performance."""
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
        reference_colour=_REFERENCE_COLOUR,
        current_colour=_CURRENT_COLOUR,
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
