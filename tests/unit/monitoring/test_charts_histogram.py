"""The dashboard's one-distribution histogram and the named series of ``bars_svg``."""

from __future__ import annotations

import re

import pytest

from modelyard.monitoring.charts import bars_svg, histogram_svg
from modelyard.monitoring.types import Histogram


def test_histogram_draws_one_bar_per_bin_with_escaped_labels() -> None:
    drawn = str(histogram_svg(["<a>", "b"], [0.25, 0.75], "x & y"))
    assert drawn.count("<rect") == 2
    assert "&lt;a&gt;: 25%" in drawn and "b: 75%" in drawn
    assert "<title>x &amp; y</title>" in drawn and "<a>" not in drawn


def test_bars_name_their_two_series() -> None:
    hist = Histogram(labels=("a",), reference=(0.5,), current=(0.5,))
    drawn = str(bars_svg(hist, "t", names=("version 1", "version 2")))
    assert "a: version 1 50%" in drawn and "a: version 2 50%" in drawn
    assert "reference" not in drawn


def test_unequal_bins_are_drawn_as_densities_on_a_value_axis() -> None:
    drawn = str(histogram_svg(["[0, 1)", "[1, 3]"], [0.5, 0.5], "x", edges=[0.0, 1.0, 3.0]))
    widths = [float(w) for w in re.findall(r'<rect x="[^"]+" y="[^"]+" width="([^"]+)"', drawn)]
    heights = [float(h) for h in re.findall(r'height="([0-9.]+)" fill', drawn)]
    assert widths[1] == pytest.approx(2 * widths[0])  # the bin twice as wide
    assert heights[0] == pytest.approx(2 * heights[1])  # holds the same share: half as dense
    assert ">0<" in drawn and ">3<" in drawn  # the value axis
    flat = str(histogram_svg(["a", "b"], [0.5, 0.5], "x", edges=[1.0, 1.0, 1.0]))
    assert flat.count("<rect") == 2  # degenerate edges: equal slots
