"""The HTML monitoring report: rendered from hand-built ReportData, read back with html.parser."""

from __future__ import annotations

import itertools
import os
import random
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import msgspec
import pytest

from modelyard.monitoring.report import render_report, write_report
from modelyard.monitoring.types import (
    ColumnDrift,
    DriftMethod,
    DriftResult,
    Histogram,
    Performance,
    ReportData,
    WindowPoint,
)

EVIL = "<script>alert(1)</script>"

# The five drifted columns, most drifted first: p = 0 beats any ratio, then threshold/p = 5e10,
# then score/threshold 4.5, 2.5 and 1.2.
DRIFTED = ["plan", "tenure_months", "monthly_charges", "region", "support_calls"]
# The closest calls among the rest: 0.19/0.2 = 0.95, 0.05/0.055 = 0.91, 0.05/0.2 = 0.25.
NEAR_MISSES = ["age", "contract", "total_charges"]
NO_HISTOGRAM = {"signup_date", "last_login"}


def _histogram(rng: random.Random, labels: list[str], shift: float) -> Histogram:
    reference = [rng.uniform(0.5, 1.5) for _ in labels]
    current = [r * (1 + shift * (i - len(labels) / 2)) for i, r in enumerate(reference)]
    current = [max(c, 0.01) for c in current]

    def norm(xs: list[float]) -> tuple[float, ...]:
        return tuple(x / sum(xs) for x in xs)

    return Histogram(labels=tuple(labels), reference=norm(reference), current=norm(current))


def _column(
    rng: random.Random,
    name: str,
    kind: str,
    method: DriftMethod,
    score: float,
    threshold: float,
    *,
    statistic: float | None = None,
) -> ColumnDrift:
    p_value = method in ("ks", "chi2")
    drifted = score < threshold if p_value else score >= threshold
    if name in NO_HISTOGRAM:
        histogram = None
    elif kind == "numeric":
        edges = [round(i * 12.5, 1) for i in range(9)]
        labels = [f"[{a}, {b})" for a, b in itertools.pairwise(edges)]
        histogram = _histogram(rng, labels, 0.15 if drifted else 0.01)
    elif kind == "bool":
        histogram = _histogram(rng, ["false", "true"], 0.2 if drifted else 0.01)
    else:
        labels = ["north-east", "south-west", "central", "overseas", "other"]
        histogram = _histogram(rng, labels, 0.2 if drifted else 0.01)
    return ColumnDrift(
        name=name,
        kind=kind,
        method=method,
        score=score,
        threshold=threshold,
        drifted=drifted,
        statistic=statistic,
        reference_rows=50_000,
        current_rows=8_421,
        histogram=histogram,
    )


def sample_report(*, extra_column: str | None = None) -> ReportData:
    """25 columns (5 drifted, 2 without histograms), one output, 24 hourly windows with gaps,
    and performance with unmatched labels."""
    rng = random.Random(7)
    specs: list[tuple[str, str, DriftMethod, float, float]] = [
        ("plan", "categorical", "chi2", 0.0, 0.05),
        ("tenure_months", "numeric", "ks", 1e-12, 0.05),
        ("monthly_charges", "numeric", "psi", 0.9, 0.2),
        ("region", "categorical", "js", 0.25, 0.1),
        ("support_calls", "numeric", "wasserstein", 0.12, 0.1),
        ("age", "numeric", "psi", 0.19, 0.2),
        ("contract", "categorical", "chi2", 0.055, 0.05),
        ("total_charges", "numeric", "ks", 0.2, 0.05),
        ("signup_date", "datetime", "psi", 0.004, 0.2),
        ("last_login", "datetime", "psi", 0.003, 0.2),
    ]
    for i in range(15):
        kinds: list[tuple[str, DriftMethod]] = [
            ("numeric", "psi"),
            ("bool", "chi2"),
            ("categorical", "js"),
        ]
        kind, method = kinds[i % 3]
        score = 0.9 - i * 0.01 if method == "chi2" else 0.001 * (i + 1)
        specs.append((f"feature_{i:02d}", kind, method, score, 0.05 if method == "chi2" else 0.2))
    if extra_column is not None:
        specs[-1] = (extra_column, "categorical", "psi", 0.5, 0.2)
    columns = [
        _column(rng, *spec, statistic=812.0 if spec[0] == "plan" else None) for spec in specs
    ]
    rng.shuffle(columns)  # the renderer does the ordering
    drifted = sum(c.drifted for c in columns)
    output = _column(rng, "churn_probability", "numeric", "psi", 0.31, 0.2)
    series = []
    for hour in range(24):
        gap = hour in (5, 6)
        series.append(
            WindowPoint(
                start=f"2025-03-14T{hour:02d}:00:00+00:00",
                end=f"2025-03-14T{hour:02d}:59:59+00:00",
                rows=1200 + 40 * hour,
                requests=300 + 10 * hour,
                p50_latency_ms=None if gap else 4.0 + (hour % 5) * 0.3,
                p99_latency_ms=None if gap else 38.0 + hour * 1.5,
                error_rate=None if hour == 12 else 0.002 * (hour % 4),
                drift_share=None if gap else min(0.04 * hour / 3, 1.0),
                performance={} if hour < 3 else {"accuracy": 0.91 - hour * 0.002, "f1": 0.8},
            )
        )
    return ReportData(
        name="churn-prod",
        generated_at="2025-03-15T00:05:00+00:00",
        window="24h",
        drift=DriftResult(
            reference="churn/3 (stored profile)",
            current="churn-prod, last 24h",
            reference_rows=50_000,
            current_rows=8_421,
            columns=tuple(columns),
            drifted=drifted,
            share=drifted / len(columns),
            threshold=0.2,
            dataset_drift=drifted / len(columns) >= 0.2,
            outputs=(output,),
        ),
        series=tuple(series),
        performance=Performance(
            task="classification",
            metrics={"accuracy": 0.874, "f1": 0.781, "roc_auc": 0.912},
            counts={"accuracy": 2104, "f1": 2104, "roc_auc": 2098},
            labelled=2104,
            predictions=8421,
            unmatched_labels=37,
        ),
    )


@dataclass(frozen=True)
class Element:
    tag: str
    attrs: dict[str, str]
    within: tuple[str, ...]  # the data-testids of this element and its ancestors, outermost first


class Page(HTMLParser):
    """Every element with the data-testids around it, and the text under each data-testid."""

    VOID = frozenset({"meta", "link", "br", "img", "input", "hr"})

    def __init__(self, html: str) -> None:
        super().__init__()
        self.html = html
        self.elements: list[Element] = []
        self.texts: dict[str, str] = {}
        self._open: list[tuple[str, str | None]] = []
        self.feed(html)
        self.close()

    def _within(self) -> tuple[str, ...]:
        return tuple(testid for _, testid in self._open if testid)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        testid = values.get("data-testid")
        if tag not in self.VOID:
            self._open.append((tag, testid))
        self.elements.append(Element(tag, values, self._within()))
        if testid:
            self.texts.setdefault(testid, "")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self._open.pop()

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        for testid in self._within():
            self.texts[testid] += f" {data}"

    def text(self, testid: str) -> str:
        """The text under ``testid``, whitespace collapsed (elements are space separated)."""
        return " ".join(self.texts[testid].split())

    def find(self, tag: str, within: str) -> list[Element]:
        return [e for e in self.elements if e.tag == tag and within in e.within]


def parse(html: str) -> Page:
    return Page(html)


@pytest.fixture(scope="module")
def data() -> ReportData:
    return sample_report()


@pytest.fixture(scope="module")
def page(data: ReportData) -> Page:
    return parse(render_report(data))


def row_order(page: Page, table: str = "drift-table") -> list[str]:
    return [r.attrs["data-column"] for r in page.find("tr", table) if "data-column" in r.attrs]


def test_verdict_names_the_drifted_share_and_threshold(page: Page) -> None:
    assert page.text("verdict") == "Dataset drift detected: 5 of 25 columns (20%) ≥ threshold 20%"
    assert "churn-prod" in page.text("header")
    assert "churn/3 (stored profile)" in page.text("header")
    assert "50,000 rows" in page.text("header")
    assert "8,421 rows" in page.text("header")
    assert "2025-03-15 00:05 UTC" in page.text("header")


def test_verdict_without_dataset_drift(data: ReportData) -> None:
    calm = msgspec.structs.replace(
        data, drift=msgspec.structs.replace(data.drift, threshold=0.5, dataset_drift=False)
    )
    verdict = parse(render_report(calm)).text("verdict")
    assert verdict.startswith("No dataset drift")
    assert "5 of 25 columns (20%) drifted, below the 50% threshold" in verdict


def test_drift_table_puts_the_most_drifted_first(page: Page) -> None:
    order = row_order(page)
    assert len(order) == 25
    assert order[:5] == DRIFTED
    assert order[5:8] == NEAR_MISSES
    spans = [e.attrs.get("class", "").split() for e in page.find("span", "drift-table")]
    badges = [classes for classes in spans if "badge" in classes]
    assert badges == [["badge", "bad"]] * 5 + [["badge", "good"]] * 20
    assert row_order(page, "output-drift-table") == ["churn_probability"]


def test_equal_p_values_are_ordered_by_statistic(data: ReportData) -> None:
    base = data.drift.columns[0]
    columns = tuple(
        msgspec.structs.replace(
            base, name=name, method="ks", score=0.0, threshold=0.05, drifted=True, statistic=stat
        )
        for name, stat in (("weak", 0.3), ("strong", 0.9), ("none", None))
    )
    drift = msgspec.structs.replace(data.drift, columns=columns, outputs=())
    assert row_order(parse(render_report(msgspec.structs.replace(data, drift=drift)))) == [
        "strong",
        "weak",
        "none",
    ]


def test_every_histogram_is_drawn_drifted_first(data: ReportData, page: Page) -> None:
    with_histograms = {c.name for c in data.drift.columns if c.histogram is not None}
    assert len(with_histograms) == 23
    figures = [e.attrs["data-testid"] for e in page.find("figure", "histograms")]
    assert figures[:5] == [f"histogram-{name}" for name in DRIFTED]
    assert set(figures) == {f"histogram-{n}" for n in with_histograms} | {
        "histogram-output-churn_probability"
    }
    for testid in figures:
        svgs = [e for e in page.elements if e.tag == "svg" and testid in e.within]
        assert len(svgs) == 1, testid
        bars = [e for e in page.elements if e.tag == "rect" and testid in e.within]
        labels = (
            2 if "bool" in page.text(testid) else 5 if "categorical" in page.text(testid) else 8
        )
        assert len(bars) == 2 + 2 * labels  # legend swatches, then a pair per bin
        assert "reference" in page.text(testid) and "current" in page.text(testid)
    assert "[0.0, 12.5)" in page.text("histogram-age")  # bin labels on the x axis
    assert "0%" in page.text("histogram-age")  # share axis


def test_null_shares_are_shown_and_an_all_null_column_says_so(data: ReportData) -> None:
    changed = {
        # every current value null: nothing compared
        "plan": {"compared": False, "current_rows": 0, "current_null_share": 1.0,
                 "null_drifted": True},
        # the values alike, the nulls from 10% to 70%
        "age": {"drifted": True, "reference_null_share": 0.1, "current_null_share": 0.7,
                "null_p_value": 1e-30, "null_drifted": True},
    }  # fmt: skip
    columns = tuple(
        msgspec.structs.replace(c, **changed.get(c.name, {})) for c in data.drift.columns
    )
    drift = msgspec.structs.replace(data.drift, columns=columns)
    page = parse(render_report(msgspec.structs.replace(data, drift=drift)))
    table = page.text("drift-table")
    assert "plan categorical chi2 all null 0.05 drifted 0.0% → 100.0% drifted" in table
    assert "age numeric psi 0.19 0.2 drifted 10.0% → 70.0% drifted" in table
    assert "tenure_months numeric ks 1e-12 0.05 drifted 0.0% → 0.0% tenure" in table
    assert "chi2 all null" in page.text("histogram-plan")


def test_drift_rows_without_histogram_say_so(page: Page) -> None:
    rows = page.find("tr", "drift-table")
    assert {r.attrs["data-column"] for r in rows if "data-column" in r.attrs} >= NO_HISTOGRAM
    assert page.text("drift-table").count("no histogram") == 2
    assert "histogram-signup_date" not in page.texts


def test_charts_have_accessible_titles(page: Page) -> None:
    svgs = [e for e in page.elements if e.tag == "svg"]
    assert svgs
    for svg in svgs:
        assert svg.attrs.get("role") == "img"
        assert svg.attrs.get("aria-label")
        assert re.fullmatch(r"0 0 \d+ \d+", svg.attrs["viewbox"])


def test_series_charts_draw_each_measure_with_gaps(page: Page) -> None:
    expected = {
        "series-drift-share",
        "series-volume",
        "series-latency",
        "series-error-rate",
        "series-metric-accuracy",
        "series-metric-f1",
    }
    charts = {e.attrs["data-testid"] for e in page.find("figure", "series")}
    assert charts == expected
    # p50 and p99 are missing at 05:00 and 06:00: each line breaks into two segments
    paths = [e.attrs["d"] for e in page.find("path", "series-latency")]
    assert [d.count("M") for d in paths] == [2, 2]
    assert len(page.find("circle", "series-latency")) == 2 * 22
    assert "threshold 20%" in page.text("series-drift-share")
    assert "00:00" in page.text("series-volume") and "23:00" in page.text("series-volume")
    assert "100%" in page.text("series-drift-share")  # max tick label
    # accuracy is absent in the first three windows
    assert len(page.find("circle", "series-metric-accuracy")) == 21


def test_single_window_and_empty_measures(data: ReportData) -> None:
    point = WindowPoint(
        start="2025-03-14T00:00:00+00:00",
        end="2025-03-14T01:00:00+00:00",
        rows=10,
        requests=3,
        drift_share=0.4,
    )
    page = parse(render_report(msgspec.structs.replace(data, series=(point,))))
    assert len(page.find("circle", "series-drift-share")) == 1
    assert page.find("path", "series-drift-share") == []  # a lone point is a dot, not a line
    assert "No values in these windows" in page.text("series-latency")
    assert "No values in these windows" in page.text("series-error-rate")


def test_empty_series_and_no_performance_show_placeholders(data: ReportData) -> None:
    page = parse(render_report(msgspec.structs.replace(data, series=(), performance=None)))
    assert "No series" in page.text("no-series")
    assert page.find("svg", "series") == []
    assert "No labels yet" in page.text("performance")
    assert "unmatched-labels" not in page.texts


def test_performance_lists_metrics_and_unmatched_labels(page: Page) -> None:
    assert page.text("unmatched-labels").startswith("37 labels matched no prediction")
    table = page.text("metrics-table")
    assert "accuracy 0.874 2,104" in table
    assert "f1 0.781 2,104" in table
    assert "roc_auc 0.912 2,098" in table
    assert "2,104 labelled of 8,421 predictions" in page.text("performance")


def test_one_unmatched_label_is_singular(data: ReportData) -> None:
    assert data.performance is not None
    perf = msgspec.structs.replace(data.performance, unmatched_labels=1)
    page = parse(render_report(msgspec.structs.replace(data, performance=perf)))
    assert page.text("unmatched-labels").startswith("1 label matched no prediction")
    perf = msgspec.structs.replace(data.performance, unmatched_labels=0)
    assert (
        "unmatched-labels"
        not in parse(render_report(msgspec.structs.replace(data, performance=perf))).texts
    )


def test_user_strings_are_escaped() -> None:
    data = sample_report(extra_column=EVIL)
    data = msgspec.structs.replace(data, name='churn "prod" & <b>co</b>')
    html = render_report(data)
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    page = parse(html)
    assert not [e for e in page.elements if e.tag in ("script", "b")]
    assert EVIL in row_order(page)  # the attribute round-trips to the exact name
    assert EVIL in page.text(f"histogram-{EVIL}")
    assert 'churn "prod" & <b>co</b>' in page.text("header")


def test_the_report_is_self_contained(page: Page) -> None:
    html = page.html
    for pattern in (r"<script", r"<link", r"<img", r"<iframe", r"@import", r"url\(", r"src="):
        assert not re.search(pattern, html, flags=re.I), pattern
    assert "http://" not in html and "https://" not in html  # not even an SVG namespace
    hrefs = [e.attrs["href"] for e in page.elements if "href" in e.attrs]
    assert hrefs and all(h.startswith("#") for h in hrefs)
    ids = {e.attrs["id"] for e in page.elements if "id" in e.attrs}
    assert {h[1:] for h in hrefs} <= ids  # every column link lands on its histogram


def test_the_template_ships_inside_the_package() -> None:
    template = resources.files("modelyard.monitoring") / "templates" / "report.html.j2"
    assert template.is_file()
    assert "data-testid" in template.read_text(encoding="utf-8")


def test_write_report_creates_folders_and_leaves_no_temp_file(
    data: ReportData, tmp_path: Path
) -> None:
    target = tmp_path / "reports" / "churn" / "report.html"
    written = write_report(data, str(target))
    assert written == target
    assert target.read_text(encoding="utf-8") == render_report(data)
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]


def test_write_report_honours_the_umask(data: ReportData, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        written = write_report(data, tmp_path / "report.html")
    finally:
        os.umask(old)
    assert written.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_keeps_the_old_report(
    data: ReportData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "report.html"
    target.write_text("old report", encoding="utf-8")

    def fail(src: object, dst: object) -> None:
        raise OSError("disk went away")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk went away"):
        write_report(data, target)
    assert target.read_text(encoding="utf-8") == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_cost_shows_each_version_at_the_prices_and_says_when_not_measured(
    data: ReportData,
) -> None:
    from modelyard.monitoring.types import CostReport, ModelCost, Prices

    model = ModelCost(
        model="<churn>", version="3", predictions=12345, requests=1000, cpu_s=1.5,
        memory_bytes=250_000_000, served_h=2.0, cpu_s_per_1k=0.1215, gb_h_per_1k=0.0405,
        cost=0.0123, cost_per_1k=0.000996,
    )  # fmt: skip
    prices = Prices(cpu_hour=0.05, gb_hour=0.005, currency="EUR")
    cost = CostReport(name="churn", start="a", end="b", prices=prices, measured=True,
                      models=(model,))  # fmt: skip
    page = parse(render_report(msgspec.structs.replace(data, cost=cost)))
    assert "At 0.05 EUR per CPU-hour and 0.005 per GB-hour" in page.text("cost")
    row = page.text("cost-table")
    assert "<churn>/3 12,345 1.500 0.1215 238.4 MiB 0.0405 0.000996 0.0123" in row
    assert "&lt;churn&gt;" in page.html  # escaped
    old = msgspec.structs.replace(cost, measured=False)
    page = parse(render_report(msgspec.structs.replace(data, cost=old)))
    assert "Not measured" in page.text("no-cost")
    assert "no-cost" in parse(render_report(data)).texts  # no cost computed
