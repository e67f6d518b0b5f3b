"""The dashboard's one-distribution histogram and the named series of ``bars_svg``."""

from __future__ import annotations

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
