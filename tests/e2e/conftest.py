"""What the browser tests share: Debian's Chromium, found on PATH (or a skip, or under CI a
failure, that says how to install it), launched headless once per test module."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def find_chromium() -> str:
    """The ``chromium`` on PATH; without one the browser tests skip, saying why, except under
    ``CI=true`` where they fail (CI must run them)."""
    found = shutil.which("chromium")
    if found is not None:
        return found
    reason = (
        "chromium is not on PATH: the browser tests (report, dashboard) need Debian's Chromium; "
        "run 'make system' as root (it runs apt-get install chromium)"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = find_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
        yield browser
        browser.close()
