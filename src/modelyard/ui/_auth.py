"""Signing in to the dashboard when auth is on: a token (``read`` or ``admin``) given once on the
login page is kept in an HttpOnly, SameSite=Strict cookie; ``Authorization: Bearer`` works too."""

from __future__ import annotations

import urllib.parse

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from modelyard.errors import ModelyardError
from modelyard.ui._base import (
    ROOT,
    TOKEN_COOKIE,
    check_form,
    read_form,
    render,
    state,
    url,
)


def _next(value: str | None) -> str:
    """Where to go after signing in: a path on this dashboard only (never another site)."""
    if not value or not value.startswith(f"{ROOT}/") or value.startswith("//"):
        return url("models")
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme or parsed.netloc:
        return url("models")
    return value


async def login(request: Request) -> Response:
    target = _next(request.query_params.get("next"))
    if request.method == "GET":
        return render(request, "login.html", {"next": target, "message": None})
    try:
        form = await read_form(request)
        check_form(request, form)
        token = form.get("token", "").strip()
        ui = state(request)
        if ui.tokens is not None:
            from modelyard.serving.tokens import permit

            info = await ui.tokens.authenticate(f"Bearer {token}")
            permit(info, scope="read", model=None)
    except ModelyardError as exc:
        return render(request, "login.html", {"next": target, "message": str(exc)}, status=401)
    response = RedirectResponse(_next(form.get("next")), status_code=303)
    if ui.tokens is not None:
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path=ROOT)
    return response


async def logout(request: Request) -> Response:
    response = RedirectResponse(url("login"), status_code=303)
    response.delete_cookie(TOKEN_COOKIE, path=ROOT)
    return response


ROUTES = [
    Route(f"{ROOT}/login", login, methods=["GET", "POST"]),
    Route(f"{ROOT}/logout", logout, methods=["POST"]),
]
