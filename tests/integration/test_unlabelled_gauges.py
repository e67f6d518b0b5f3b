"""A logging server's monitoring loop exports what is known before labels on ``/metrics``: the
reconstruction error of the window's inputs with its thresholds, and CBPE's estimates with their
bands, thresholds and alert flags (one child per deployment, metric and bound), checked against
the same computations on the same log."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification

from modelyard.monitoring.labels import ingest_labels
from modelyard.monitoring.multivariate import reconstruction_error
from modelyard.monitoring.unlabelled import estimated_metrics
from modelyard.settings import EstimationSettings
from tests.integration._server import Server, server_env
from tests.integration.conftest import ServedHome
from tests.integration.test_labels import hgb_body

HOUR = timedelta(hours=1)


def gauges(text: str, prefix: str) -> dict[str, float]:
    return {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


def test_the_reconstruction_error_and_estimate_gauges_follow_the_log(
    served_home: ServedHome, tmp_path: Path
) -> None:
    X, y = make_classification(n_samples=2000, n_features=20, random_state=0)  # hgb's data
    log = tmp_path / "log"
    env = server_env(
        served_home.home,
        MODELYARD_MONITORING__LOG_ROOT=str(log),
        MODELYARD_MONITORING__FLUSH_INTERVAL_S="0.2",
        MODELYARD_MONITORING__DRIFT__INTERVAL_S="0.5",
        MODELYARD_MONITORING__ESTIMATION__MIN_REFERENCE_ROWS="100",
    )
    server = Server(served_home.home, "hgb/1", "--log-predictions", env=env).wait_ready()
    found: dict[str, float] = {}
    estimated: dict[str, float] = {}
    text = ""
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            ids = []
            for start in range(0, 400, 20):
                answer = client.post("/v2/models/hgb/infer", json=hgb_body(X[start : start + 20]))
                assert answer.status_code == 200, answer.text
                ids.append(answer.headers["x-request-id"])

            def scrape(ready: Callable[[str], bool]) -> str:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    text = client.get("/metrics").text
                    if ready(text):
                        break
                    time.sleep(0.2)
                return text

            rows = 'modelyard_window_rows{deployment="hgb"} 400.0'
            scrape(lambda text: rows in text and "modelyard_reconstruction_error{" in text)
            # labels for the first 200 rows (CBPE's reference), once the log has them
            labels = pd.DataFrame(
                {"request_id": np.repeat(ids[:10], 20), "row": np.tile(np.arange(20), 10),
                 "label": y[:200]}
            )  # fmt: skip
            ingest_labels(log, "hgb", labels)
            text = scrape(lambda text: len(gauges(text, "modelyard_estimated_performance")) == 35)
            found = gauges(text, "modelyard_reconstruction_")
            estimated = gauges(text, "modelyard_estimated_performance")
    finally:
        assert server.stop() == 0, server.log.read_text()
    assert set(found) == {
        'modelyard_reconstruction_error{deployment="hgb"}',
        'modelyard_reconstruction_threshold{bound="lower",deployment="hgb"}',
        'modelyard_reconstruction_threshold{bound="upper",deployment="hgb"}',
    }, server.log.read_text()
    registry = served_home.registry()
    try:
        now = datetime.now(UTC)
        expected = reconstruction_error(registry, log, "hgb", now=now)
        settings = EstimationSettings(min_reference_rows=100)
        estimates = estimated_metrics(registry, log, "hgb", window=HOUR, now=now, settings=settings)
    finally:
        registry.close()
    # 5 metrics: estimate, 2 band, 2 threshold, alert, and error (half the window has labels)
    assert len(estimated) == 5 * 7, text
    for metric in ("roc_auc", "f1", "precision", "recall", "accuracy"):
        label = f'deployment="hgb",metric="{metric}"'
        assert estimated[f"modelyard_estimated_performance{{{label}}}"] == pytest.approx(
            estimates[f"estimated:{metric}"]
        )
        for bound in ("lower", "upper"):
            band = estimated[f'modelyard_estimated_performance_band{{bound="{bound}",{label}}}']
            assert band == pytest.approx(estimates[f"estimated_{bound}:{metric}"])
            threshold = f'modelyard_estimated_performance_threshold{{bound="{bound}",{label}}}'
            assert estimated[threshold] == pytest.approx(
                estimates[f"estimated_threshold_{bound}:{metric}"]
            )
        error = estimated[f"modelyard_estimated_performance_error{{{label}}}"]
        assert error == pytest.approx(estimates[f"estimated_error:{metric}"])
        alert = estimated[f"modelyard_estimated_performance_alert{{{label}}}"]
        assert alert == estimates[f"estimated_alert:{metric}"] in (0.0, 1.0)
    assert estimates["estimated:accuracy"] > 0.8
    assert found['modelyard_reconstruction_error{deployment="hgb"}'] == pytest.approx(
        expected.windows[0].error
    )
    lower = found['modelyard_reconstruction_threshold{bound="lower",deployment="hgb"}']
    upper = found['modelyard_reconstruction_threshold{bound="upper",deployment="hgb"}']
    assert (lower, upper) == pytest.approx((expected.lower_threshold, expected.upper_threshold))
    assert lower <= expected.windows[0].error <= upper  # the training rows: no alert
