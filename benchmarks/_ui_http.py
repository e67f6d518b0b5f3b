"""Servers in subprocesses and a client that times them, for ``benchmarks/ui.py``."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

#: The dashboard in its own process: ``create_app`` over the seeded home, one uvicorn worker.
DASHBOARD = r"""
import sys
sys.path.insert(0, sys.argv[3])
import uvicorn
import _ui_seed
from pathlib import Path
from modelyard.ui.app import create_app
app = create_app(_ui_seed.settings_for(Path(sys.argv[1])))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(command: list[str], core: int | None) -> list[str]:
    """``command`` under ``taskset -c core`` when taskset exists and ``core`` is given."""
    if core is None or shutil.which("taskset") is None:
        return command
    return ["taskset", "-c", str(core), *command]


@contextlib.contextmanager
def serving(
    command: list[str], ready_url: str, *, env: dict[str, str] | None = None, log: Path,
    timeout_s: float = 120,
) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    """Start ``command``, wait until ``ready_url`` answers (any status), stop it on exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
            start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{command[0]} exited {process.returncode}; see {log}")
                try:
                    httpx.get(ready_url, timeout=2)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{ready_url} not up after {timeout_s} s") from None
                    time.sleep(0.2)
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def dashboard_command(home: Path, port: int, core: int | None) -> list[str]:
    here = str(Path(__file__).resolve().parent)
    return pinned([sys.executable, "-c", DASHBOARD, str(home), str(port), here], core)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q) - 1]


def time_get(
    client: httpx.Client, url: str, *, warmup: int, fetches: int, params: dict[str, Any] | None
) -> dict[str, Any]:
    """Warm-up fetches (the first one timed alone: caches filling), then ``fetches`` timed ones
    (client-observed, milliseconds). A first answer other than 200 is returned untimed."""
    started = time.perf_counter()
    first = client.get(url, params=params)
    first_ms = (time.perf_counter() - started) * 1000
    if first.status_code != 200:
        return {"status": first.status_code, "body": first.text[:200]}
    # A monitoring page computes its numbers in the background and answers "computing" (with a
    # Refresh header) until they are ready: that wait is reported as ready_ms, not timed below.
    ready = first
    while "refresh" in ready.headers and time.perf_counter() - started < 300:
        time.sleep(0.2)
        ready = client.get(url, params=params)
    ready_ms = (time.perf_counter() - started) * 1000
    for _ in range(max(0, warmup - 1)):
        client.get(url, params=params)
    times = []
    size = computing = 0
    for _ in range(fetches):
        started = time.perf_counter()
        response = client.get(url, params=params)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            return {"status": response.status_code, "body": response.text[:200]}
        computing += "refresh" in response.headers
        size = len(response.content)
    return {
        "status": 200, "n": fetches, "bytes": size, "first_ms": first_ms, "ready_ms": ready_ms,
        "computing": computing,
        "p50_ms": percentile(times, 50), "p95_ms": percentile(times, 95), "max_ms": max(times),
    }  # fmt: skip
