"""The demo's last step: ``yard ui`` on the demo's home, its main pages fetched and their titles
printed. With ``DEMO_KEEP_UI=1`` (``make demo DEMO_KEEP_UI=1``) the dashboard stays up until
Ctrl-C; otherwise the demo prints the command that opens it again."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

PAGES = (
    "/ui/models",
    "/ui/models/cancer",
    "/ui/models/cancer/versions/2",
    "/ui/models/cancer/compare?a=1&b=2",
    "/ui/deployments",
    "/ui/deployments/cancer-api",
    "/ui/monitoring",
    "/ui/monitoring/churn?window=24h",
    "/ui/runs",
    "/ui/pipelines",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ui_demo(home: Path) -> None:
    import httpx

    port = int(os.environ.get("DEMO_UI_PORT") or free_port())
    url = f"http://127.0.0.1:{port}"
    print(f"\n== the dashboard: yard ui on {url}/ui/models", flush=True)
    log = open(home / "ui.log", "w")  # noqa: SIM115 - closed below
    ui = subprocess.Popen(
        [str(Path(sys.executable).parent / "yard"), "ui", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/ui/login", timeout=1)
                break
            except httpx.TransportError:
                if ui.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"yard ui did not start: {Path(log.name).read_text()}"
                    ) from None
                time.sleep(0.1)
        for path in PAGES:
            started = time.perf_counter()
            page = httpx.get(f"{url}{path}", timeout=30)
            while "refresh" in page.headers and time.perf_counter() - started < 120:
                time.sleep(0.5)  # monitoring numbers are computed in the background first
                page = httpx.get(f"{url}{path}", timeout=30)
            took = (time.perf_counter() - started) * 1000
            title = re.search(r"<title>(.*?)</title>", page.text, re.S)
            shown = title[1].strip() if title else ""
            print(f"GET {path} -> {page.status_code} in {took:.0f} ms: {shown}", flush=True)
            if page.status_code != 200:
                raise SystemExit(f"{path} answered {page.status_code}: {page.text[:300]}")
        if os.environ.get("DEMO_KEEP_UI") == "1":
            print(f"the dashboard is at {url}/ui/models until Ctrl-C", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                ui.wait()
        else:
            yard = os.path.relpath(Path(sys.executable).parent / "yard")
            print(
                f"open it again with: MODELYARD_HOME={os.path.relpath(home)} {yard} ui, then "
                "http://127.0.0.1:8090/ui/models (make demo DEMO_KEEP_UI=1 keeps this one up)"
            )
    finally:
        ui.terminate()
        ui.wait(timeout=10)
        log.close()
