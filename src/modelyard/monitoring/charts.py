"""SVG charts drawn on the server, shared by the HTML report and the dashboard: grouped bars of
reference and current shares per bin, a mini-histogram for a table cell, and lines over time
windows. Every string drawn (column names, bin labels, times) is escaped; colours are attributes
and the look (axis, grid, tick, legend, marker classes) comes from the page's stylesheet.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from markupsafe import Markup, escape

from modelyard.monitoring.types import Histogram

REFERENCE_COLOUR = "#2563eb"
CURRENT_COLOUR = "#ea580c"
LINE_COLOURS = ("#2563eb", "#ea580c", "#7c3aed", "#059669")
MAX_LABEL_CHARS = 16

Unit = Literal["percent", "ms", "count", "number"]


def percent(share: float) -> str:
    text = f"{share * 100:.1f}"
    return (text[:-2] if text.endswith(".0") else text) + "%"


def compact(value: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def format_value(value: float, unit: Unit) -> str:
    if unit == "percent":
        return percent(value)
    if unit == "ms":
        return f"{compact(value)} ms"
    if unit == "count":
        return compact(value)
    return f"{value:.3g}"


def short(label: str) -> str:
    return label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value``."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0):
        if value <= step * magnitude * (1 + 1e-9):
            return step * magnitude
    return 10 * magnitude


def svg(width: float, height: float, title: str, body: Iterable[str], css: str) -> Markup:
    return Markup(
        f'<svg class="{css}" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
        f'height="{height:.0f}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def svg_text(x: float, y: float, text: str, *, anchor: str = "middle", css: str = "tick") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" class="{css}">{escape(text)}</text>'
    )


def legend(x: float, y: float, entries: Sequence[tuple[str, str]]) -> list[str]:
    """Colour swatches with labels, laid out left to right from ``(x, y)``."""
    out = []
    for label, colour in entries:
        out.append(
            f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" rx="2" fill="{colour}"/>'
        )
        out.append(svg_text(x + 14, y, label, anchor="start", css="legend"))
        x += 28 + 8 * len(label)  # room for the larger phone-sized text too
    return out


def spark_svg(hist: Histogram, name: str) -> Markup:
    """A 100x24 mini-histogram for a table cell: reference and current bars side by side."""
    width, height = 100.0, 24.0
    top = max(max(hist.reference, default=0), max(hist.current, default=0)) or 1.0
    slot = width / len(hist.labels)
    bars = []
    for i, (ref, cur) in enumerate(zip(hist.reference, hist.current, strict=True)):
        for j, (share, colour) in enumerate(((ref, REFERENCE_COLOUR), (cur, CURRENT_COLOUR))):
            h = max(share / top * (height - 2), 0.5 if share > 0 else 0)
            x = i * slot + slot * (0.1 + 0.4 * j)
            bars.append(
                f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{slot * 0.4:.1f}" '
                f'height="{h:.1f}" fill="{colour}"/>'
            )
    return svg(width, height, f"{name}: reference vs current distribution", bars, "spark")


@dataclass(frozen=True)
class Plot:
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


def y_axis(plot: Plot, y_range: tuple[float, float], unit: Unit) -> list[str]:
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
        out.append(svg_text(plot.left - 6, y + 3.5, format_value(value, unit), anchor="end"))
    return out


def bin_label(cx: float, bottom: float, label: str, *, slanted: bool) -> str:
    """A bin's label under its bars, centred at ``cx``; slanted when it would not fit."""
    if slanted:
        return (
            f'<text transform="translate({cx:.1f} {bottom + 12:.1f}) rotate(-40)" '
            f'text-anchor="end" class="tick">{escape(label)}</text>'
        )
    return svg_text(cx, bottom + 14, label)


def _bin_axes(
    labels: Sequence[str], *, min_slot: float, top: float, height: float
) -> tuple[list[str], float, bool, Plot]:
    """The bar charts' layout: the shortened labels, each bin's width, whether the labels must be
    slanted to fit, and the plotting area (room below for slanted labels)."""
    shown = [short(label) for label in labels]
    longest = max((len(label) for label in shown), default=1)
    slot = max(min_slot, 280.0 / max(len(shown), 1))
    slanted = longest * 6.0 > slot - 4
    plot = Plot(
        left=44.0, top=top, width=slot * max(len(shown), 1), height=height, right=12.0,
        bottom_margin=20 + (0.64 * 6.0 * longest if slanted else 0),
    )  # fmt: skip
    return shown, slot, slanted, plot


def bars_svg(
    hist: Histogram, title: str, *, names: tuple[str, str] = ("reference", "current")
) -> Markup:
    """Grouped bars of reference and current shares per bin, with a share axis, a legend and bin
    labels (slanted when they would not fit under their bars; full text in each bar's tooltip).
    ``names`` label the two series (two versions' training data, say)."""
    labels, slot, slanted, plot = _bin_axes(hist.labels, min_slot=36.0, top=30.0, height=150.0)
    y_range = (0.0, nice_ceiling(max(*hist.reference, *hist.current)))
    body = y_axis(plot, y_range, "percent")
    body += legend(plot.left, 14, ((names[0], REFERENCE_COLOUR), (names[1], CURRENT_COLOUR)))
    bins = zip(hist.labels, labels, hist.reference, hist.current, strict=True)
    for i, (full, label, ref, cur) in enumerate(bins):
        x0 = plot.left + i * slot
        for j, (share, colour, which) in enumerate(
            ((ref, REFERENCE_COLOUR, names[0]), (cur, CURRENT_COLOUR, names[1]))
        ):
            y = plot.y(share, y_range)
            body.append(
                f'<rect x="{x0 + slot * (0.12 + 0.38 * j):.1f}" y="{y:.1f}" '
                f'width="{slot * 0.36:.1f}" height="{plot.bottom - y:.1f}" fill="{colour}">'
                f"<title>{escape(full)}: {which} {percent(share)}</title></rect>"
            )
        body.append(bin_label(x0 + slot / 2, plot.bottom, label, slanted=slanted))
    return svg(*plot.svg_size, title, body, "chart bars")


@dataclass(frozen=True)
class Line:
    label: str
    values: tuple[float | None, ...]


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def y_range_of(values: Sequence[float], *, zero_based: bool) -> tuple[float, float]:
    """From zero to a round number above the maximum for non-negative quantities, else the
    values' span with 10% headroom either side."""
    lo, hi = min(values), max(values)
    if zero_based and lo >= 0:
        return 0.0, nice_ceiling(hi)
    span = (hi - lo) or abs(hi) * 0.1 or 1.0
    return lo - span * 0.1, hi + span * 0.1


def line_svg(
    title: str,
    times: Sequence[str],
    lines: Sequence[Line],
    *,
    unit: Unit,
    zero_based: bool = True,
    y_range: tuple[float, float] | None = None,
    marker: tuple[float, str] | None = None,
) -> Markup | None:
    """Lines over the windows in ``times`` (evenly spaced); ``None`` values leave gaps and lone
    points show as dots. ``marker`` draws a dashed horizontal line, e.g. a threshold. ``None``
    when no line has a value."""
    present = [v for line in lines for v in map(finite, line.values) if v is not None]
    if not present:
        return None
    y_range = y_range or y_range_of(present, zero_based=zero_based)
    plot = Plot(left=64.0, top=28.0, width=454.0, height=140.0)
    n = len(times)

    def x(i: int) -> float:
        return plot.left + (plot.width * i / (n - 1) if n > 1 else plot.width / 2)

    body = y_axis(plot, y_range, unit)
    for i in sorted({0, n // 2, n - 1}):
        anchor = "middle" if n == 1 or 0 < i < n - 1 else "start" if i == 0 else "end"
        body.append(svg_text(x(i), plot.bottom + 16, times[i], anchor=anchor))
    if marker is not None and y_range[0] <= marker[0] <= y_range[1]:
        y, end = plot.y(marker[0], y_range), plot.left + plot.width
        body.append(
            f'<line x1="{plot.left:.1f}" x2="{end:.1f}" y1="{y:.1f}" y2="{y:.1f}" class="marker"/>'
        )
        # labelled in the legend row, where no data point can cover it
        body.append(f'<line x1="{end - 16:.1f}" x2="{end:.1f}" y1="10" y2="10" class="marker"/>')
        body.append(svg_text(end - 22, 14, marker[1], anchor="end", css="marker-label"))
    coloured = [(line, LINE_COLOURS[k % len(LINE_COLOURS)]) for k, line in enumerate(lines)]
    if len(lines) > 1:
        body += legend(plot.left, 14, [(line.label, colour) for line, colour in coloured])
    for line, colour in coloured:
        values = [finite(v) for v in line.values]
        points = [None if v is None else (x(i), plot.y(v, y_range)) for i, v in enumerate(values)]
        body += polyline(line.label, values, points, times, colour=colour, unit=unit)
    return svg(*plot.svg_size, title, body, "chart line")


def polyline(
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
            f"{escape(when)} · {escape(label)} {format_value(value, unit)}</title></circle>"
        )
    path = " ".join("M" + " L".join(segment) for segment in segments if len(segment) > 1)
    stroke = f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"/>' if path else ""
    return [stroke, *dots]


def histogram_svg(
    labels: Sequence[str],
    shares: Sequence[float],
    title: str,
    *,
    edges: Sequence[float] | None = None,
) -> Markup:
    """One distribution: a bar per bin (or category) of its share of the rows, with a share axis
    and bin labels (slanted when long; full text in each bar's tooltip). With the numeric bins'
    ``edges`` (quantile bins are of unequal width), bars span their bins on a value axis and their
    heights are densities (share per unit), so the chart shows the distribution's shape."""
    if edges is not None and _spread(edges, len(shares)):
        return _density_svg(labels, shares, edges, title)
    shown, slot, slanted, plot = _bin_axes(labels, min_slot=24.0, top=12.0, height=120.0)
    y_range = (0.0, nice_ceiling(max(shares, default=0.0)))
    body = y_axis(plot, y_range, "percent")
    for i, (full, label, share) in enumerate(zip(labels, shown, shares, strict=True)):
        x0 = plot.left + i * slot
        y = plot.y(share, y_range)
        body.append(
            f'<rect x="{x0 + slot * 0.1:.1f}" y="{y:.1f}" width="{slot * 0.8:.1f}" '
            f'height="{plot.bottom - y:.1f}" fill="{REFERENCE_COLOUR}">'
            f"<title>{escape(full)}: {percent(share)}</title></rect>"
        )
        body.append(bin_label(x0 + slot / 2, plot.bottom, label, slanted=slanted))
    return svg(*plot.svg_size, title, body, "chart bars")


def _spread(edges: Sequence[float], bins: int) -> bool:
    return len(edges) == bins + 1 and all(
        math.isfinite(a) and math.isfinite(b) and b > a for a, b in itertools.pairwise(edges)
    )


def _density_svg(
    labels: Sequence[str], shares: Sequence[float], edges: Sequence[float], title: str
) -> Markup:
    plot = Plot(left=44.0, top=12.0, width=300.0, height=120.0, right=16.0)
    lo, span = edges[0], edges[-1] - edges[0]
    densities = [
        share / (b - a) for share, (a, b) in zip(shares, itertools.pairwise(edges), strict=True)
    ]
    y_range = (0.0, nice_ceiling(max(densities)))
    body = y_axis(plot, y_range, "number")

    def x(value: float) -> float:
        return plot.left + plot.width * (value - lo) / span

    bins = zip(labels, shares, densities, itertools.pairwise(edges), strict=True)
    for label, share, density, (a, b) in bins:
        y = plot.y(density, y_range)
        body.append(
            f'<rect x="{x(a):.2f}" y="{y:.1f}" width="{max(x(b) - x(a), 0.5):.2f}" '
            f'height="{plot.bottom - y:.1f}" fill="{REFERENCE_COLOUR}" stroke="#fff" '
            f'stroke-width="0.5"><title>{escape(label)}: {percent(share)}</title></rect>'
        )
    for value, anchor in ((edges[0], "start"), ((edges[0] + edges[-1]) / 2, "middle"),
                          (edges[-1], "end")):  # fmt: skip
        body.append(svg_text(x(value), plot.bottom + 14, f"{value:.4g}", anchor=anchor))
    return svg(*plot.svg_size, title, body, "chart bars")
