"""Starting ``yard serve`` as a real process on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
YARD = str(Path(sys.executable).parent / "yard")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    # the checkout's code, whichever checkout the virtual environment was installed from
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env.update(MODELYARD_HOME=str(home), PYTHONPATH=path, OMP_WAIT_POLICY="PASSIVE")
    env.update(extra)
    return env


def wait_ok(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> bool:
    """Poll ``url`` until it answers 200 (``True``) or ``timeout_s`` passes (``False``); a
    process that exits first raises with its log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    return False


class Server:
    """A ``yard serve`` process; ``stop()`` sends SIGTERM and returns the exit code."""

    def __init__(
        self,
        home: Path,
        *args: str,
        env: dict[str, str] | None = None,
        grpc: bool = False,
        port_env: str | None = None,
    ) -> None:
        """``port_env``: give the port in this environment variable (a platform's, such as
        Vertex AI's ``AIP_HTTP_PORT``) instead of ``--port``."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        #: ``host:port`` of the gRPC front door (``grpc=True``), else ``None``.
        self.grpc: str | None = None
        if grpc:
            grpc_port = free_port()
            self.grpc = f"127.0.0.1:{grpc_port}"
            args = (*args, "--grpc-port", str(grpc_port))
        self.log = home / f"server-{self.port}.log"
        self._log_file = self.log.open("w")
        env = env or server_env(home)
        if port_env is None:
            args = (*args, "--port", str(self.port))
        else:
            env = {**env, port_env: str(self.port)}
        self.proc = subprocess.Popen(
            [YARD, "serve", *args],
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = 120) -> Server:
        """Wait until the server answers ready; a server that never does is stopped (not left
        running to load the machine) and its log is shown."""
        if not wait_ok(f"{self.url}/v2/health/ready", self.proc, self.log, timeout_s):
            self.stop()
            raise RuntimeError(f"server not ready in {timeout_s} s: {self.log.read_text()}")
        return self

    def stop(self, timeout_s: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return self.proc.returncode

    def __enter__(self) -> Server:
        return self.wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def bearer(token: str | None) -> dict[str, str]:
    """The ``authorization`` header (or gRPC metadata) of ``token``; none without one."""
    return {"authorization": f"Bearer {token}"} if token else {}
