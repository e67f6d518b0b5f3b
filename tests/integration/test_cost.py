"""Cost per model: two models of known, very different CPU cost served together by a real
``yard serve`` get CPU figures that match their costs (the metrics, the log, ``yard monitor
cost``)."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from pathlib import Path

import httpx
import pandas as pd

import modelyard
from tests.integration._models import BusyModel
from tests.integration._server import YARD, Server, server_env

HEAVY_S, LIGHT_S = 0.008, 0.0004  # CPU seconds per row
REQUESTS = 150


def _infer(url: str, name: str, count: int, failures: list[str]) -> None:
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]},
                       {"name": "y", "shape": [1], "datatype": "FP64", "data": [2.0]}]}  # fmt: skip
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(count):
            answer = client.post(f"/v2/models/{name}/infer", json=body)
            if answer.status_code != 200:
                failures.append(f"{name}: {answer.status_code} {answer.text}")


def _cpu_metric(text: str, model: str) -> float:
    found = re.search(
        rf'modelyard_model_cpu_seconds_total{{model="{model}",version="1"}} (\S+)', text
    )
    assert found is not None, text
    return float(found.group(1))


def test_two_models_served_together_get_cpu_figures_in_the_ratio_of_their_costs(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    registry = modelyard.Registry(database_url=f"sqlite:///{home}/m.db",
                                  artifact_root=str(home / "artifacts"))  # fmt: skip
    cols = pd.DataFrame({"x": [1.0, 2.0], "y": [3.0, 4.0]})
    registry.register(BusyModel(HEAVY_S), name="heavy", data=cols, trust_pickle=True)
    registry.register(BusyModel(LIGHT_S), name="light", data=cols, trust_pickle=True)
    registry.close()
    env = server_env(home, MODELYARD_DATABASE_URL=f"sqlite:///{home}/m.db",
                     MODELYARD_ARTIFACT_ROOT=str(home / "artifacts"))  # fmt: skip
    args = ("heavy/1", "light/1", "--trust-pickle", "--log-predictions")
    with Server(home, *args, env=env) as server:
        before = httpx.get(f"{server.url}/metrics").text
        failures: list[str] = []
        clients = [
            threading.Thread(target=_infer, args=(server.url, name, REQUESTS, failures))
            for name in ("heavy", "light", "heavy", "light")
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        after = httpx.get(f"{server.url}/metrics").text
    assert not failures, failures[:3]
    assert re.search(r'modelyard_model_memory_bytes{model="heavy",version="1"} \d', after)

    # The metric: each model's CPU time over the load (warm-up excluded), per prediction.
    n = 2 * REQUESTS
    heavy = (_cpu_metric(after, "heavy") - _cpu_metric(before, "heavy")) / n
    light = (_cpu_metric(after, "light") - _cpu_metric(before, "light")) / n
    # Each figure is the model's own cost plus the server's share of the request (decoding,
    # validation, the model wrapper, encoding), the same for both: the difference is the
    # models' difference (within 15%), and the heavy one costs at least 5x the light one.
    assert heavy >= HEAVY_S and light >= LIGHT_S, (heavy, light)
    assert abs((heavy - light) - (HEAVY_S - LIGHT_S)) <= 0.15 * (HEAVY_S - LIGHT_S), (heavy, light)
    assert heavy / light >= 5, (heavy, light)

    # The log and ``yard monitor cost`` say the same per 1,000 predictions.
    figures = {}
    for name in ("heavy", "light"):
        shown = subprocess.run([YARD, "monitor", "cost", name, "--json"], env=env,
                               capture_output=True, text=True, check=True)  # fmt: skip
        (model,) = json.loads(shown.stdout)["models"]
        assert model["predictions"] == n
        assert model["memory_bytes"] > 0
        figures[name] = model["cpu_s_per_1k"] / 1000
    assert abs(figures["heavy"] - heavy) <= 0.1 * heavy, (figures, heavy)
    assert abs(figures["light"] - light) <= 0.1 * light, (figures, light)
    table = subprocess.run([YARD, "monitor", "cost", "heavy"], env=env, capture_output=True,
                           text=True, check=True).stdout  # fmt: skip
    assert "CPU s / 1k" in table and "USD" in table and "per CPU-hour" in table
    report = tmp_path / "report.html"
    subprocess.run([YARD, "monitor", "report", "heavy", "-o", str(report)], env=env,
                   capture_output=True, text=True, check=True)  # fmt: skip
    html = report.read_text()
    assert 'data-testid="cost-table"' in html and "heavy/1" in html

    # ... and the readiness assessment's cost section.
    command = [YARD, "assess", str(tmp_path), "--model", "heavy", "--json"]
    assessed = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    cost = json.loads(assessed.stdout)["cost"]
    assert cost["status"] == "measured" and cost["currency"] == "USD"
    (row,) = cost["models"]
    assert row["model"] == "heavy/1" and row["predictions"] == n
    assert abs(row["cpu_s_per_1k"] / 1000 - heavy) <= 0.1 * heavy
