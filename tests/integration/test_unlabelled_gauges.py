"""A logging server's monitoring loop exports what is known before labels on ``/metrics``: the
reconstruction error of the window's inputs with its thresholds (one child per deployment, and
per bound), checked against the same computation on the same log."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sklearn.datasets import make_classification

from modelyard.monitoring.multivariate import reconstruction_error
from tests.integration._server import Server, server_env
from tests.integration.conftest import ServedHome
from tests.integration.test_labels import hgb_body


def gauges(text: str, prefix: str) -> dict[str, float]:
    return {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


def test_the_reconstruction_error_gauges_follow_the_log(
    served_home: ServedHome, tmp_path: Path
) -> None:
    X, _ = make_classification(n_samples=2000, n_features=20, random_state=0)  # hgb's data
    log = tmp_path / "log"
    env = server_env(
        served_home.home,
        MODELYARD_MONITORING__LOG_ROOT=str(log),
        MODELYARD_MONITORING__FLUSH_INTERVAL_S="0.2",
        MODELYARD_MONITORING__DRIFT__INTERVAL_S="0.5",
    )
    server = Server(served_home.home, "hgb/1", "--log-predictions", env=env).wait_ready()
    found: dict[str, float] = {}
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for start in range(0, 400, 20):
                answer = client.post("/v2/models/hgb/infer", json=hgb_body(X[start : start + 20]))
                assert answer.status_code == 200, answer.text
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                text = client.get("/metrics").text
                rows = gauges(text, "modelyard_window_rows{")
                found = gauges(text, "modelyard_reconstruction_")
                if rows.get('modelyard_window_rows{deployment="hgb"}') == 400.0 and found:
                    break
                time.sleep(0.2)
    finally:
        assert server.stop() == 0, server.log.read_text()
    assert set(found) == {
        'modelyard_reconstruction_error{deployment="hgb"}',
        'modelyard_reconstruction_threshold{bound="lower",deployment="hgb"}',
        'modelyard_reconstruction_threshold{bound="upper",deployment="hgb"}',
    }, server.log.read_text()
    registry = served_home.registry()
    try:
        expected = reconstruction_error(registry, log, "hgb", now=datetime.now(UTC))
    finally:
        registry.close()
    assert found['modelyard_reconstruction_error{deployment="hgb"}'] == pytest.approx(
        expected.windows[0].error
    )
    lower = found['modelyard_reconstruction_threshold{bound="lower",deployment="hgb"}']
    upper = found['modelyard_reconstruction_threshold{bound="upper",deployment="hgb"}']
    assert (lower, upper) == pytest.approx((expected.lower_threshold, expected.upper_threshold))
    assert lower <= expected.windows[0].error <= upper  # the training rows: no alert
