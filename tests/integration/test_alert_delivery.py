"""Alert notifications are delivered at least once: a ``yard monitor check`` killed (SIGKILL)
while it delivers a firing leaves it pending, and the next ``yard monitor check`` delivers exactly
that firing again, with the same idempotency key, to a real webhook receiver on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from modelyard.registry import Registry
from modelyard.settings import Settings
from modelyard.store.db import Database
from modelyard.store.schema import alert_deliveries, alert_incidents
from tests._logdata import write_log
from tests.integration._server import YARD, server_env


@dataclass
class Post:
    key: str | None
    body: dict[str, Any]


@dataclass
class Receiver:
    """A webhook on a loopback port that records each POST; while ``hold`` is set it does not
    answer (the sender waits, as on a slow network), until ``release`` is set."""

    posts: list[Post] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    seen: threading.Event = field(default_factory=threading.Event)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.posts.append(Post(self.headers.get("Idempotency-Key"), json.loads(body)))
            state.seen.set()
            if state.hold.is_set():
                state.release.wait(60)
            try:
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
            except OSError:  # the sender is gone
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def home(tmp_path: Path, receiver: Receiver) -> tuple[Path, dict[str, str]]:
    from sklearn.dummy import DummyClassifier

    home = tmp_path / "home"
    registry = Registry(Settings(home=home), identity="setup")
    frame = pd.DataFrame({"a": np.arange(20.0)})
    registry.register(DummyClassifier().fit(frame, [0, 1] * 10), name="churn", data=frame)
    registry.close()
    times = [datetime.now(UTC) - timedelta(minutes=m) for m in range(8)]
    write_log(home / "predictions", "churn", frame.head(8), times, model="churn", version="1")
    toml = tmp_path / "modelyard.toml"
    toml.write_text(
        "[monitoring.alerts]\nattempts = 1\ntimeout_s = 60\n"
        '[[monitoring.alerts.rules]]\nname = "busy"\ndeployment = "churn"\nmetric = "rows"\n'
        f'op = ">="\nthreshold = 5\nwindow = "1h"\nwebhooks = ["{receiver.url}"]\n'
    )
    return home, server_env(home, MODELYARD_CONFIG=str(toml))


def _rows(home: Path) -> tuple[list[Any], list[Any]]:
    database = Database(f"sqlite:///{home / 'modelyard.db'}")
    try:
        with database.read() as conn:
            deliveries = conn.execute(sa.select(alert_deliveries)).all()
            incidents = conn.execute(sa.select(alert_incidents)).all()
    finally:
        database.close()
    return deliveries, incidents


def test_a_firing_whose_sender_was_killed_is_delivered_again_with_the_same_key(
    home: tuple[Path, dict[str, str]], receiver: Receiver
) -> None:
    path, env = home
    receiver.hold.set()
    check = subprocess.Popen(
        [YARD, "monitor", "check"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert receiver.seen.wait(120), "the firing was never posted"
        os.kill(check.pid, signal.SIGKILL)  # the firing is recorded, its delivery is not
        assert check.wait(30) == -signal.SIGKILL
    finally:
        if check.poll() is None:
            check.kill()
        check.communicate()
    receiver.hold.clear()
    receiver.release.set()
    [first] = receiver.posts
    assert first.body["status"] == "firing" and first.body["rule"] == "busy"
    assert first.key is not None and first.key == first.body["idempotency_key"]

    [pending], [incident] = _rows(path)
    assert (pending.delivered_at, pending.key, pending.status) == (None, first.key, "firing")
    assert incident.notified is False and incident.resolved_at is None

    # a restart delivers exactly the pending firing, with the same key, and records it
    again = subprocess.run(
        [YARD, "monitor", "check"], env=env, capture_output=True, text=True, timeout=180,
        check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert [p.key for p in receiver.posts] == [first.key, first.key]
    assert receiver.posts[1].body == first.body
    [delivered], [incident] = _rows(path)
    assert delivered.delivered_at is not None and delivered.attempts == 1
    assert incident.notified is True

    # delivered: later rounds send nothing more (the incident still fires, quietly)
    third = subprocess.run(
        [YARD, "monitor", "check", "--json"], env=env, capture_output=True, text=True,
        timeout=180, check=False,
    )  # fmt: skip
    assert third.returncode == 0, third.stderr
    [outcome] = json.loads(third.stdout)
    assert (outcome["state"], outcome["event"]) == ("firing", None)
    assert len(receiver.posts) == 2
