"""Safe rollouts: deployments with a stable and a candidate route (canary, A/B or shadow),
per-route statistics, automatic analysis, promotion and rollback.

Control plane only: the server routes requests with ``routing``, records what it saw with
``stats.StatsBuffer`` / ``record_route_stats`` and follows ``deployment_revision``.
"""

from modelyard.core.durations import parse_duration
from modelyard.errors import DeploymentNotFoundError
from modelyard.rollout.analysis import evaluate, js_distance
from modelyard.rollout.buckets import LATENCY_EDGES_MS, class_key, latency_bucket, value_bin
from modelyard.rollout.checks import Check, policy_checks
from modelyard.rollout.controller import (
    Decision,
    RolloutStatus,
    StepResult,
    decide,
    rollout_status,
    run,
    step,
)
from modelyard.rollout.deployments import (
    abort,
    deploy,
    pause,
    promote,
    resume,
    set_weight,
    start_candidate,
)
from modelyard.rollout.lease import Lease
from modelyard.rollout.queries import (
    deployment_revision,
    deployment_revisions,
    get_deployment,
    history,
    list_deployments,
)
from modelyard.rollout.routing import choose_route, shadows, sticky_share
from modelyard.rollout.specs import parse_steps
from modelyard.rollout.stats import (
    StatsBuffer,
    prune_route_stats,
    record_route_stats,
    route_summary,
)
from modelyard.rollout.traffic import (
    LiveTraffic,
    RouteRate,
    RouteSeries,
    TrafficSeries,
    live_traffic,
    traffic_series,
)
from modelyard.rollout.types import (
    Deployment,
    DeploymentEvent,
    Policy,
    RouteStats,
    Summary,
    Verdict,
)

__all__ = [
    "LATENCY_EDGES_MS",
    "Check",
    "Decision",
    "Deployment",
    "DeploymentEvent",
    "DeploymentNotFoundError",
    "Lease",
    "LiveTraffic",
    "Policy",
    "RolloutStatus",
    "RouteRate",
    "RouteSeries",
    "RouteStats",
    "StatsBuffer",
    "StepResult",
    "Summary",
    "TrafficSeries",
    "Verdict",
    "abort",
    "choose_route",
    "class_key",
    "decide",
    "deploy",
    "deployment_revision",
    "deployment_revisions",
    "evaluate",
    "get_deployment",
    "history",
    "js_distance",
    "latency_bucket",
    "list_deployments",
    "live_traffic",
    "parse_duration",
    "parse_steps",
    "pause",
    "policy_checks",
    "promote",
    "prune_route_stats",
    "record_route_stats",
    "resume",
    "rollout_status",
    "route_summary",
    "run",
    "set_weight",
    "shadows",
    "start_candidate",
    "step",
    "sticky_share",
    "traffic_series",
    "value_bin",
]
