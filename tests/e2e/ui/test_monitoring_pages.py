"""The monitoring pages in a real browser: the list of logged names, one name's drift over a
window (drift share per hour with its threshold, drifted columns first, histograms, output
drift), performance once labels arrive (with counts), alert incidents, and the 4xx pages."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import Page
from sklearn.linear_model import LogisticRegression

from modelyard.monitoring.alert_rules import validate_rules
from modelyard.monitoring.alerts import Delivery, ParsedRule, evaluate
from modelyard.monitoring.labels import ingest_labels
from modelyard.registry import Registry
from modelyard.rollout.deployments import deploy
from modelyard.settings import AlertRule, Settings
from tests._logdata import write_log
from tests.e2e.ui.conftest import ROOT, UIServer, make_settings, shot

SCREENSHOT = ROOT / "docs" / "ui-monitoring.png"
HOUR = timedelta(hours=1)
ODD = 'odd <b>"name" 100% & more'  # a log folder may be named anything but / and \\


def inputs(rows: int, seed: int, *, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "tenure": rng.normal(24, 6, size=rows) + shift * 8,
            "monthly_spend": rng.lognormal(3, 0.4, size=rows) * (1 + shift),
            "support_calls": rng.poisson(2, size=rows).astype(float),
        }
    )


class Quiet:
    """A notifier for rules without webhooks."""

    def notify(self, rule: ParsedRule, payload: dict[str, Any]) -> Delivery:
        return Delivery(delivered=0, error=None)


def seed(registry: Registry, root: Path, now: datetime) -> None:
    """churn-prod: 30 hours of traffic, the last 8 shifted (drift), labels for the recent
    hours, and two alert incidents (one resolved, one firing); plain-api: a few unshifted
    rows of the same model, no labels; old-api: rows of three days ago only."""
    train = inputs(4_000, 1)
    target = (train["tenure"] + np.random.default_rng(2).normal(0, 6, len(train)) < 24).astype(int)
    model = LogisticRegression(max_iter=500).fit(train, target)
    registry.register(model, name="churn", data=train, target=target)
    deploy(registry, "churn-prod", model_ref="churn/1")
    ids: list[str] = []
    labels: list[int] = []
    first = (now - 30 * HOUR).replace(minute=0, second=0, microsecond=0)
    for h in range(31):
        start = first + h * HOUR
        shifted = start >= now - 8 * HOUR
        frame = inputs(400, 10 + h, shift=1.0 if shifted else 0.0)
        times = [start + timedelta(seconds=3_500 * i / len(frame)) for i in range(len(frame))]
        keep = [t < now for t in times]
        frame, times = frame[keep].reset_index(drop=True), [t for t in times if t < now]
        if frame.empty:
            continue
        written = write_log(
            root, "churn-prod", frame, times, model="churn", version="1",
            predict=model.predict(frame), proba=model.predict_proba(frame),
            latency_ms=np.random.default_rng(h).gamma(2, 2 + 2 * shifted, len(frame)),
        )  # fmt: skip
        if start >= now - 12 * HOUR:
            truth = (frame["tenure"] < 24 + 8 * shifted).astype(int).to_numpy()
            ids += written[:300]
            labels += truth[:300].tolist()
    ingest_labels(root, "churn-prod", pd.DataFrame({"request_id": ids, "label": labels}))
    plain = inputs(50, 99)
    write_log(
        root, "plain-api", plain, [now - timedelta(minutes=5)] * 50, model="churn", version="1"
    )
    odd = inputs(20, 97)
    write_log(root, ODD, odd, [now - timedelta(minutes=9)] * 20, model="churn", version="1")
    ghost = inputs(10, 96)
    write_log(
        root, "ghost-api", ghost, [now - timedelta(minutes=7)] * 10, model="ghost", version="1"
    )
    old = inputs(40, 98)
    write_log(root, "old-api", old, [now - 72 * HOUR] * 40, model="churn", version="1")
    (rule,) = validate_rules(
        [AlertRule.model_validate({"name": "churn-drift", "deployment": "churn-prod",
                                   "metric": "drift_share", "op": ">=", "threshold": 0.5,
                                   "window": "1h"})]
    )  # fmt: skip
    for minutes, value in ((-600, 0.7), (-540, 0.1), (-120, 0.9)):
        evaluate(
            registry.db, [rule], lambda _r, _n, v=value: v, now=now + timedelta(minutes=minutes),
            notifier=Quiet(),
        )  # fmt: skip


def settled(page: Page, url: str, ready: str) -> None:
    """Open ``url`` and wait for ``ready``: a page computed for the first time says so and
    reloads itself (its ``Refresh`` header) until its numbers are ready."""
    page.goto(url)
    page.wait_for_selector(ready, timeout=60_000)


READY = "[data-testid=verdict], [data-testid=empty-window]"


@pytest.fixture(scope="module")
def seeded(ui_settings: Settings, ui_registry: Registry) -> None:
    seed(ui_registry, Path(ui_settings.resolved_log_root), datetime.now(UTC))


def test_bad_windows_unknown_and_hostile_names_are_4xx(ui_server: UIServer, seeded: None) -> None:
    answer = ui_server.get("/ui/monitoring/churn-prod", params={"window": "30d"})
    assert answer.status_code == 400
    assert "1h, 24h, 7d" in answer.text and "30d" in answer.text
    answer = ui_server.get("/ui/monitoring/nobody")
    assert answer.status_code == 404 and "No prediction log for &#39;nobody&#39;" in answer.text
    for name in ("<script>alert(1)</script>", 'a"b', "100%", "%2E%2E", ".hidden", "x" * 300,
                 "a%2Fb", "a%5Cb", "%00"):  # fmt: skip
        answer = ui_server.get(f"/ui/monitoring/{name}")
        assert 400 <= answer.status_code < 500, (name, answer.status_code)
        assert "<script>alert" not in answer.text
    assert ui_server.get("/ui/monitoring/churn-prod?window=%3Cscript%3E").status_code == 400


def test_the_list_shows_each_logged_name(ui_server: UIServer, seeded: None, page: Page) -> None:
    settled(
        page,
        f"{ui_server.url}/ui/monitoring",
        "[data-testid=monitoring-list]:not(:has(tr.pending))",
    )
    rows = page.locator("[data-testid=monitoring-list] tbody tr")
    names = [r.get_attribute("data-name") for r in rows.all()]
    assert names == ["churn-prod", "ghost-api", ODD, "old-api", "plain-api"]
    assert page.locator("tr[data-name=churn-prod] td").nth(1).inner_text() == "deployment"
    assert page.locator("tr[data-name=plain-api] td").nth(1).inner_text() == "model"
    churn = page.locator("tr[data-name=churn-prod]")
    assert "1 firing" in churn.inner_text() and "churn-drift" in churn.inner_text()
    assert "%" in churn.locator("td").nth(4).inner_text()
    plain = page.locator("tr[data-name=plain-api]").inner_text()
    assert "50" in plain and "none" in plain
    shot(page, "monitoring-list")
    page.click("text=churn-prod")
    assert page.url.endswith("/ui/monitoring/churn-prod")


@pytest.mark.slow
def test_a_drifted_deployment_shows_drifted_columns_first_and_the_drift_share(
    ui_server: UIServer, seeded: None, page: Page
) -> None:
    settled(page, f"{ui_server.url}/ui/monitoring/churn-prod?window=24h", READY)
    assert page.locator("[data-testid=verdict]").inner_text().startswith("Dataset drift")
    rows = page.locator("[data-testid=drift-table] tbody tr")
    drifted = [r.get_attribute("class") == "drifted" for r in rows.all()]
    assert drifted[0] and drifted == sorted(drifted, reverse=True)  # drifted ones first
    assert rows.first.get_attribute("data-column") in ("tenure", "monthly_spend")
    chart = page.locator("[data-testid=series] svg[aria-label='Drift share per hour']")
    assert chart.count() == 1 and chart.locator("line.marker").count() >= 1
    assert page.locator("[data-testid=series] svg[aria-label='Performance per hour']").count() == 1
    assert page.locator("[data-testid=histograms] svg.bars").count() == 3
    assert page.locator("[data-testid=output-table] tbody tr").count() >= 1
    performance = page.locator("[data-testid=performance]")
    assert "labelled" in performance.inner_text()
    accuracy = performance.locator("tr[data-metric=accuracy] td")
    assert int(accuracy.nth(2).inner_text().replace(",", "")) > 0
    incidents = page.locator("[data-testid=incidents] tbody tr")
    assert incidents.count() == 2 and incidents.first.get_attribute("class") == "firing"
    path = shot(page, "monitoring-detail")
    if os.environ.get("MODELYARD_UPDATE_SCREENSHOTS") == "1":
        height = min(page.evaluate("document.body.scrollHeight"), 1500)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(
            path=str(SCREENSHOT), full_page=True,
            clip={"x": 0, "y": 0, "width": 1280, "height": height},
        )  # fmt: skip
    assert path.is_file()


@pytest.mark.slow
@pytest.mark.parametrize("window", ["1h", "7d"])
def test_every_window_renders(ui_server: UIServer, seeded: None, page: Page, window: str) -> None:
    settled(page, f"{ui_server.url}/ui/monitoring/churn-prod?window={window}", READY)
    current = page.locator(".windows a[aria-current=page]")
    assert current.inner_text() == window
    assert page.locator("[data-testid=drift-table]").count() == 1
    shot(page, f"monitoring-detail-{window}")


def test_a_name_without_labels_says_so(ui_server: UIServer, seeded: None, page: Page) -> None:
    settled(page, f"{ui_server.url}/ui/monitoring/plain-api?window=1h", READY)
    assert "No labels yet" in page.locator("[data-testid=no-labels]").inner_text()
    assert page.locator("[data-testid=no-incidents]").count() == 1
    assert page.locator("[data-testid=verdict]").inner_text().startswith("No dataset drift")
    shot(page, "monitoring-plain")


def test_a_window_without_traffic_says_so(ui_server: UIServer, seeded: None, page: Page) -> None:
    settled(page, f"{ui_server.url}/ui/monitoring/old-api?window=24h", READY)
    assert (
        "No predictions logged for 'old-api'"
        in page.locator("[data-testid=empty-window]").inner_text()
    )
    shot(page, "monitoring-empty-window")
    page.click(".windows >> text=7d")
    page.wait_for_selector("[data-testid=drift-table]", timeout=60_000)
    assert page.locator("[data-testid=drift-table] tbody tr").count() == 3
    assert page.locator("tr[data-name]").count() == 0


def test_no_logs_at_all(tmp_path: Path) -> None:
    server = UIServer(make_settings(tmp_path))
    try:
        answer = server.get("/ui/monitoring")
        assert answer.status_code == 200 and 'data-testid="no-logs"' in answer.text
    finally:
        server.stop()


def test_monitoring_needs_a_read_token(ui_auth_server: UIServer) -> None:
    for path in ("/ui/monitoring", "/ui/monitoring/churn-prod?window=1h"):
        answer = ui_auth_server.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login")


def test_a_first_visit_says_it_is_computing_and_reloads(ui_server: UIServer, seeded: None) -> None:
    answer = ui_server.get("/ui/monitoring/old-api?window=1h")
    assert answer.status_code == 200 and answer.headers["refresh"] == "2"
    assert 'data-testid="computing"' in answer.text and "last 1h" in answer.text
    deadline = time.monotonic() + 60
    while 'data-testid="computing"' in answer.text:
        assert time.monotonic() < deadline
        time.sleep(0.2)
        answer = ui_server.get("/ui/monitoring/old-api?window=1h")
    assert 'data-testid="empty-window"' in answer.text and "refresh" not in answer.headers


def test_a_name_with_markup_and_quotes_is_shown_as_text(
    ui_server: UIServer, seeded: None, page: Page
) -> None:
    settled(
        page,
        f"{ui_server.url}/ui/monitoring",
        "[data-testid=monitoring-list]:not(:has(tr.pending))",
    )
    page.click(f"tr[data-name='{ODD.replace(chr(39), '')}'] a")
    page.wait_for_selector(READY, timeout=60_000)
    assert page.locator("h1").inner_text() == ODD
    assert page.locator("main b").count() == 0
    hint = page.locator("[data-testid=no-labels] code").inner_text()
    assert hint == "yard labels ingest 'odd <b>\"name\" 100% & more' FILE"
    shot(page, "monitoring-odd-name")


def answered(server: UIServer, path: str) -> httpx.Response:
    """The page once its numbers are computed (it reloads itself until then)."""
    deadline = time.monotonic() + 60
    answer = server.get(path)
    while "refresh" in answer.headers:
        assert time.monotonic() < deadline
        time.sleep(0.2)
        answer = server.get(path)
    return answer


def test_a_log_of_a_model_the_registry_lacks_is_a_404_naming_it(
    ui_server: UIServer, seeded: None
) -> None:
    answer = answered(ui_server, "/ui/monitoring/ghost-api?window=1h")
    assert answer.status_code == 404 and "ghost" in answer.text
    listed = answered(ui_server, "/ui/monitoring")
    assert 'data-name="ghost-api"' in listed.text


def test_the_list_refreshes_its_rows_live(ui_server: UIServer, seeded: None) -> None:
    listed = answered(ui_server, "/ui/monitoring")
    assert 'data-live="/ui/monitoring?part=rows" data-every="30"' in listed.text
    rows = answered(ui_server, "/ui/monitoring?part=rows")
    assert rows.status_code == 200 and "<html" not in rows.text
    assert 'data-name="churn-prod"' in rows.text
    assert ui_server.get("/ui/monitoring?part=%3Cx%3E").status_code == 400


def test_windows_are_chosen_with_the_keyboard(
    ui_server: UIServer, seeded: None, page: Page
) -> None:
    settled(page, f"{ui_server.url}/ui/monitoring/plain-api?window=24h", READY)
    page.focus(".windows >> text=1h")
    page.keyboard.press("Tab")  # to 24h
    page.keyboard.press("Tab")  # to 7d
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_selector(READY, timeout=60_000)
    assert page.locator(".windows a[aria-current=page]").inner_text() == "7d"
