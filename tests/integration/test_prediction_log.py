"""``yard serve --log-predictions`` writes every answered request; SIGTERM flushes the rest;
``yard monitor log`` reads them back."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.integration._server import YARD, Server, server_env
from tests.integration.conftest import ServedHome


def test_logged_predictions_survive_sigterm_and_read_back(
    served_home: ServedHome, tmp_path: Path
) -> None:
    env = server_env(
        served_home.home,
        MODELYARD_MONITORING__LOG_ROOT=str(tmp_path / "log"),
        MODELYARD_MONITORING__FLUSH_INTERVAL_S="30",  # only SIGTERM's flush can write them
    )
    rng = np.random.default_rng(0)
    sent: dict[str, list[float]] = {}
    server = Server(served_home.home, "lin/1", "--log-predictions", env=env).wait_ready()
    try:
        with httpx.Client(timeout=10) as client:
            for _ in range(25):
                rows = rng.integers(0, 9, size=(int(rng.integers(1, 4)), 3)).astype(float)
                body = {"inputs": [{"name": "x", "shape": list(rows.shape), "datatype": "FP64",
                                    "data": rows.ravel().tolist()}]}  # fmt: skip
                response = client.post(f"{server.url}/v2/models/lin/infer", json=body)
                assert response.status_code == 200, response.text
                sent[response.headers["x-request-id"]] = (rows @ [1.0, 10.0, 100.0]).tolist()
    finally:
        assert server.stop() == 0, server.log.read_text()
    out = subprocess.run(
        [YARD, "monitor", "log", "lin", "--json", "--limit", "1000"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    logged: dict[str, list[float]] = {}
    for row in sorted(json.loads(out.stdout), key=lambda r: (r["request_id"], r["row"])):
        assert (row["deployment"], row["model"], row["version"]) == ("lin", "lin", "1")
        assert row["in_a"] + 10 * row["in_b"] + 100 * row["in_c"] == pytest.approx(
            row["out_predict"]
        )
        logged.setdefault(row["request_id"], []).append(row["out_predict"])
    assert logged.keys() == sent.keys()
    for request_id, predictions in sent.items():
        assert logged[request_id] == pytest.approx(predictions)


def test_monitor_log_of_an_unknown_name_is_one_line(tmp_path: Path) -> None:
    env = server_env(tmp_path, MODELYARD_MONITORING__LOG_ROOT=str(tmp_path / "log"))
    out = subprocess.run(
        [YARD, "monitor", "log", "ghost"], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 1
    assert out.stderr.startswith("error: No predictions logged for 'ghost' in the last 1h;")
    assert out.stderr.count("\n") == 1


def test_deployment_requests_are_logged_under_the_deployment(
    served_home: ServedHome, tmp_path: Path
) -> None:
    from modelyard import rollout

    registry = served_home.registry()
    rollout.deploy(registry, "logged-svc", model_ref="lin/1")
    registry.close()
    env = server_env(served_home.home, MODELYARD_MONITORING__LOG_ROOT=str(tmp_path / "log"))
    body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}
    with Server(served_home.home, "--deployment", "logged-svc", "--log-predictions", env=env) as s:
        ids = [
            httpx.post(f"{s.url}/v2/models/logged-svc/infer", json=body).headers["x-request-id"]
            for _ in range(5)
        ]
    out = subprocess.run(
        [YARD, "monitor", "log", "logged-svc", "--json"], env=env, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    rows = json.loads(out.stdout)
    assert sorted(r["request_id"] for r in rows) == sorted(ids)
    assert {(r["deployment"], r["model"], r["route"]) for r in rows} == {
        ("logged-svc", "lin", "stable")
    }
    assert all(r["out_predict"] == pytest.approx(321.0) for r in rows)


def test_a_logging_server_exports_drift_gauges(served_home: ServedHome, tmp_path: Path) -> None:
    env = server_env(
        served_home.home,
        MODELYARD_MONITORING__LOG_ROOT=str(tmp_path / "log"),
        MODELYARD_MONITORING__FLUSH_INTERVAL_S="0.2",
        MODELYARD_MONITORING__DRIFT__INTERVAL_S="0.5",
    )
    server = Server(served_home.home, "lin/1", "--log-predictions", env=env).wait_ready()
    try:
        with httpx.Client(timeout=10) as client:
            for i in range(40):
                body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64",
                                    "data": [i % 9, 2.0, 1000.0 + i]}]}  # fmt: skip
                assert client.post(f"{server.url}/v2/models/lin/infer", json=body).is_success
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                text = client.get(f"{server.url}/metrics").text
                if 'modelyard_window_rows{deployment="lin"} 40.0' in text:
                    break
                time.sleep(0.2)
    finally:
        assert server.stop() == 0, server.log.read_text()
    gauges = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith(("modelyard_window_rows{", "modelyard_drift_"))
    }
    assert gauges['modelyard_window_rows{deployment="lin"}'] == 40.0, text
    for column in "abc":  # lin's four training rows make a poor reference: only check export
        assert 0.0 <= gauges[f'modelyard_drift_score{{column="{column}",deployment="lin"}}'] <= 1
    assert 0.0 <= gauges['modelyard_drift_share{deployment="lin"}'] <= 1.0


def test_failed_requests_are_logged_with_their_status(
    served_home: ServedHome, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from modelyard.monitoring.traffic import traffic_points

    root = tmp_path / "log"
    env = server_env(served_home.home, MODELYARD_MONITORING__LOG_ROOT=str(root))
    server = Server(
        served_home.home, "picky/1", "--log-predictions", "--trust-pickle", env=env
    ).wait_ready()
    sent = {200: 0, 500: 0, 400: 0}
    try:
        with httpx.Client(timeout=10) as client:
            for value in [1.0, 2.0, -1.0, 3.0, -2.0]:
                body = {"dataframe_split": {"columns": ["x", "y"], "data": [[value, 0.0]]}}
                status = client.post(f"{server.url}/invocations", json=body).status_code
                sent[status] += 1
            bad = client.post(f"{server.url}/invocations", json={"dataframe_split": {}})
            sent[bad.status_code] = sent.get(bad.status_code, 0) + 1
    finally:
        assert server.stop() == 0, server.log.read_text()
    assert sent[200] == 3 and sent[500] == 2 and sent[400] == 1, sent
    files = sorted(root.glob("deployment=picky/*/*.parquet"))
    now = datetime.now(UTC)
    (point,) = traffic_points(files, start=now - timedelta(hours=1), end=now)
    assert (point.requests, point.rows) == (6, 3)
    assert point.error_rate == pytest.approx(2 / 6)
