"""Debian's Prometheus and promtool for the observability tests: found on PATH (``make system``
installs them), or the test skips saying why, except under ``CI=true`` where it fails."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.integration._server import free_port, wait_ok


def find_tool(name: str) -> str:
    found = shutil.which(name)
    if found is not None:
        return found
    reason = (
        f"{name} is not on PATH: the observability tests need Debian's prometheus package; "
        "run 'make system' as root (it runs apt-get install prometheus)"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


class Prometheus:
    """A real Prometheus on a free loopback port scraping ``targets`` every second, with its
    storage in ``folder``; ``rule_files`` are loaded and evaluated every second too."""

    def __init__(self, folder: Path, targets: list[str], rule_files: list[Path]) -> None:
        binary = find_tool("prometheus")
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(f) for f in rule_files],
            "scrape_configs": [{
                "job_name": "modelyard", "scrape_interval": "1s", "scrape_timeout": "1s",
                "static_configs": [{"targets": targets}],
            }],
        }  # fmt: skip
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "prometheus.log"
        self._log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={folder / 'prometheus.yml'}",
             f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self._log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_ready(self, timeout_s: float = 60) -> Prometheus:
        if not wait_ok(f"{self.url}/-/ready", self.proc, self.log, timeout_s):
            self.stop()
            raise RuntimeError(f"prometheus not ready in {timeout_s} s: {self.log.read_text()}")
        return self

    def api(self, path: str, **params: Any) -> Any:
        """``/api/v1/<path>``'s ``data``; a failed query raises with Prometheus' error."""
        r = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = r.json()
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('error', body)}")
        return body["data"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()

    def __enter__(self) -> Prometheus:
        return self.wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()
