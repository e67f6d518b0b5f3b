"""The observability bundle against the real tools: Debian's Prometheus scrapes a real
``yard serve`` (a deployment with a canary, logging predictions so that the drift gauges exist)
under load, loads the generated alerting rules, and answers every query of the dashboard."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from modelyard import rollout
from modelyard.deploy.observability import RULES_FILE, grafana_dashboard, write_bundle
from modelyard.registry import Registry
from tests._prometheus import Prometheus, find_tool
from tests.integration._models import SlowModel
from tests.integration._server import Server, server_env

DEPLOYMENT = "churn-live"
COLUMNS = ["a", "b", "c", "d"]
#: What Grafana puts for $__rate_interval with a 1 s scrape (at least 4 scrapes).
RATE_INTERVAL = "10s"
FAST = {
    "MODELYARD_MONITORING__DRIFT__INTERVAL_S": "1",
    "MODELYARD_MONITORING__FLUSH_INTERVAL_S": "0.5",
    "MODELYARD_SERVING__POLL_INTERVAL_S": "0.5",
}


@dataclass
class Seen:
    """What Prometheus answered: each variable's values, each target's series, the rules."""

    variables: dict[str, list[str]] = field(default_factory=dict)
    #: (panel title, refId) -> (the query sent, its result series)
    targets: dict[tuple[str, str], tuple[str, list[dict[str, Any]]]] = field(default_factory=dict)
    rules: list[dict[str, Any]] = field(default_factory=list)
    metrics: str = ""
    #: The alerts firing once the deployment's new candidate failed to load.
    load_alerts: list[dict[str, Any]] = field(default_factory=list)


def make_home(home: Path) -> None:
    """Versions of a 4-column model; ``churn-live`` serves v1 and a 50% canary of v2. Version 3
    is a pickle, which a server without ``--trust-pickle`` cannot load."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(400, 4)), columns=COLUMNS)
    y = (X["a"] + X["b"] > 0).astype(int)
    registry = Registry(
        database_url=f"sqlite:///{home / 'modelyard.db'}", artifact_root=str(home / "artifacts")
    )
    try:
        registry.register(LogisticRegression().fit(X, y), name="churn", data=X)
        registry.register(LogisticRegression(C=0.05).fit(X, y), name="churn", data=X)
        # a pickle: the server (no --trust-pickle) will fail to load it
        registry.register(SlowModel(0.0), name="churn", data=X, trust_pickle=True)
        rollout.deploy(registry, DEPLOYMENT, model_ref="churn/1")
        rollout.start_candidate(registry, DEPLOYMENT, ref="churn/2", mode="canary", weight=50)
    finally:
        registry.close()


def body(rng: np.random.Generator) -> dict[str, Any]:
    """1-4 rows whose column ``a`` has moved (drift); one request in ten has a bad shape (422)."""
    rows = int(rng.integers(1, 5))
    frame = rng.normal(size=(rows, 4)) + np.array([3.0, 0.0, 0.0, 0.0])
    inputs = [{"name": c, "shape": [rows], "datatype": "FP64", "data": frame[:, i].tolist()}
              for i, c in enumerate(COLUMNS)]  # fmt: skip
    if rng.random() < 0.1:
        inputs[0]["shape"] = [rows + 1]
    return {"inputs": inputs}


def run_load(url: str, stop: threading.Event) -> None:
    """Two clients, each at most 50 requests a second, until ``stop``."""

    async def client_loop(client: httpx.AsyncClient, seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            await client.post(url, json=body(rng))
            await asyncio.sleep(0.02)

    async def main() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(*(client_loop(client, seed) for seed in range(2)))

    asyncio.run(main())


def variable_values(
    prom: Prometheus, variables: list[dict[str, Any]], values: dict[str, list[str]]
) -> dict[str, str]:
    """Each query variable as Grafana fills it: its ``label_values(selector, label)`` asked of
    Prometheus' label API, every value selected (a multi-value regex)."""
    regexes: dict[str, str] = {}
    for variable in variables:
        if variable["type"] != "query":
            continue
        found = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["query"])
        assert found, variable["query"]
        selector = substitute(found.group(1), regexes)
        values[variable["name"]] = prom.api(f"label/{found.group(2)}/values", **{
            "match[]": selector})  # fmt: skip
        # as Grafana writes a multi-value regex into a PromQL string: escaped, then its
        # backslashes doubled for the string literal
        escaped = (re.escape(v).replace("\\", "\\\\") for v in values[variable["name"]])
        regexes[variable["name"]] = "(" + "|".join(escaped) + ")"
    return regexes


def substitute(expr: str, regexes: dict[str, str]) -> str:
    out = expr.replace("$__rate_interval", RATE_INTERVAL)
    for name, regex in regexes.items():
        out = out.replace(f"${name}", regex)
    return out


def ask_every_target(prom: Prometheus, dashboard: dict[str, Any], seen: Seen) -> list[str]:
    """Fill ``seen`` with one round of answers; returns the targets still without data."""
    variables = dashboard["templating"]["list"]
    regexes = variable_values(prom, variables, seen.variables)
    empty = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            query = substitute(target["expr"], regexes)
            result = prom.api("query", query=query)["result"]
            seen.targets[(panel["title"], target["refId"])] = (query, result)
            if not result:
                empty.append(f"{panel['title']} {target['refId']}: {query}")
    return empty


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> Seen:
    """Start the server and Prometheus, load the server until every dashboard query has data
    (or 120 s passed), stop both, and return what Prometheus answered."""
    find_tool("prometheus")
    tmp = tmp_path_factory.mktemp("observability")
    home = tmp / "home"
    make_home(home)
    write_bundle(tmp / "bundle")
    dashboard = grafana_dashboard()
    out = Seen()
    env = server_env(home, **FAST)
    with Server(home, "--deployment", DEPLOYMENT, "--log-predictions", env=env) as server:
        stop = threading.Event()
        load = threading.Thread(
            target=run_load, args=(f"{server.url}/v2/models/{DEPLOYMENT}/infer", stop)
        )
        load.start()
        try:
            target = f"127.0.0.1:{server.port}"
            with Prometheus(tmp / "prometheus", [target], [tmp / "bundle" / RULES_FILE]) as prom:
                deadline = time.monotonic() + 120
                while True:
                    time.sleep(0.5)
                    out.metrics = httpx.get(f"{server.url}/metrics").text
                    empty = ask_every_target(prom, dashboard, out)
                    if not empty or time.monotonic() > deadline:
                        break
                out.rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
                out.load_alerts = fail_a_load(home, prom)
        finally:
            stop.set()
            load.join()
    return out


def fail_a_load(home: Path, prom: Prometheus) -> list[dict[str, Any]]:
    """Make the pickle the deployment's candidate; the alert on failed loads as it fires."""
    registry = Registry(
        database_url=f"sqlite:///{home / 'modelyard.db'}", artifact_root=str(home / "artifacts")
    )
    try:
        rollout.abort(registry, DEPLOYMENT)
        rollout.start_candidate(registry, DEPLOYMENT, ref="churn/3", mode="canary", weight=50)
    finally:
        registry.close()
    deadline = time.monotonic() + 30
    query = 'ALERTS{alertname="ModelyardModelLoadFailed",alertstate="firing"}'
    while time.monotonic() < deadline:
        firing = prom.api("query", query=query)["result"]
        if firing:
            return [s["metric"] for s in firing]
        time.sleep(0.5)
    return []


def test_every_dashboard_query_returns_data_from_a_real_server(seen: Seen) -> None:
    empty = [
        f"{title} {ref}: {query}"
        for (title, ref), (query, result) in seen.targets.items()
        if not result
    ]
    assert empty == [], "\n".join(empty)
    assert len(seen.targets) == sum(
        len(p.get("targets", [])) for p in grafana_dashboard()["panels"]
    )


def test_the_variables_list_the_deployment_its_models_and_both_routes(seen: Seen) -> None:
    # a deployment's requests count under its name; batching and compute under its model's
    assert {DEPLOYMENT, "churn"} <= set(seen.variables["model"])
    assert DEPLOYMENT in seen.variables["deployment"]
    assert set(seen.variables["route"]) == {"stable", "candidate"}


def test_the_canary_panels_compare_stable_and_candidate(seen: Seen) -> None:
    for title in ("Route request rate", "Route error ratio", "Route latency p99"):
        _, result = seen.targets[(title, "A")]
        routes = {s["metric"].get("route") for s in result}
        assert routes == {"stable", "candidate"}, (title, result)
    _, errors = seen.targets[("Route error ratio", "A")]
    assert all(float(s["value"][1]) == 0 for s in errors)  # the candidate never failed


def test_drift_and_client_errors_show_what_the_load_did(seen: Seen) -> None:
    _, scores = seen.targets[("Drift score per column", "A")]
    assert {s["metric"]["column"] for s in scores} == set(COLUMNS)
    _, share = seen.targets[("Drift share", "A")]
    assert float(share[0]["value"][1]) > 0  # column a moved by 3 standard deviations
    _, client_errors = seen.targets[("Error ratio", "B")]
    ratios = {s["metric"]["model"]: float(s["value"][1]) for s in client_errors}
    assert 0 < ratios[DEPLOYMENT] < 0.5, ratios  # about one request in ten was malformed


def test_prometheus_loads_and_evaluates_every_generated_rule(seen: Seen) -> None:
    assert len(seen.rules) == 8
    for rule in seen.rules:
        assert rule["health"] == "ok" and not rule.get("lastError"), rule
        assert rule["state"] != "firing", rule  # nothing is wrong with this server


def test_the_prediction_log_backlog_queries_return_data(seen: Seen) -> None:
    for metric in ("modelyard_prediction_log_backlog_rows",
                   "modelyard_prediction_log_upload_failures_total"):  # fmt: skip
        assert re.search(rf"^{metric}\b", seen.metrics, re.M), metric
    for ref in ("A", "B"):
        _, result = seen.targets[("Prediction-log backlog", ref)]
        assert result, ref


def test_a_version_the_server_cannot_load_fires_the_alert(seen: Seen) -> None:
    """A deployment's candidate that fails to load (a pickle, no --trust-pickle) is counted as
    a failed load, and the generated rule fires on it within seconds: a first failure makes a
    new series at 1, which increase() alone would never see."""
    assert len(seen.load_alerts) == 1, seen.load_alerts
    alert = seen.load_alerts[0]
    assert (alert["model"], alert["version"], alert["severity"]) == ("churn", "3", "warning")
    assert alert["job"] == "modelyard"
