"""CBPE on a real logged deployment: a served classifier's predictions logged by the server,
labels posted for the first half only, then the inputs move toward the decision boundary. The
estimate of the labelled windows matches their realised accuracy; the unlabelled shifted windows
alert before any label arrives."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
from sklearn.datasets import make_classification

from modelyard.monitoring.estimated import estimate_performance
from modelyard.settings import EstimationSettings
from tests.integration._server import Server, server_env
from tests.integration.conftest import ServedHome
from tests.integration.test_labels import hgb_body


def test_estimates_on_a_served_deployment_alert_before_labels(
    served_home: ServedHome, tmp_path: Path
) -> None:
    X, y = make_classification(n_samples=2000, n_features=20, random_state=0)  # hgb's data
    rows = np.vstack([X[:1000], 0.2 * X[1000:]])  # the second half crowds toward the boundary
    log = tmp_path / "log"
    env = server_env(served_home.home, MODELYARD_MONITORING__LOG_ROOT=str(log))
    server = Server(served_home.home, "hgb/2", "--log-predictions", env=env)  # the scaled logreg
    server.wait_ready()
    predicted = np.zeros(len(rows), dtype=np.int64)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for k in range(0, len(rows), 100):
                headers = {"X-Request-Id": f"r{k}"}
                answer = client.post(
                    "/v2/models/hgb/infer", json=hgb_body(rows[k : k + 100]), headers=headers
                )
                assert answer.status_code == 200, answer.text
                outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
                predicted[k : k + 100] = outputs["predict"]
            labels = [
                {"request_id": f"r{k}", "row": j, "label": int(y[k + j])}
                for k in range(0, 1000, 100)
                for j in range(100)
            ]
            posted = client.post("/v1/labels", json={"deployment": "hgb", "labels": labels})
            assert posted.status_code == 202, posted.text
    finally:
        assert server.stop() == 0, server.log.read_text()

    registry = served_home.registry()
    try:
        settings = EstimationSettings(reference_rows=1000, min_reference_rows=500)
        found = estimate_performance(log, "hgb", chunk=250, registry=registry, settings=settings)
    finally:
        registry.close()
    assert (found.model, found.version, found.classes) == ("hgb", "2", (0, 1))
    assert found.reference == "log" and found.reference_rows == 1000
    assert [w.rows for w in found.windows] == [250] * 8
    assert [w.labelled for w in found.windows] == [250] * 4 + [0] * 4
    for window in found.windows[:4]:
        accuracy = window.metrics["accuracy"]
        realized = (predicted[window.first_row : window.first_row + 250] ==
                    y[window.first_row : window.first_row + 250]).mean()  # fmt: skip
        assert accuracy.realized is not None and abs(accuracy.realized - realized) < 1e-12
        assert accuracy.error is not None and accuracy.sampling_error is not None
        assert abs(accuracy.error) < 3 * accuracy.sampling_error + 0.02
        assert not accuracy.alert
    for window in found.windows[4:]:
        accuracy = window.metrics["accuracy"]
        assert accuracy.realized is None
        assert accuracy.alert, accuracy
        assert accuracy.value is not None and accuracy.lower_threshold is not None
        assert accuracy.value < accuracy.lower_threshold
