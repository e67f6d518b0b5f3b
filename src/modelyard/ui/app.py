"""The dashboard's ASGI application: every page module's routes under ``/ui``, and the vendored
static files. It needs no lifespan, so ``yard serve --ui`` can put it in front of the model server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from modelyard.ui import _auth, deployment_pages, monitoring_pages, registry_pages, run_pages
from modelyard.ui._base import ROOT, UIState, environment

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from modelyard.registry import Registry
    from modelyard.settings import Settings

STATIC = Path(__file__).parent / "static"


def routes() -> list[BaseRoute]:
    """Every page's route; a page module adds its ``ROUTES`` here."""
    return [
        Route("/", _home),
        Route(ROOT, _home),
        Route(f"{ROOT}/", _home),
        Mount(f"{ROOT}/static", StaticFiles(directory=STATIC), name="static"),
        *_auth.ROUTES,
        *deployment_pages.ROUTES,
        *registry_pages.ROUTES,
        *run_pages.ROUTES,
        *monitoring_pages.ROUTES,
    ]


async def _home(request: Request) -> Response:
    return RedirectResponse(f"{ROOT}/models", status_code=303)


async def _not_found(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("Not found; the dashboard starts at /ui/models.", status_code=404)


def create_app(settings: Settings, *, registry: Registry | None = None) -> Starlette:
    """The dashboard for ``settings`` (auth on when ``settings.serving.auth`` is)."""
    from modelyard.registry import Registry
    from modelyard.serving.tokens import TokenChecker

    registry = registry if registry is not None else Registry(settings)
    tokens = TokenChecker(registry.db) if settings.serving.auth else None
    app = Starlette(routes=routes(), exception_handlers={404: _not_found})
    app.state.ui = UIState(settings, registry, tokens, environment())
    return app


class WithDashboard:
    """``yard serve --ui``: paths under ``/ui`` go to the dashboard, everything else (and the
    lifespan) to the model server."""

    def __init__(self, server: ASGIApp, dashboard: ASGIApp) -> None:
        self.server = server
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] in ("http", "websocket") else ""
        if path == ROOT or path.startswith(f"{ROOT}/"):
            await self.dashboard(scope, receive, send)
        else:
            await self.server(scope, receive, send)


SERVED_FACTORY = "modelyard.ui.app:served_from_env"


def with_dashboard(settings: Settings) -> Callable[[ASGIApp], ASGIApp]:
    """``yard serve --ui`` in one process: the model server with the dashboard in front."""

    def wrap(server: ASGIApp) -> ASGIApp:
        return WithDashboard(server, create_app(settings))

    return wrap


def served_from_env() -> ASGIApp:
    """uvicorn's factory for ``yard serve --ui --workers N``: each worker's server and dashboard."""
    from modelyard.serving.server import SPEC_ENV, app_from_env
    from modelyard.settings import Settings

    spec = json.loads(os.environ[SPEC_ENV])
    return WithDashboard(app_from_env(), create_app(Settings.model_validate(spec["settings"])))
