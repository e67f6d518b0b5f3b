"""The registry's pages in Chromium: the models, a model, two versions compared and a version
render with no console error; bad input gets a 4xx page with one line; a rollback and a verify
done by clicking; tokens, CSRF and origin checks on the rollback; keyboard-only navigation."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import Page
from sklearn.linear_model import LogisticRegression

from modelyard.registry import Registry
from modelyard.serving.tokens import create_token
from tests.e2e.ui.conftest import UIServer, shot

# registering the module's models (an ONNX conversion among them) takes several seconds
pytestmark = pytest.mark.slow

ERROR = re.compile(r'<p class="error" role="alert">(.*?)</p>', re.S)


@dataclass(frozen=True)
class Models:
    """What the module registered: churn 1-3 (3 with an ONNX twin, production 1 -> 2), fraud 1,
    rollme 1-2 (production 1 -> 2, staging 1 -> 2, for the rollback tests), tampered 1."""

    churn: str = "churn"


def _frame(seed: int, rows: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(rows, 3)), columns=["age", "spend", "visits"])


def _fit(data: pd.DataFrame, c: float = 1.0) -> LogisticRegression:
    return LogisticRegression(C=c).fit(data, data["age"] > 0)


@pytest.fixture(scope="module")
def models(ui_registry: Registry) -> Models:
    data = _frame(0)
    for i in range(3):
        ui_registry.register(
            _fit(data, 1.0 + i), name="churn", data=data if i < 2 else data * 1.5,
            metrics={"auc": 0.8 + i / 50, "f1": 0.6}, params={"C": str(1.0 + i)},
            tags={"team": "risk"}, convert="onnx" if i == 2 else None,
        )  # fmt: skip
    ui_registry.set_alias("churn/1", "production")
    ui_registry.set_alias("churn/2", "production", reason="better auc")
    ui_registry.register(_fit(_frame(1), 0.5), name="fraud", data=_frame(1), tags={"team": "ops"})
    for c in (0.2, 0.3):
        ui_registry.register(_fit(_frame(2), c), name="rollme", data=_frame(2))
    for alias in ("production", "staging"):
        ui_registry.set_alias("rollme/1", alias)
        ui_registry.set_alias("rollme/2", alias)
    ui_registry.register(_fit(_frame(3), 0.7), name="tampered", data=_frame(3))
    return Models()


def _error(text: str) -> str:
    found = ERROR.findall(text)
    assert len(found) == 1, text
    return html.unescape(found[0])


def test_every_page_renders_in_chromium(ui_server: UIServer, models: Models, page: Page) -> None:
    pages = [
        ("/ui/models", "Models", "registry-models"),
        ("/ui/models?q=URN&tag=team%3Drisk&flavor=sklearn", "Models", "registry-models-filtered"),
        ("/ui/models/churn", "churn", "registry-model"),
        ("/ui/models/churn/compare?a=1&b=3", "churn: version 1 vs 3", "registry-compare"),
        ("/ui/models/churn/compare?a=1&b=2", "churn: version 1 vs 2", "registry-compare-bins"),
        ("/ui/models/churn/versions/3", "churn version 3", "registry-version"),
    ]
    for path, title, name in pages:
        answer = page.goto(f"{ui_server.url}{path}")
        assert answer is not None and answer.status == 200, path
        assert page.locator("h1").inner_text() == title
        shot(page, name)
    page.goto(f"{ui_server.url}/ui/models?q=urn")
    assert page.locator("table.models a.model-link").all_inner_texts() == ["churn"]


def test_the_pages_show_what_the_registry_holds(ui_server: UIServer, models: Models) -> None:
    listed = ui_server.get("/ui/models").text
    assert "production → 2" in listed and "team=risk" in listed and "sklearn" in listed
    model = ui_server.get("/ui/models/churn").text
    assert '<th class="num">auc</th>' in model and '<th class="num">f1</th>' in model
    assert "better auc" in model and 'value="production"' in model
    compare = ui_server.get("/ui/models/churn/compare?a=1&b=3").text
    assert "differs" in compare and "<th>Version 1</th><th>Version 3</th>" in compare
    assert "the versions bin this column differently" in compare  # 3 was trained on data * 1.5
    assert compare.count('class="chart bars"') == 6  # then each version's histogram apart
    same = ui_server.get("/ui/models/churn/compare?a=1&b=2").text
    assert same.count('class="chart bars"') == 3  # the same data: one chart per column
    version = ui_server.get("/ui/models/churn/versions/3").text
    assert "passed the parity check" in version and "onnx/model.onnx" in version
    assert version.count('class="chart bars"') == 3 and "120 rows profiled" in version


BAD = [
    ("/ui/models/nope", 404, "No model named 'nope'"),
    ("/ui/models/%3Cscript%3E", 400, "Invalid model name '<script>'"),
    ("/ui/models/a%22b'c", 400, "Invalid model name"),
    ("/ui/models/churn/versions/9", 404, "has no version 9 (latest is 3)"),
    ("/ui/models/churn/versions/x", 400, "Version 'x' of 'churn' is not a version number"),
    ("/ui/models/churn/versions/0", 400, "is not a version number"),
    ("/ui/models/churn/versions/99999999999", 400, "is not a version number"),
    ("/ui/models/nope/versions/1", 404, "No model named 'nope'"),
    ("/ui/models?page=0", 400, "is not a page number"),
    ("/ui/models?page=x", 400, "Page 'x' is not a page number"),
    ("/ui/models?page=7", 404, "Page 7 is past the last page (1) of the models"),
    ("/ui/models/churn?page=3", 404, "past the last page (1) of the versions of 'churn'"),
    ("/ui/models?q=" + "x" * 201, 400, "longer than 200 characters"),
    ("/ui/models?alias=%3Cb%3E", 400, "Invalid alias '<b>'"),
    ("/ui/models/churn/compare?a=1", 400, "Version b of 'churn' is missing"),
    ("/ui/models/churn/compare?a=1&b=%27", 400, "Version b \"'\" of 'churn' is not"),
    ("/ui/models/churn/compare?a=1&b=8", 404, "has no version 8"),
]


@pytest.mark.parametrize(("path", "status", "message"), BAD)
def test_bad_input_gets_a_one_line_4xx_page(
    ui_server: UIServer, models: Models, path: str, status: int, message: str
) -> None:
    answer = ui_server.get(path)
    assert answer.status_code == status, answer.text
    line = _error(answer.text)
    assert message in line and "\n" not in line
    assert "<script>" not in answer.text and "<b>" not in answer.text


def test_slashes_in_a_name_are_no_route(ui_server: UIServer, models: Models) -> None:
    for path in ("/ui/models/churn%2F1", "/ui/models/%3Cscript%3Ex%3C%2Fscript%3E"):
        answer = ui_server.get(path)
        assert answer.status_code == 404
        assert answer.text == "Not found; the dashboard starts at /ui/models."


def _sign_in(page: Page, server: UIServer, token: str, target: str) -> None:
    page.goto(f"{server.url}/ui/login?next={target}")
    page.fill("#token", token)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{server.url}{target}"


def test_a_rollback_by_clicking_moves_the_alias_under_the_token(
    ui_auth_server: UIServer, ui_registry: Registry, models: Models, page: Page
) -> None:
    text, info = create_token(ui_registry.db, scope="admin", model=None, expires=None,
                              created_by="t", description="ops admin")  # fmt: skip
    _sign_in(page, ui_auth_server, text, "/ui/models/rollme")
    row = page.locator("table.aliases tr", has_text="production")
    row.locator("input[name=reason]").fill("canary alert")
    with page.expect_navigation():
        row.locator("button", has_text="Roll back production").click()
    assert page.locator("h1").inner_text() == "Roll back rollme@production?"
    assert "moves from version 2 back to version 1" in page.locator("main p").first.inner_text()
    shot(page, "registry-rollback-confirm")
    assert ui_registry.get_model("rollme").aliases["production"] == 2  # nothing yet
    with page.expect_navigation():
        page.click("button.danger")
    assert page.locator(".notice").inner_text() == (
        "rollme@production moved back to version 1 (from version 2)."
    )
    shot(page, "registry-rollback-done")
    assert ui_registry.get_model("rollme").aliases["production"] == 1
    last = ui_registry.history("rollme", alias="production")[0]
    assert last.actor == f"token:{info.id} (ops admin)"
    assert last.reason == "rollback from version 2: canary alert"
    assert "canary alert" in page.locator("table.timeline").inner_text()


def _form_post(
    server: UIServer,
    token: str | None,
    *,
    csrf: str | None,
    origin: str | None,
    path: str = "/ui/models/rollme/rollback",
    alias: str = "staging",
) -> tuple[int, str]:
    cookie = "c" * 32
    data = {"alias": alias, "confirm": "yes"}
    if csrf is not None:
        data["csrf"] = csrf
    headers = {"authorization": f"Bearer {token}"} if token else {}
    if origin is not None:
        headers["origin"] = origin
    answer = server.post(path, data=data, headers=headers, cookies={"yard_ui_csrf": cookie},
                         follow_redirects=False)  # fmt: skip
    return answer.status_code, answer.text


def test_read_tokens_forged_forms_and_other_origins_change_nothing(
    ui_auth_server: UIServer, ui_registry: Registry, models: Models
) -> None:
    admin, _ = create_token(ui_registry.db, scope="admin", model=None, expires=None,
                            created_by="t")  # fmt: skip
    reader, _ = create_token(ui_registry.db, scope="read", model=None, expires=None,
                             created_by="t")  # fmt: skip
    before = ui_registry.history("rollme", alias="staging")
    own = ui_auth_server.url
    cases = [
        (reader, "c" * 32, own, "needs"),
        (admin, None, own, "The form has expired or came from elsewhere"),
        (admin, "d" * 32, own, "The form has expired or came from elsewhere"),
        (admin, "c" * 32, "https://evil.example", "did not come from this dashboard"),
        (admin, "c" * 32, None, "did not come from this dashboard"),
    ]
    for token, csrf, origin, message in cases:
        status, text = _form_post(ui_auth_server, token, csrf=csrf, origin=origin)
        assert status == 403, (csrf, origin, text)
        assert message in _error(text)
    assert ui_registry.history("rollme", alias="staging") == before
    assert ui_registry.get_model("rollme").aliases["staging"] == 2
    status, _ = _form_post(ui_auth_server, admin, csrf="c" * 32, origin=own)
    assert status == 303  # the same form, sent properly, works
    assert ui_registry.get_model("rollme").aliases["staging"] == 1


def test_a_rollback_with_nothing_to_undo_or_a_bad_alias_says_so(
    ui_server: UIServer, ui_registry: Registry, models: Models
) -> None:
    ui_registry.set_alias("fraud/1", "production")
    before = ui_registry.history("fraud")
    cases = [
        ("/ui/models/fraud/rollback", "production", 409, "has no earlier version to roll back to"),
        ("/ui/models/fraud/rollback", "<script>", 400, "Invalid alias '<script>'"),
        ("/ui/models/fraud/rollback", "champion", 404, "has no alias 'champion'"),
        ("/ui/models/nope/rollback", "production", 404, "No model named 'nope'"),
        ("/ui/models/a%22b/rollback", "production", 400, "Invalid model name"),
    ]
    for path, alias, status, message in cases:
        code, text = _form_post(ui_server, None, csrf="c" * 32, origin=ui_server.url, path=path,
                                alias=alias)  # fmt: skip
        assert code == status, text
        assert message in _error(text) and "<script>" not in text
    assert ui_registry.history("fraud") == before


def test_verify_by_clicking_reports_each_file(
    ui_server: UIServer, ui_registry: Registry, models: Models, page: Page
) -> None:
    page.goto(f"{ui_server.url}/ui/models/churn/versions/3")
    with page.expect_navigation():
        page.click("button:has-text('Verify files')")
    with page.expect_navigation():
        page.click("button.danger")
    checks = page.locator("td.check").all_inner_texts()
    assert checks and set(checks) == {"ok"}
    assert (
        page.locator("p[role=status]").inner_text()
        == f"{len(checks)} of {len(checks)} files verified."
    )
    shot(page, "registry-verify")
    latest = ui_registry.checks("churn/3")[0]
    assert (latest.actor, latest.ok) == ("ui:tester", True)  # audited under who clicked
    assert "ui:tester" in page.locator("table.verified").inner_text()
    for role in ("model", "profile"):
        stored = ui_registry.get_version("tampered/1").file(role)
        assert stored is not None
        Path(ui_registry.artifacts.path_of(stored.sha256)).write_bytes(b"altered")
    page.goto(f"{ui_server.url}/ui/models/tampered/versions/1")
    assert "profile.json" in page.locator("p.bad").inner_text()  # the page still shows
    with page.expect_navigation():
        page.click("button:has-text('Verify files')")
    with page.expect_navigation():
        page.click("button.danger")
    for name in ("model.skops", "profile.json"):
        row = page.locator("table.files tr", has_text=name)
        assert row.locator("td.check").inner_text().startswith("failed")
    assert page.locator("table.files tr", has_text="reference_sample").locator(
        "td.check").inner_text() == "ok"  # fmt: skip
    shot(page, "registry-verify-failed")
    assert page.locator("p[role=status].bad").is_visible()


def _tab_to(page: Page, selector: str, text: str, limit: int = 60) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "s => { const e = document.activeElement;"
            " return e && e.matches(s) ? e.textContent.trim() : null; }",
            selector,
        )
        if focused == text:
            return
    raise AssertionError(f"Tab never reached {selector} {text!r}")


def test_keyboard_only_reaches_a_model_and_a_version(
    ui_server: UIServer, models: Models, page: Page
) -> None:
    page.goto(f"{ui_server.url}/ui/models")
    _tab_to(page, "a.model-link", "churn")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{ui_server.url}/ui/models/churn"
    _tab_to(page, "a.version-link", "2")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{ui_server.url}/ui/models/churn/versions/2"
    assert page.locator("h1").inner_text() == "churn version 2"
