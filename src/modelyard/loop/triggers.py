"""What starts a loop: a firing alert rule, a metric below its floor, drift, an old serving
version. Each fired trigger has a key that names it for good (the alert's incident, the metric's
window and serving version, the serving version's age), so one trigger starts one loop."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from modelyard.errors import ModelyardError
from modelyard.store.schema import alert_incidents, alert_states

if TYPE_CHECKING:
    from modelyard.loop.policy import LoopPlan
    from modelyard.monitoring.alert_rules import ParsedRule
    from modelyard.monitoring.alerts import MetricSource
    from modelyard.registry import Registry
    from modelyard.rollout.types import Deployment
    from modelyard.settings import Settings

__all__ = ["Fired", "fired_triggers"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Fired:
    key: str
    info: dict[str, Any]


def fired_triggers(
    registry: Registry,
    settings: Settings,
    plan: LoopPlan,
    deployment: Deployment,
    *,
    now: datetime,
) -> list[Fired]:
    """Every trigger of ``plan`` that holds now, in the policy's order."""
    found = _alerts(registry, plan)
    rules = [r for r in (plan.metric_rule, plan.drift_rule) if r is not None]
    if rules:
        source = _source(registry, settings)
        for rule in rules:
            fired = _metric(rule, source, deployment, now=now)
            if fired is not None:
                found.append(fired)
    if plan.max_age_s is not None:
        version = registry.get_version(deployment.stable_ref)
        age_s = (now - version.created_at).total_seconds()
        if age_s > plan.max_age_s:
            found.append(
                Fired(
                    key=f"age:{deployment.stable_ref}",
                    info={
                        "kind": "max_age",
                        "version": deployment.stable_ref,
                        "age_s": round(age_s, 3),
                        "max_age_s": plan.max_age_s,
                    },
                )
            )
    return found


def _alerts(registry: Registry, plan: LoopPlan) -> list[Fired]:
    if not plan.alerts:
        return []
    query = (
        sa.select(alert_states.c.rule, alert_incidents)
        .join(alert_incidents, alert_incidents.c.id == alert_states.c.incident_id)
        .where(alert_states.c.rule.in_(list(plan.alerts)))
    )
    with registry.db.read() as conn:
        rows = {row.rule: row for row in conn.execute(query)}
    return [
        Fired(
            key=f"alert:{name}:{rows[name].id}",
            info={
                "kind": "alert",
                "rule": name,
                "incident": rows[name].id,
                "metric": rows[name].metric,
                "value": rows[name].value,
                "last_value": rows[name].last_value,
                "op": rows[name].op,
                "threshold": rows[name].threshold,
                "started_at": rows[name].started_at.isoformat(),
            },
        )
        for name in plan.alerts
        if name in rows
    ]


def _metric(
    rule: ParsedRule, source: MetricSource, deployment: Deployment, *, now: datetime
) -> Fired | None:
    try:
        value = source(rule, now)
    except ModelyardError as exc:
        logger.warning("loop %s: cannot read %s: %s", rule.deployment, rule.metric, exc)
        return None
    if not isinstance(value, float | int) or math.isnan(value) or not rule.holds(value):
        return None  # no data (None, or NoData: the log lacks what the rule names)
    window = int(now.timestamp() // max(rule.window_s, 1.0))
    kind = "drift_share" if rule.metric == "drift_share" and rule.op == ">=" else "metric"
    return Fired(
        key=f"{kind}:{rule.metric}:{deployment.stable_ref}:{window}",
        info={"kind": kind, "metric": rule.metric, "value": value, "op": rule.op,
              "threshold": rule.threshold, "window": rule.window,
              "serving": deployment.stable_ref},
    )  # fmt: skip


def _source(registry: Registry, settings: Settings) -> MetricSource:
    from modelyard.monitoring.alerts import metric_source
    from modelyard.monitoring.mirror import readable_root
    from modelyard.monitoring.service import DriftOptions

    return metric_source(
        registry, partial(readable_root, settings), options=DriftOptions.from_settings(settings)
    )
