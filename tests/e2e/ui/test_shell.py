"""The dashboard's shell: the front door, sign-in with a token, static files, and what an unknown
path or a missing token gets."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from modelyard.registry import Registry
from modelyard.serving.tokens import create_token
from tests.e2e.ui.conftest import UIServer


def test_front_door_leads_to_the_models(ui_server: UIServer) -> None:
    for path in ("/", "/ui", "/ui/"):
        answer = ui_server.get(path, follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/models"


def test_static_files_are_vendored(ui_server: UIServer) -> None:
    css = ui_server.get("/ui/static/style.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    assert ui_server.get("/ui/static/live.js").status_code == 200
    assert ui_server.get("/ui/static/../app.py").status_code == 404


def test_unknown_path_is_a_plain_404(ui_server: UIServer) -> None:
    answer = ui_server.get("/ui/no-such-page")
    assert answer.status_code == 404
    assert "/ui/models" in answer.text


def test_without_a_token_pages_send_you_to_sign_in(ui_auth_server: UIServer) -> None:
    answer = ui_auth_server.get("/ui/login")
    assert answer.status_code == 200 and 'name="token"' in answer.text
    assert "no-store" in answer.headers["cache-control"]
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]


@pytest.mark.allow_console_errors  # the browser logs the 401 itself
def test_a_bad_token_is_refused_on_the_login_page(ui_auth_server: UIServer, page: Page) -> None:
    page.goto(f"{ui_auth_server.url}/ui/login")
    page.fill("#token", "myd_000000000000_notavalidtokenatallxx")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.locator(".error").inner_text() == "The token is not valid."
    assert all(c["name"] != "yard_ui_token" for c in page.context.cookies())


@pytest.mark.allow_console_errors  # the browser logs the 401 itself
def test_a_predict_token_cannot_sign_in(
    ui_auth_server: UIServer, ui_registry: Registry, page: Page
) -> None:
    text, _ = create_token(
        ui_registry.db, scope="predict", model=None, expires=None, created_by="t"
    )
    page.goto(f"{ui_auth_server.url}/ui/login")
    page.fill("#token", text)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "needs a read or admin token" in page.locator(".error").inner_text()


def test_a_read_token_signs_in_and_returns_to_the_page_asked_for(
    ui_auth_server: UIServer, ui_registry: Registry, page: Page
) -> None:
    text, _ = create_token(
        ui_registry.db, scope="read", model=None, expires=None, created_by="t", description="ops"
    )
    page.goto(f"{ui_auth_server.url}/ui/login?next=/ui/login%3Fagain%3D1")
    page.fill("#token", text)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{ui_auth_server.url}/ui/login?again=1"
    cookie = next(c for c in page.context.cookies() if c["name"] == "yard_ui_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def test_login_never_sends_you_to_another_site(ui_auth_server: UIServer) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/etc/passwd", "javascript:x"):
        answer = ui_auth_server.get("/ui/login", params={"next": target})
        assert 'name="next" value="/ui/models"' in answer.text, target


def test_a_login_post_from_elsewhere_is_refused(ui_auth_server: UIServer) -> None:
    answer = ui_auth_server.post(
        "/ui/login", data={"token": "x", "csrf": "y" * 30},
        headers={"origin": "https://evil.example"}, follow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 401
    assert "did not come from this dashboard" in answer.text
    assert "set-cookie" not in answer.headers or "yard_ui_token" not in answer.headers["set-cookie"]


def test_a_huge_form_is_refused(ui_auth_server: UIServer) -> None:
    answer = ui_auth_server.post(
        "/ui/login", content=b"token=" + b"a" * 200_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert answer.status_code == 401
    assert "larger than 65536 bytes" in answer.text
