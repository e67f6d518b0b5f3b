"""What every dashboard page shares: the state the app holds, rendering, access and actions.

A page is ``@page``: it needs a ``read`` token when auth is on, and a ``ModelyardError`` it raises
becomes an error page with the status the CLI's kind maps to. An action is ``@action``: a POST that
needs an ``admin`` token, comes from this dashboard (the ``Origin`` matches and the form carries
the double-submit CSRF value), and is confirmed on a page of its own before anything changes.
Blocking work (the registry, DuckDB) runs in a thread, never on the event loop.
"""

from __future__ import annotations

import functools
import inspect
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from modelyard.errors import (
    ForbiddenError,
    InvalidInputError,
    ModelyardError,
    UnauthorizedError,
)

if TYPE_CHECKING:
    from modelyard.registry import Registry
    from modelyard.serving.tokens import Scope, TokenChecker, TokenInfo
    from modelyard.settings import Settings

P = ParamSpec("P")
T = TypeVar("T")
Endpoint = Callable[[Request], Awaitable[Response]]

ROOT = "/ui"
TOKEN_COOKIE = "yard_ui_token"
CSRF_COOKIE = "yard_ui_csrf"
CSRF_FIELD = "csrf"
MAX_FORM_BYTES = 64 * 1024
MAX_QUERY_CHARS = 200
STATUS = {
    "not_found": 404,
    "invalid": 400,
    "conflict": 409,
    "unauthorized": 401,
    "forbidden": 403,
    "integrity": 409,
    "config": 400,
}


@dataclass
class UIState:
    """What the app holds for its pages: settings, one registry, the token checker (auth on)
    and caches a page module may keep (each keyed by its module's name)."""

    settings: Settings
    registry: Registry
    tokens: TokenChecker | None
    templates: jinja2.Environment
    caches: dict[str, Any] = field(default_factory=dict)

    @property
    def auth(self) -> bool:
        return self.tokens is not None


def state(request: Request) -> UIState:
    ui: UIState = request.app.state.ui
    return ui


async def blocking(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``fn`` in the thread pool (database reads, DuckDB scans, file hashing)."""
    return await run_in_threadpool(fn, *args, **kwargs)


# -- rendering --------------------------------------------------------------------------------


def url(path: str, **query: object) -> str:
    """``/ui/<path>`` with the query's non-empty values, names and values escaped."""
    clean = {k: v for k, v in query.items() if v is not None and v != ""}
    text = f"{ROOT}/{path.lstrip('/')}" if path else ROOT
    return f"{text}?{urllib.parse.urlencode(clean)}" if clean else text


def quote(part: object) -> str:
    """One path segment (a model or deployment name) escaped for a URL."""
    return urllib.parse.quote(str(part), safe="")


def when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def number(value: object, digits: int = 4) -> str:
    """A metric for a table: integers as they are, floats to ``digits`` significant digits."""
    if value is None:
        return ""
    if isinstance(value, (bool, int)):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("modelyard.ui", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals.update(url=url, quote=quote, root=ROOT, csrf_field=CSRF_FIELD)
    env.filters.update(when=when, number=number)
    return env


def render(
    request: Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> HTMLResponse:
    ui = state(request)
    csrf = request.cookies.get(CSRF_COOKIE) or ""
    fresh = not _valid_csrf(csrf)
    if fresh:
        csrf = secrets.token_urlsafe(24)
    html = ui.templates.get_template(template).render(
        **context, request=request, csrf=csrf, auth=ui.auth, token=_token(request)
    )
    response = HTMLResponse(html, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'"
    )
    if fresh:
        response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict", path=ROOT)
    return response


def fragment(request: Request, template: str, context: Mapping[str, Any]) -> HTMLResponse:
    """A piece of a page that ``static/live.js`` swaps in (live values), not a whole page."""
    ui = state(request)
    html = ui.templates.get_template(template).render(**context, request=request)
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


def error_page(request: Request, exc: ModelyardError) -> Response:
    status = STATUS.get(exc.kind, 500)
    if isinstance(exc, UnauthorizedError) and not _credentials(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(url("login", next=target), status_code=303)
    return render(request, "error.html", {"message": str(exc), "status": status}, status=status)


# -- query parameters -------------------------------------------------------------------------


def page_number(request: Request, name: str = "page") -> int:
    """A 1-based page number from the query (1 when absent); anything else is a 400."""
    text = request.query_params.get(name)
    if text is None or text == "":
        return 1
    if not text.isdigit() or not 1 <= int(text) <= 1_000_000:
        raise InvalidInputError(f"Page {text[:40]!r} is not a page number; use 1, 2, 3, ...")
    return int(text)


def query_text(request: Request, name: str, *, max_chars: int = MAX_QUERY_CHARS) -> str | None:
    """A text query parameter, stripped; empty is ``None``; longer than ``max_chars`` is a 400."""
    text = request.query_params.get(name)
    if text is None or not text.strip():
        return None
    if len(text) > max_chars:
        raise InvalidInputError(f"The {name!r} filter is longer than {max_chars} characters.")
    return text.strip()


# -- access -----------------------------------------------------------------------------------


def _credentials(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        return header
    cookie = request.cookies.get(TOKEN_COOKIE)
    return f"Bearer {cookie}" if cookie else None


def _token(request: Request) -> TokenInfo | None:
    info: TokenInfo | None = getattr(request.state, "token", None)
    return info


async def authorize(request: Request, scope: Scope) -> None:
    """With auth on, the request's token (header or login cookie) may use ``scope``."""
    ui = state(request)
    if ui.tokens is None:
        return
    from modelyard.serving.tokens import permit

    info = await ui.tokens.authenticate(_credentials(request))
    permit(info, scope=scope, model=None)
    request.state.token = info


def actor(request: Request) -> str:
    """Who an action is recorded as: the token (its id and description) or, with auth off,
    the user running the dashboard."""
    info = _token(request)
    if info is None:
        return f"ui:{state(request).registry.identity}"
    return f"token:{info.id}" + (f" ({info.description})" if info.description else "")


def registry_for(request: Request) -> Registry:
    """The app's registry, recording this request's actor in the audit."""
    return state(request).registry.acting_as(actor(request))


def page(fn: Endpoint) -> Endpoint:
    """A GET page: ``read`` access, and domain errors as error pages."""

    @functools.wraps(fn)
    async def endpoint(request: Request) -> Response:
        try:
            await authorize(request, "read")
            return await fn(request)
        except ModelyardError as exc:
            return error_page(request, exc)

    return endpoint


# -- actions ----------------------------------------------------------------------------------


def _valid_csrf(value: str) -> bool:
    return 24 <= len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum()


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form of at most ``MAX_FORM_BYTES``; each field's last value."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_FORM_BYTES):
        raise InvalidInputError(f"The form is larger than {MAX_FORM_BYTES} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise InvalidInputError(f"The form is larger than {MAX_FORM_BYTES} bytes.")
    try:
        pairs = urllib.parse.parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInputError("The form is not a urlencoded form.") from exc
    return dict(pairs)


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return False
    parsed = urllib.parse.urlsplit(origin)
    return parsed.netloc == request.headers.get("host", "")


def check_form(request: Request, form: Mapping[str, str]) -> None:
    """The form came from one of this dashboard's pages (origin and CSRF value)."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not _same_origin(request):
        raise ForbiddenError("The action did not come from this dashboard's pages; reload it.")
    sent = form.get(CSRF_FIELD, "")
    if not _valid_csrf(cookie) or not secrets.compare_digest(cookie, sent):
        raise ForbiddenError("The form has expired or came from elsewhere; reload the page.")


ActionHandler = Callable[[Request, dict[str, str]], Awaitable[Response]]


@dataclass(frozen=True)
class Confirm:
    """What the confirmation page says before an action runs."""

    title: str
    detail: str
    back: str


def action(
    describe: Callable[[Request, dict[str, str]], Confirm | Awaitable[Confirm]],
) -> Callable[[ActionHandler], Endpoint]:
    """A POST action: ``admin`` access, a form from this dashboard, and a confirmation page
    (the form again with ``confirm=yes``) before ``fn`` changes anything. ``describe`` may be a
    coroutine function, to read what the action would do (e.g. a rollback's target)."""

    def wrap(fn: ActionHandler) -> Endpoint:
        @functools.wraps(fn)
        async def endpoint(request: Request) -> Response:
            try:
                await authorize(request, "admin")
                form = await read_form(request)
                check_form(request, form)
                if form.get("confirm") != "yes":
                    fields = {k: v for k, v in form.items() if k not in ("confirm", CSRF_FIELD)}
                    return render(
                        request,
                        "confirm.html",
                        {"confirm": await _described(describe(request, form)), "fields": fields,
                         "target": request.url.path},
                    )  # fmt: skip
                return await fn(request, form)
            except ModelyardError as exc:
                return error_page(request, exc)

        return endpoint

    return wrap


async def _described(confirm: Confirm | Awaitable[Confirm]) -> Confirm:
    return await confirm if inspect.isawaitable(confirm) else confirm


def done(target: str, message: str) -> RedirectResponse:
    """After an action: back to ``target`` with ``message`` shown on it."""
    sep = "&" if "?" in target else "?"
    return RedirectResponse(
        f"{target}{sep}{urllib.parse.urlencode({'done': message[:200]})}", status_code=303
    )
