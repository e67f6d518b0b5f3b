"""The dashboard under test: a real uvicorn on a loopback port (in a thread of this process, so a
test can prepare the registry it shows) and real headless Chromium.

Fixtures: ``ui_settings`` (a fresh home per module, SQLite), ``ui_registry``, ``ui_server`` (auth
off) and ``ui_auth_server`` (auth on), ``browser`` (one Chromium per module, from
``tests/e2e/conftest.py``) and ``page`` (a new page per test that fails the test on any console
error or uncaught exception). ``shot(page, name)`` saves a screenshot under ``test-artifacts/ui/``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page

from modelyard.registry import Registry
from modelyard.settings import Settings
from modelyard.ui.app import create_app

ROOT = Path(__file__).resolve().parents[3]
SHOTS = ROOT / "test-artifacts" / "ui"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class UIServer:
    """``create_app(settings)`` served by uvicorn on loopback until ``stop()``."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_level="warning",
            lifespan="off",
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the dashboard did not start")
            time.sleep(0.02)

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=30, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", timeout=30, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def make_settings(home: Path, *, auth: bool = False) -> Settings:
    return Settings(
        home=home,
        database_url=f"sqlite:///{home / 'meta.db'}",
        artifact_root=str(home / "artifacts"),
        identity="tester",
        serving={"auth": auth},
        monitoring={"log": True, "log_root": str(home / "predictions")},
    )


@pytest.fixture(scope="module")
def ui_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ui-home")


@pytest.fixture(scope="module")
def ui_settings(ui_home: Path) -> Settings:
    return make_settings(ui_home)


@pytest.fixture(scope="module")
def ui_registry(ui_settings: Settings) -> Iterator[Registry]:
    registry = Registry(ui_settings)
    yield registry
    registry.close()


@pytest.fixture(scope="module")
def ui_server(ui_settings: Settings, ui_registry: Registry) -> Iterator[UIServer]:
    server = UIServer(ui_settings)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ui_auth_server(ui_home: Path, ui_registry: Registry) -> Iterator[UIServer]:
    """The same home with auth on (``yard ui --auth``)."""
    server = UIServer(make_settings(ui_home, auth=True))
    yield server
    server.stop()


@dataclass
class Watched:
    """What a page reported while a test used it."""

    errors: list[str] = field(default_factory=list)


@pytest.fixture
def watched() -> Watched:
    return Watched()


@pytest.fixture
def page(browser: Browser, watched: Watched, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh page (its own cookies); any console error or page exception fails the test,
    unless the test is marked ``allow_console_errors`` (it checks them itself)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.on("console", lambda m: watched.errors.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda error: watched.errors.append(str(error)))
    opened.on("dialog", lambda dialog: (watched.errors.append(dialog.message), dialog.dismiss()))
    yield opened
    context.close()
    if request.node.get_closest_marker("allow_console_errors") is None:
        assert watched.errors == [], watched.errors


def shot(page: Page, name: str) -> Path:
    """A full-page screenshot saved as ``test-artifacts/ui/<name>.png``."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
