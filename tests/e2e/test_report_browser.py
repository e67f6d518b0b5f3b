"""The written HTML report opened from disk in real headless Chromium, with the network cut off."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route

from modelyard.monitoring.report import write_report
from modelyard.monitoring.types import ReportData
from tests.unit.monitoring.test_report import DRIFTED, EVIL, sample_report

SCREENSHOT = Path(__file__).resolve().parents[2] / "test-artifacts" / "report.png"


@dataclass
class Opened:
    """A report loaded in a page, and what the page tried to do while loading it."""

    page: Page
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def open_report(browser: Browser, path: Path, *, width: int = 1280) -> Opened:
    page = browser.new_page(viewport={"width": width, "height": 900})
    opened = Opened(page)

    def route(route: Route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            opened.blocked.append(route.request.url)
            route.abort()

    page.route("**/*", route)
    page.on("request", lambda request: opened.requests.append(request.url))
    page.on("console", lambda m: opened.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: opened.errors.append(str(error)))
    page.on("dialog", lambda dialog: (opened.dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(path.as_uri(), wait_until="load")
    return opened


@pytest.fixture(scope="module")
def report(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Opened]:
    path = write_report(sample_report(), tmp_path_factory.mktemp("report") / "report.html")
    opened = open_report(browser, path)
    yield opened
    opened.page.close()


def test_nothing_is_fetched(report: Opened) -> None:
    assert report.blocked == []
    assert report.requests[0].endswith("/report.html")  # the listener sees requests at all
    assert all(url.startswith("file://") for url in report.requests), report.requests
    assert report.errors == []


def test_verdict_and_most_drifted_column_first(report: Opened) -> None:
    page = report.page
    verdict = page.get_by_test_id("verdict").inner_text()
    assert "Dataset drift detected: 5 of 25 columns (20%) ≥ threshold 20%" in verdict
    rows = page.locator('[data-testid="drift-table"] tbody tr')
    assert rows.count() == 25
    assert rows.first.get_attribute("data-column") == DRIFTED[0]
    assert rows.first.locator(".badge").inner_text().lower() == "drifted"


def test_histograms_and_charts_are_visible(report: Opened) -> None:
    page = report.page
    # 23 columns with histograms and the model output
    assert page.locator('[data-testid^="histogram-"] svg').count() == 24
    boxes = page.locator("svg").evaluate_all(
        "svgs => svgs.map(s => { const r = s.getBoundingClientRect();"
        " return [s.getAttribute('aria-label'), r.width, r.height]; })"
    )
    # 25 table cells hold 23 mini-histograms and the output table 1; 24 histograms; 6 series
    assert len(boxes) == 24 + 24 + 6
    invisible = [label for label, width, height in boxes if width < 20 or height < 10]
    assert invisible == []
    assert page.get_by_test_id("series-latency").locator("path").count() == 2


def test_performance_warns_about_unmatched_labels(report: Opened) -> None:
    warning = report.page.get_by_test_id("unmatched-labels")
    assert warning.is_visible()
    assert warning.inner_text().startswith("37 labels matched no prediction")


def test_full_page_screenshot(report: Opened) -> None:
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    report.page.screenshot(path=str(SCREENSHOT), full_page=True)
    data = SCREENSHOT.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 1280
    assert height > 2000  # the whole page, not just the viewport
    assert len(data) > 100_000


def test_fits_a_phone_screen(browser: Browser, tmp_path: Path) -> None:
    opened = open_report(
        browser, write_report(sample_report(), tmp_path / "report.html"), width=390
    )
    try:
        overflow = opened.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow == 0  # wide tables scroll inside their own box, the page does not
    finally:
        opened.page.close()


def test_hostile_column_name_is_shown_as_text(browser: Browser, tmp_path: Path) -> None:
    path = write_report(sample_report(extra_column=EVIL), tmp_path / "report.html")
    opened = open_report(browser, path)
    try:
        page = opened.page
        assert opened.dialogs == []
        assert page.locator("script").count() == 0
        row = page.locator(f'[data-testid="drift-table"] tr[data-column="{EVIL}"]')
        assert row.locator("th").inner_text() == EVIL
    finally:
        opened.page.close()


def before_labels_report() -> ReportData:
    """The sample report with 24 hours of CBPE estimates (the first 12 labelled, the last 3
    alerting) and of reconstruction error (the last 3 past the upper threshold)."""
    from datetime import UTC, datetime, timedelta

    import msgspec

    from modelyard.monitoring.estimated import EstimatedPerformance
    from modelyard.monitoring.estimation import METRICS, ChunkEstimate, MetricEstimate
    from modelyard.monitoring.types import Reconstruction, ReconstructionWindow

    start = datetime(2025, 3, 14, tzinfo=UTC)
    windows, errors = [], []
    for hour in range(24):
        begin = start + timedelta(hours=hour)
        value = 0.9 if hour < 21 else 0.7
        metrics = {
            m: MetricEstimate(
                value=value, sampling_error=0.01, lower=value - 0.03, upper=value + 0.03,
                lower_threshold=0.8, upper_threshold=0.98, alert=hour >= 21,
                realized=0.91 if hour < 12 else None, error=value - 0.91 if hour < 12 else None,
            )
            for m in METRICS
        }  # fmt: skip
        windows.append(
            ChunkEstimate(index=hour, first_row=hour * 500, rows=500,
                          labelled=500 if hour < 12 else 0, metrics=metrics, start=begin,
                          end=begin + timedelta(hours=1))
        )  # fmt: skip
        error = 1.0 if hour < 21 else 1.6
        end = (begin + timedelta(hours=1)).isoformat()
        errors.append(
            ReconstructionWindow(start=begin.isoformat(), end=end, rows=500, error=error,
                                 sampling_error=0.02, alert=hour >= 21)
        )  # fmt: skip
    estimated = EstimatedPerformance(
        deployment="churn-prod", model="churn", version="3", classes=(0, 1), metrics=METRICS,
        chunk="1h", reference="log", reference_rows=10_000, calibrated=(True,), windows=windows,
    )  # fmt: skip
    reconstruction = Reconstruction(
        reference="churn/3 (stored reference sample)", reference_rows=10_000,
        columns=tuple(f"feature_{i:02d}" for i in range(15)), components=6, variance=0.68,
        reference_error=1.0, lower_threshold=0.9, upper_threshold=1.1, windows=tuple(errors),
    )  # fmt: skip
    return msgspec.structs.replace(
        sample_report(), estimated=estimated, reconstruction=reconstruction
    )


def test_estimates_and_reconstruction_error_show_and_fit_a_phone(
    browser: Browser, tmp_path: Path
) -> None:
    path = write_report(before_labels_report(), tmp_path / "report.html")
    for width in (1280, 390):
        opened = open_report(browser, path, width=width)
        try:
            page = opened.page
            assert opened.errors == [] and opened.blocked == []
            rows = page.locator('[data-testid="estimate-table"] tbody tr')
            assert rows.count() == 24
            assert page.locator('[data-testid="estimate-table"] .badge.bad').count() == 3 * 5
            assert page.get_by_test_id("realised").count() == 12 * 5
            for metric in ("roc_auc", "accuracy"):
                chart = page.get_by_test_id(f"estimated-{metric}").locator("svg")
                assert chart.is_visible() and chart.bounding_box()["width"] > 200  # type: ignore[index]
            assert page.get_by_test_id("reconstruction-chart").locator("svg").is_visible()
            badges = page.locator('[data-testid="reconstruction-table"] .badge.bad')
            assert badges.count() == 3
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow == 0  # the wide estimate table scrolls inside its box
        finally:
            opened.page.close()
