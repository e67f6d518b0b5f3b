"""The deployment pages in real Chromium: every deployment, one deployment mid-canary with route
statistics recorded as a server records them, promote and abort by clicking (button, confirmation,
confirm), a stale page refused with 409, a read token refused with 403, the live routes table
refreshing itself, and the README's screenshot."""

from __future__ import annotations

import os
import re
import shutil
import time

import numpy as np
import pytest
from playwright.sync_api import Page, expect
from sklearn.linear_model import LogisticRegression

from modelyard import rollout
from modelyard.registry import Registry
from modelyard.serving.tokens import create_token
from tests.e2e.ui.conftest import ROOT, SHOTS, UIServer, shot

pytestmark = pytest.mark.slow

X = np.random.default_rng(0).normal(size=(60, 3))
README_SHOT = ROOT / "docs" / "ui-deployment.png"


def canary(registry: Registry, name: str, *, stable: str = "churn/1") -> rollout.Deployment:
    rollout.deploy(registry, name, model_ref=stable, actor="ann", reason="launch")
    return rollout.start_candidate(
        registry, name, ref="churn/2", mode="canary", steps=[10, 50, 100], bake_s="10m",
        auto=True, actor="ann", reason="new features",
    )  # fmt: skip


def record_traffic(registry: Registry, d: rollout.Deployment, *, minutes: int = 50) -> None:
    """``minutes`` of traffic up to now, counted and flushed as a server replica does: about
    4 requests/s on stable and 0.4 on the canary, a few errors, the canary a little slower."""
    rng = np.random.default_rng(1)
    buffer = rollout.StatsBuffer(replica="pod-1", window_s=30)
    now = time.time()
    for second in range(minutes * 60, 0, -1):
        at = now - second
        for _ in range(int(rng.poisson(4.0))):
            buffer.observe(d.name, d.revision, "stable", latency_ms=float(rng.gamma(4.0, 1.5)),
                           error=rng.random() < 0.004, outputs=[str(int(rng.random() < 0.4))],
                           at=at)  # fmt: skip
        if rng.random() < 0.4:
            buffer.observe(d.name, d.revision, "candidate", latency_ms=float(rng.gamma(4.0, 1.8)),
                           error=rng.random() < 0.006, outputs=[str(int(rng.random() < 0.42))],
                           at=at)  # fmt: skip
    assert buffer.flush(registry.db) > 0


@pytest.fixture(scope="module")
def fleet(ui_registry: Registry) -> Registry:
    """``web`` mid-canary with traffic, ``api`` stable only, ``mirror`` shadowing, and one
    deployment per test that changes it."""
    for i in range(3):
        model = LogisticRegression().fit(X, (X[:, i % 3] > 0).astype(int))
        ui_registry.register(model, name="churn", data=X)
    ui_registry.set_alias("churn/1", "production")
    record_traffic(ui_registry, canary(ui_registry, "web", stable="churn@production"))
    rollout.deploy(ui_registry, "api", model_ref="churn/3")
    rollout.deploy(ui_registry, "mirror", model_ref="churn/1")
    rollout.start_candidate(ui_registry, "mirror", ref="churn/3", mode="shadow", sample=0.5)
    rollout.deploy(ui_registry, "split", model_ref="churn/1")
    rollout.start_candidate(
        ui_registry, "split", ref="churn/3", mode="ab", weight=50, sticky_header="x-user"
    )
    for name in ("promo", "abortme", "stale", "guarded"):
        canary(ui_registry, name)
    return ui_registry


def test_the_list_shows_every_deployment(fleet: Registry, ui_server: UIServer, page: Page) -> None:
    page.goto(f"{ui_server.url}/ui/deployments")
    rows = page.locator("table.deployments tbody tr")
    expect(rows).to_have_count(8)
    web = rows.filter(has=page.locator("a", has_text=re.compile("^web$")))
    cells = [c.strip() for c in web.locator("td").all_inner_texts()]
    assert cells[:7] == ["web", "canary", "churn/1 @production", "churn/2", "90% / 10%",
                         "1 of 3 (10%)", "rolling"]  # fmt: skip
    assert web.locator("a", has_text="churn/2").get_attribute("href") == (
        "/ui/models/churn/versions/2"
    )
    mirror = rows.filter(has=page.locator("a", has_text="mirror"))
    assert "copies of 50%" in mirror.inner_text() and "shadow" in mirror.inner_text()
    shot(page, "deployments")


def test_a_canary_shows_routes_traffic_verdicts_next_step_and_history(
    fleet: Registry, ui_server: UIServer, page: Page
) -> None:
    page.goto(f"{ui_server.url}/ui/deployments/web")
    routes = page.locator("#live table.routes tbody tr")
    expect(routes).to_have_count(2)
    stable = routes.nth(0).locator("td").all_inner_texts()
    assert stable[:3] == ["stable", "churn/1", "90%"]
    assert 2.0 < float(stable[3]) < 6.0  # about 4 requests/s recorded
    assert stable[5].endswith(" ms")
    status = rollout.rollout_status(fleet.db, "web")
    checks = page.locator("table.checks tbody tr")
    expect(checks.first).to_contain_text("candidate requests")
    text = page.locator("table.checks").inner_text()
    assert f"{status.summary.candidate.requests}" in text and "at least 100" in text
    verdict = page.locator("p .verdict").first.inner_text()
    assert verdict == status.verdict.status
    assert page.locator("svg.chart").count() == 2
    assert "next 50%" in page.locator("main").inner_text()
    history = page.locator("table.history tbody tr")
    expect(history).to_have_count(2)
    assert history.nth(0).locator("td").all_inner_texts()[1:5] == [
        "start", "2", "ann", "new features"
    ]  # fmt: skip
    shot(page, "deployment-canary")


@pytest.mark.parametrize(
    ("name", "says"),
    [("api", "stable route churn/3"), ("mirror", "shadow rollout of churn/3"),
     ("split", "A/B rollout of churn/3 (sticky by header x-user)")],
)  # fmt: skip
def test_a_stable_a_shadow_and_an_ab_deployment_render(
    fleet: Registry, ui_server: UIServer, page: Page, name: str, says: str
) -> None:
    page.goto(f"{ui_server.url}/ui/deployments/{name}")
    expect(page.locator("h1")).to_have_text(f"Deployment {name}")
    expect(page.locator("main")).to_contain_text(says)
    assert (page.locator("form.action").count() == 0) == (name == "api")
    shot(page, f"deployment-{name}")


def test_promote_can_be_reached_with_the_keyboard(
    fleet: Registry, ui_server: UIServer, page: Page
) -> None:
    page.goto(f"{ui_server.url}/ui/deployments/web")
    for _ in range(60):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent")
        if focused == "Promote churn/2":
            break
    else:
        pytest.fail("Tab never reached the promote button")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Promote the candidate of web?")
    assert rollout.get_deployment(fleet.db, "web").state == "rolling"  # not confirmed


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/ui/deployments/nope", 404, "No deployment named &#39;nope&#39;"),
        ("/ui/deployments/nope/live", 404, "No deployment named"),
        ("/ui/deployments/%3Cscript%3Ealert(1)%3C%2Fscript%3E", 404, "Not found"),
        ("/ui/deployments/%3Cscript%3E", 400, "Invalid deployment name &#39;&lt;script&gt;&#39;"),
        ("/ui/deployments/a%22b%27c", 400, "Invalid deployment name"),
        ("/ui/deployments/100%25", 400, "Invalid deployment name"),
        ("/ui/deployments/a%2Fb", 404, "Not found"),
        ("/ui/deployments/" + "x" * 300, 400, "at most 128 characters"),
    ],
)
def test_bad_names_get_a_4xx_page(
    fleet: Registry, ui_server: UIServer, path: str, status: int, says: str
) -> None:
    answer = ui_server.get(path)
    assert answer.status_code == status, answer.text
    assert says in answer.text
    assert "<script>" not in answer.text


def click_through(page: Page, button: str, *, screenshot: str | None = None) -> None:
    """Press ``button`` on the deployment's page, then confirm on the confirmation page."""
    with page.expect_navigation():
        page.get_by_role("button", name=button).click()
    expect(page.locator("h1")).to_contain_text("?")
    if screenshot is not None:
        shot(page, screenshot)
    with page.expect_navigation():
        page.locator("form.confirm button[type=submit]").click()


def test_promote_by_clicking(fleet: Registry, ui_server: UIServer, page: Page) -> None:
    page.goto(f"{ui_server.url}/ui/deployments/promo")
    page.locator("form.action").first.locator("input[name=reason]").fill("looks good")
    click_through(page, "Promote churn/2", screenshot="deployment-confirm-promote")
    expect(page.locator(".notice")).to_contain_text("Promoted churn/2")
    d = rollout.get_deployment(fleet.db, "promo")
    assert (d.state, d.stable_ref, d.candidate_ref) == ("promoted", "churn/2", None)
    event = rollout.history(fleet.db, "promo")[0]
    assert (event.action, event.actor, event.reason) == ("promote", "ui:tester", "looks good")
    first = page.locator("table.history tbody tr").first.locator("td").all_inner_texts()
    assert first[1:5] == ["promote", str(d.revision), "ui:tester", "looks good"]
    shot(page, "deployment-promoted")


def test_abort_by_clicking(fleet: Registry, ui_server: UIServer, page: Page) -> None:
    page.goto(f"{ui_server.url}/ui/deployments/abortme")
    page.locator("form.action").nth(1).locator("input[name=reason]").fill("p99 too high")
    click_through(page, "Abort the rollout")
    expect(page.locator(".notice")).to_contain_text("Aborted the rollout of abortme")
    d = rollout.get_deployment(fleet.db, "abortme")
    assert (d.state, d.stable_ref, d.candidate_ref) == ("rolled_back", "churn/1", None)
    event = rollout.history(fleet.db, "abortme")[0]
    assert (event.action, event.actor, event.reason) == ("abort", "ui:tester", "p99 too high")
    expect(page.locator("table.history tbody tr").first).to_contain_text("ui:tester")


@pytest.mark.allow_console_errors  # the browser logs the 400 itself
def test_abort_without_a_reason_is_refused_before_confirming(
    fleet: Registry, ui_server: UIServer, page: Page
) -> None:
    page.goto(f"{ui_server.url}/ui/deployments/stale")
    with page.expect_navigation():
        page.get_by_role("button", name="Abort the rollout").click()
    expect(page.locator(".error")).to_contain_text("Say why you abort the rollout")
    assert rollout.get_deployment(fleet.db, "stale").state == "rolling"


@pytest.mark.allow_console_errors  # the browser logs the 409 itself
def test_a_page_older_than_the_deployment_gets_409_and_changes_nothing(
    fleet: Registry, ui_server: UIServer, page: Page
) -> None:
    page.goto(f"{ui_server.url}/ui/deployments/stale")
    moved = rollout.set_weight(fleet, "stale", weight=50, actor="controller")  # meanwhile
    before = (rollout.get_deployment(fleet.db, "stale"), rollout.history(fleet.db, "stale"))
    with page.expect_navigation():
        page.get_by_role("button", name="Promote churn/2").click()
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.locator("form.confirm button[type=submit]").click()
    assert answer.value.status == 409
    expect(page.locator(".error")).to_contain_text(
        f"Deployment 'stale' changed since its page was shown (at revision {moved.revision - 1}); "
        "open /ui/deployments/stale again"
    )
    assert (rollout.get_deployment(fleet.db, "stale"), rollout.history(fleet.db, "stale")) == before
    shot(page, "deployment-stale-409")


def sign_in(page: Page, server: UIServer, token: str, target: str) -> None:
    page.goto(f"{server.url}/ui/login?next={target}")
    page.fill("#token", token)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{server.url}{target}"


@pytest.mark.allow_console_errors  # the browser logs the 403 itself
def test_a_read_token_cannot_promote_and_an_admin_token_is_named(
    fleet: Registry, ui_auth_server: UIServer, page: Page
) -> None:
    read, _ = create_token(fleet.db, scope="read", model=None, expires=None, created_by="t",
                           description="viewer")  # fmt: skip
    sign_in(page, ui_auth_server, read, "/ui/deployments/guarded")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Promote churn/2").click()
    assert answer.value.status == 403
    assert rollout.get_deployment(fleet.db, "guarded").state == "rolling"
    page.context.clear_cookies()
    admin, info = create_token(fleet.db, scope="admin", model=None, expires=None, created_by="t",
                               description="oncall")  # fmt: skip
    sign_in(page, ui_auth_server, admin, "/ui/deployments/guarded")
    click_through(page, "Promote churn/2")
    event = rollout.history(fleet.db, "guarded")[0]
    assert (event.action, event.actor) == ("promote", f"token:{info.id} (oncall)")


def test_the_live_table_refreshes_itself(fleet: Registry, ui_server: UIServer, page: Page) -> None:
    answer = ui_server.get("/ui/deployments/web/live")
    assert answer.status_code == 200 and "no-store" in answer.headers["cache-control"]
    assert '<table class="routes">' in answer.text and "<html" not in answer.text
    page.goto(f"{ui_server.url}/ui/deployments/web")
    live = page.locator("#live")
    assert live.get_attribute("data-updated") is None
    page.wait_for_selector("#live[data-updated]", state="attached", timeout=15_000)
    expect(live.locator("table.routes tbody tr")).to_have_count(2)


def test_readme_screenshot(fleet: Registry, ui_server: UIServer, page: Page) -> None:
    """A deployment mid-canary with real recorded traffic; ``MODELYARD_UPDATE_SCREENSHOTS=1``
    also writes the README's copy under docs/."""
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{ui_server.url}/ui/deployments/web")
    expect(page.locator("svg.chart")).to_have_count(2)
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / "ui-deployment.png"
    page.screenshot(path=str(path), full_page=False)
    assert path.stat().st_size > 10_000
    if os.environ.get("MODELYARD_UPDATE_SCREENSHOTS") == "1":
        README_SHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, README_SHOT)
