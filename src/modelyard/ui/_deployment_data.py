"""What the deployment pages show, read through the rollout service (blocking: call these with
``_base.blocking``) and shaped for the templates: labels, formatted numbers, charts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from markupsafe import Markup

from modelyard import rollout
from modelyard.monitoring.charts import Line, line_svg
from modelyard.rollout.checks import Check, policy_checks
from modelyard.ui._base import quote, url

if TYPE_CHECKING:
    from modelyard.registry import Registry
    from modelyard.rollout import Deployment, DeploymentEvent, LiveTraffic, RolloutStatus
    from modelyard.settings import Settings

MODES = {"canary": "canary", "ab": "A/B", "shadow": "shadow"}
#: The live numbers cover this many seconds of recorded route statistics.
LIVE_WINDOW_S = 300.0
CHART_SPAN = timedelta(hours=1)
CHART_STEP_S = 60
HISTORY_LIMIT = 100


@dataclass(frozen=True)
class RouteRow:
    route: str
    model: str | None
    version: int | None
    weight: str
    requests: int
    requests_per_s: str
    error_rate: str
    p99_ms: str


@dataclass(frozen=True)
class CheckRow:
    name: str
    value: str
    limit: str
    status: str
    note: str


@dataclass(frozen=True)
class LiveView:
    deployment: Deployment
    traffic: LiveTraffic
    routes: list[RouteRow]
    window_s: float


@dataclass(frozen=True)
class DeploymentView:
    status: RolloutStatus
    live: LiveView
    checks: list[CheckRow]
    history: list[DeploymentEvent]
    charts: list[tuple[str, Markup]]


def version_link(model: str | None, version: int | None) -> str | None:
    if model is None or version is None:
        return None
    return url(f"models/{quote(model)}/versions/{version}")


def mode_label(d: Deployment) -> str:
    return MODES.get(d.mode or "", "") if d.active else ""


def weights(d: Deployment) -> tuple[str, str]:
    """The stable and candidate routes' shares of requests, as the page says them."""
    if not d.active:
        return "100%", ""
    if d.mode == "shadow":
        return "100%", f"copies of {d.shadow_sample:.0%}"
    return f"{100 - d.weight:g}%", f"{d.weight:g}%"


def step_label(d: Deployment) -> str:
    if not d.active:
        return ""
    if not d.steps:
        return "one step" if d.mode != "shadow" else "shadow"
    return f"{d.step_index + 1} of {len(d.steps)} ({d.weight:g}%)"


def list_view(registry: Registry) -> list[Deployment]:
    return rollout.list_deployments(registry.db)


def live_view(registry: Registry, name: str, *, now: datetime | None = None) -> LiveView:
    """The routes with their weights and their last minutes of traffic."""
    d = rollout.get_deployment(registry.db, name)
    traffic = rollout.live_traffic(registry.db, name, window_s=LIVE_WINDOW_S, now=now)
    stable_weight, candidate_weight = weights(d)
    stable, candidate = traffic.routes
    rows = [_route_row(stable, d.stable_model, d.stable_version, stable_weight)]
    if d.active:
        rows.append(_route_row(candidate, d.candidate_model, d.candidate_version, candidate_weight))
    return LiveView(deployment=d, traffic=traffic, routes=rows, window_s=LIVE_WINDOW_S)


def deployment_view(settings: Settings, registry: Registry, name: str) -> DeploymentView:
    """Everything the deployment's page shows, as of now."""
    from modelyard.monitoring.mirror import readable_root

    now = datetime.now(UTC)
    status = rollout.rollout_status(
        registry.db, name, now=now, log_root=partial(readable_root, settings)
    )
    d = status.deployment
    checks = policy_checks(status.summary, d.policy, status.verdict) if d.active else []
    return DeploymentView(
        status=status,
        live=live_view(registry, name, now=now),
        checks=[_check_row(c) for c in checks],
        history=rollout.history(registry.db, name, limit=HISTORY_LIMIT),
        charts=_charts(registry, d, now=now),
    )


def _route_row(
    rate: rollout.RouteRate, model: str | None, version: int | None, weight: str
) -> RouteRow:
    return RouteRow(
        route=rate.route, model=model, version=version, weight=weight, requests=rate.requests,
        requests_per_s=f"{rate.requests_per_s:.2f}", error_rate=_percent(rate.error_rate),
        p99_ms="" if rate.p99_ms is None else f"{rate.p99_ms:.1f} ms",
    )  # fmt: skip


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.2%}"


def _value(check: Check, value: float | None) -> str:
    if value is None:
        return ""
    if check.unit == "percent":
        return _percent(value)
    if check.unit == "ms":
        return f"{value:.1f} ms"
    if check.unit == "count":
        return f"{value:g}"
    return f"{value:.3f}"


def _check_row(check: Check) -> CheckRow:
    limit = _value(check, check.threshold)
    return CheckRow(
        name=check.name, value=_value(check, check.value),
        limit=f"{check.comparison} {limit}" if limit else "", status=check.status,
        note=check.note,
    )  # fmt: skip


def _charts(registry: Registry, d: Deployment, *, now: datetime) -> list[tuple[str, Markup]]:
    """Requests/s and error ratio per route, per minute over the last hour's complete minutes,
    when any traffic was recorded; each with its title."""
    end = now.replace(second=0, microsecond=0)
    series = rollout.traffic_series(
        registry.db, d.name, start=end - CHART_SPAN, end=end, step_s=CHART_STEP_S
    )
    if series.empty:
        return []
    times = [t.strftime("%H:%M") for t in series.starts]
    rates = [Line(r.route, tuple(r.requests_per_s)) for r in series.routes]
    errors = [Line(r.route, r.error_rate) for r in series.routes]
    limit = (d.policy.max_error_rate, "max error rate") if d.active else None
    drawn = [
        ("Requests per second", line_svg("Requests per second", times, rates, unit="number")),
        ("Error ratio", line_svg("Error ratio", times, errors, unit="percent", marker=limit)),
    ]
    return [(title, chart) for title, chart in drawn if chart is not None]
