"""The registry pages from real processes: ``yard serve --ui`` answers the dashboard and the
model server on one port, and ``yard ui --port`` serves the dashboard on its own."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from modelyard.registry import Registry
from tests.integration._server import YARD, Server, free_port, server_env, wait_ok


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry home (the layout ``MODELYARD_HOME`` gives) holding churn/1 at production."""
    home = tmp_path_factory.mktemp("serve-ui")
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(100, 3)), columns=["a", "b", "c"])
    registry = Registry(
        database_url=f"sqlite:///{home / 'modelyard.db'}", artifact_root=str(home / "artifacts")
    )
    registry.register(LogisticRegression().fit(X, X["a"] > 0), name="churn", data=X)
    registry.set_alias("churn/1", "production")
    registry.close()
    return home


@pytest.mark.slow
def test_yard_serve_ui_answers_the_dashboard_and_the_model_on_one_port(home: Path) -> None:
    with Server(home, "churn@production", "--ui") as server:
        models = httpx.get(f"{server.url}/ui/models", timeout=30)
        assert models.status_code == 200
        assert 'href="/ui/models/churn"' in models.text and "production → 1" in models.text
        version = httpx.get(f"{server.url}/ui/models/churn/versions/1", timeout=30)
        assert version.status_code == 200 and "churn version 1" in version.text
        assert httpx.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200
        answer = httpx.post(
            f"{server.url}/v2/models/churn/infer",
            json={"inputs": [{"name": n, "shape": [1], "datatype": "FP64", "data": [0.5]}
                             for n in ("a", "b", "c")]},
            timeout=30,
        )  # fmt: skip
        assert answer.status_code == 200, answer.text


@pytest.fixture
def yard_ui(home: Path) -> Iterator[str]:
    port = free_port()
    log = home / f"ui-{port}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [YARD, "ui", "--port", str(port)], env=server_env(home), stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            assert wait_ok(f"{url}/ui/models", proc, log, 60), log.read_text()
            yield url
        finally:
            proc.terminate()
            proc.wait(30)
    assert f"dashboard at http://127.0.0.1:{port}/ui/models" in log.read_text()


@pytest.mark.slow
def test_yard_ui_serves_the_models_on_its_port(yard_ui: str) -> None:
    models = httpx.get(f"{yard_ui}/ui/models", timeout=30)
    assert models.status_code == 200 and 'href="/ui/models/churn"' in models.text
    assert httpx.get(f"{yard_ui}/ui/models/churn/versions/2", timeout=30).status_code == 404
