"""The service functions the dashboard's pages call, timed in-process over the seeded home (no
HTTP, no templates): what the pages cost at least, and what a profile starts from."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import _ui_http
import _ui_seed

#: Which MLflow REST call each service function corresponds to.
CORRESPONDS = {
    "models list": "Registry.list_models(page_size=50)",
    "version list": "Registry.search_versions(name=M, page_size=50)",
    "one version": "Registry.get_version(M/V)",
}


def functions(home: Path, fill: dict[str, str]) -> dict[str, Callable[[], object]]:
    from modelyard.monitoring.service import deployment_drift, drift_series, window_metrics
    from modelyard.registry import Registry
    from modelyard.rollout.queries import history, list_deployments
    from modelyard.rollout.stats import route_summary

    settings = _ui_seed.settings_for(home)
    registry = Registry(settings)
    root = settings.resolved_log_root
    model, version, deployment = fill["model"], fill["version"], fill["deployment"]
    last_page = max(1, (registry.search_versions(page_size=50).total + 49) // 50)
    return {
        "Registry.list_models(page_size=50)": lambda: registry.list_models(page_size=50),
        "Registry.search_versions(name=M, page_size=50)": lambda: registry.search_versions(
            name=model, page_size=50
        ),
        "Registry.get_version(M/V)": lambda: registry.get_version(f"{model}/{version}"),
        "Registry.history(M)": lambda: registry.history(model),
        "Registry.search_versions(page=1)": lambda: registry.search_versions(page_size=50),
        "Registry.search_versions(last page)": lambda: registry.search_versions(
            page=last_page, page_size=50
        ),
        "Registry.search_versions(tag=team=fraud)": lambda: registry.search_versions(
            tag="team=fraud", page_size=50
        ),
        "list_deployments": lambda: list_deployments(registry.db),
        "rollout history(D)": lambda: history(registry.db, deployment),
        "route_summary(D)": lambda: route_summary(registry.db, deployment),
        **{
            f"deployment_drift(D, {label})": (
                lambda span=span: deployment_drift(registry, root, deployment, window=span)
            )
            for label, span in (
                ("1h", timedelta(hours=1)),
                ("24h", timedelta(hours=24)),
                ("7d", timedelta(days=7)),
            )
        },
        "drift_series(D, 24h)": lambda: drift_series(
            registry, root, deployment, window=timedelta(hours=24)
        ),
        "drift_series(D, 7d)": lambda: drift_series(
            registry, root, deployment, window=timedelta(days=7)
        ),
        "window_metrics(D, 1h)": lambda: window_metrics(
            registry, root, deployment, window=timedelta(hours=1)
        ),
    }


def measure(home: Path, fill: dict[str, str], *, fetches: int) -> dict[str, Any]:
    """The first call (cold: caches fill) and ``fetches`` warm calls of each function."""
    results: dict[str, Any] = {}
    for name, fn in functions(home, fill).items():
        started = time.perf_counter()
        fn()
        first = (time.perf_counter() - started) * 1000
        times = []
        for _ in range(fetches):
            started = time.perf_counter()
            fn()
            times.append((time.perf_counter() - started) * 1000)
        results[name] = {
            "first_ms": first, "n": fetches, "p50_ms": _ui_http.percentile(times, 50),
            "p95_ms": _ui_http.percentile(times, 95),
        }  # fmt: skip
        r = results[name]
        print(f"  {name:<52} first {first:8.1f} ms  p50 {r['p50_ms']:8.1f} ms  "
              f"p95 {r['p95_ms']:8.1f} ms", flush=True)  # fmt: skip
    return results


def ratios(service: dict[str, Any], mlflow: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for call, function in CORRESPONDS.items():
        ours, theirs = service.get(function), mlflow.get(call)
        if ours and theirs and theirs.get("status") == 200:
            out[call] = {"function": function, "p50": theirs["p50_ms"] / ours["p50_ms"],
                         "p95": theirs["p95_ms"] / ours["p95_ms"]}  # fmt: skip
    return out
