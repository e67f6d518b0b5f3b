"""The rollout controller: judge the current step, then advance, promote, roll back or pause.

``step`` does one round under the deployment's lease (``lease.Lease``), so that however many
controllers run (one per server replica, or ``yard rollout run``), one acts at a time. It reads
the traffic of the deployment's current revision (every change starts a new revision, so each
step is judged on the traffic it saw), evaluates the policy and:

- on a breach, rolls back (or pauses, per ``policy.on_breach``) and records the reasons;
- with ``auto`` and a pass held for ``bake_s``, moves to the next step's weight, or promotes
  after the last step;
- without ``auto``, only guards: a passing candidate is held for a person to move on.

Each change is made only if the deployment is still at the revision that was judged.

A policy with ``min_outcomes`` also needs ``log_root`` (the prediction log's folder, or a
function of the deployment's name giving it): each route's logged predictions since the step
started, joined to their business outcomes, are summarized for ``analysis.evaluate``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from modelyard.errors import ConcurrentUpdateError
from modelyard.rollout.analysis import evaluate
from modelyard.rollout.deployments import end_candidate, pause, promote, set_weight
from modelyard.rollout.lease import Lease
from modelyard.rollout.queries import get_deployment
from modelyard.rollout.stats import route_summary
from modelyard.rollout.types import Deployment, OutcomeStats, RouteName, Summary, Verdict

if TYPE_CHECKING:
    from modelyard.registry import Registry
    from modelyard.store.db import Database

logger = logging.getLogger(__name__)

Action = Literal["none", "wait", "hold", "advance", "promote", "rollback", "pause"]
#: What ``step`` did: a Decision's action when it acted, ``busy`` when another controller held
#: the lease, ``stale`` when the deployment changed between judging and acting.
StepAction = Literal[
    "none", "wait", "hold", "advance", "promote", "rollback", "pause", "busy", "stale"
]
_CHANGES = ("advance", "promote", "rollback", "pause")
#: Where the prediction log is: a folder, or a function of the deployment's name giving one.
LogRoot = str | Callable[[str], str]
_SETTLED = ("none", "promote", "rollback", "pause")


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """What the controller would do now and why (``weight``: the target of an ``advance``)."""

    action: Action
    reason: str
    weight: float | None = None


class StepResult(msgspec.Struct, frozen=True, kw_only=True):
    deployment: str
    action: StepAction
    reason: str
    revision: int | None = None
    verdict: Verdict | None = None


class RolloutStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Everything ``yard rollout status`` shows: the deployment, its traffic, the verdict on it
    and the controller's next move."""

    deployment: Deployment
    summary: Summary
    verdict: Verdict
    next: Decision
    #: Each route's business outcomes in the current step (a policy with ``min_outcomes``).
    outcomes: tuple[OutcomeStats, ...] = ()


def decide(deployment: Deployment, verdict: Verdict, *, now: datetime) -> Decision:
    """The controller's move for ``deployment`` given ``verdict`` on its current step."""
    d = deployment
    if d.state == "paused":
        return Decision(action="none", reason="paused: resume, promote or abort it")
    if not d.active:
        return Decision(action="none", reason=f"no candidate (state {d.state})")
    if verdict.status == "breach":
        return Decision(action=d.policy.on_breach, reason="; ".join(verdict.reasons))
    if verdict.status == "wait":
        return Decision(action="wait", reason="waiting: " + "; ".join(verdict.reasons))
    if not d.auto:
        return Decision(action="hold", reason="passing; not automatic: reweight or promote by hand")
    started = d.step_started_at or now
    remaining = d.bake_s - (now - started).total_seconds()
    at = _where(d)
    if remaining > 0:
        return Decision(action="wait", reason=f"baking {at}: {remaining:.0f}s left")
    following = d.next_weight
    if following is not None:
        return Decision(
            action="advance",
            weight=following,
            reason=f"passed {at} for {d.bake_s:g}s; advancing to {following:g}%",
        )
    return Decision(action="promote", reason=f"passed the last step ({at}) for {d.bake_s:g}s")


def rollout_status(
    db: Database, name: str, *, now: datetime | None = None, log_root: LogRoot | None = None
) -> RolloutStatus:
    """The deployment, its current revision's traffic, the verdict and the next move;
    ``log_root``: where the prediction log is, for a policy that judges business outcomes."""
    when = now or datetime.now(UTC)
    deployment = get_deployment(db, name)
    summary = route_summary(db, name, revision=deployment.revision)
    outcomes = None
    if deployment.policy.min_outcomes is not None and deployment.active and log_root is not None:
        root = log_root if isinstance(log_root, str) else log_root(name)
        outcomes = route_outcomes(root, deployment, now=when)
    verdict = evaluate(summary, deployment.policy, outcomes)
    move = decide(deployment, verdict, now=when)
    return RolloutStatus(
        deployment=deployment, summary=summary, verdict=verdict, next=move,
        outcomes=tuple(outcomes.values()) if outcomes else (),
    )  # fmt: skip


def route_outcomes(root: str, deployment: Deployment, *, now: datetime) -> dict[str, OutcomeStats]:
    """Each route's business outcomes: its version's logged predictions since the current step
    started, joined to their outcomes (``monitoring.outcomes``)."""
    from modelyard.errors import PredictionLogEmptyError
    from modelyard.monitoring.outcomes import summarize_outcomes

    d = deployment
    try:
        summary = summarize_outcomes(root, d.name, start=d.step_started_at, end=now)
    except PredictionLogEmptyError:
        summary = None
    routes: dict[RouteName, tuple[str, int | None]] = {
        "stable": (d.stable_model, d.stable_version),
        "candidate": (d.candidate_model or "", d.candidate_version),
    }
    out: dict[str, OutcomeStats] = {}
    for route, (model, version) in routes.items():
        found = next(
            (
                g for g in (summary.groups if summary else [])
                if (g.route, g.model, g.version) == (route, model, str(version))
            ),
            None,
        )  # fmt: skip
        out[route] = (
            OutcomeStats(route=route, count=found.count, mean=found.mean, stderr=found.stderr)
            if found is not None
            else OutcomeStats(route=route, count=0)
        )
    return out


def step(
    registry: Registry,
    name: str,
    *,
    now: datetime | None = None,
    actor: str = "controller",
    lease: Lease | None = None,
    log_root: LogRoot | None = None,
) -> StepResult:
    """One controller round for deployment ``name``, under ``lease`` (a one-off lease when
    ``None``). Returns what it did; ``busy`` when another controller holds the lease.
    ``log_root``: the prediction log, for a policy that judges business outcomes."""
    when = now or datetime.now(UTC)
    own = lease is None
    held = lease if lease is not None else Lease(registry.db, name)
    if not held.acquire(when):
        return StepResult(deployment=name, action="busy", reason="another controller acts")
    try:
        return _act(registry, name, now=when, actor=actor, log_root=log_root)
    finally:
        if own:
            held.release()


def run(
    registry: Registry,
    name: str,
    *,
    interval_s: float = 5.0,
    stop: threading.Event,
    actor: str = "controller",
    until_settled: bool = False,
    on_step: Callable[[StepResult], None] | None = None,
    log_root: LogRoot | None = None,
) -> StepResult | None:
    """Call ``step`` every ``interval_s`` until ``stop`` is set (or, with ``until_settled``,
    until no rollout is left to act on); keeps the lease between rounds."""
    get_deployment(registry.db, name)  # fail now on an unknown name
    lease = Lease(registry.db, name, ttl_s=max(3 * interval_s, 10.0))
    last: StepResult | None = None
    try:
        while not stop.is_set():
            try:
                last = step(registry, name, actor=actor, lease=lease, log_root=log_root)
            except Exception:  # the loop is a process edge: log and try again next round
                logger.exception("rollout controller round for %s failed", name)
            else:
                if on_step is not None:
                    on_step(last)
                if until_settled and last.action in _SETTLED:
                    return last
            stop.wait(interval_s)
    finally:
        try:
            lease.release()
        except Exception:
            logger.exception("could not release the controller lease of %s", name)
    return last


def _act(
    registry: Registry, name: str, *, now: datetime, actor: str, log_root: LogRoot | None
) -> StepResult:
    status = rollout_status(registry.db, name, now=now, log_root=log_root)
    d, move = status.deployment, status.next
    result = StepResult(
        deployment=name, action=move.action, reason=move.reason, revision=d.revision,
        verdict=status.verdict,
    )  # fmt: skip
    if move.action not in _CHANGES:
        return result
    detail = {"verdict": msgspec.to_builtins(status.verdict), **_traffic(status.summary)}
    if status.outcomes:
        detail["outcomes"] = msgspec.to_builtins(status.outcomes)
    common: dict[str, Any] = {"actor": actor, "expected_revision": d.revision}
    try:
        if move.action == "rollback":
            changed = end_candidate(
                registry, name, action="rollback", reason=move.reason, detail=detail, now=now,
                **common,
            )  # fmt: skip
        elif move.action == "pause":
            changed = pause(registry, name, reason=move.reason, detail=detail, **common)
        elif move.action == "advance":
            target = move.weight if move.weight is not None else d.weight
            changed = set_weight(
                registry, name, weight=target, action="advance", reason=move.reason,
                now=now, **common,
            )  # fmt: skip
        else:
            changed = promote(registry, name, reason=move.reason, now=now, **common)
    except ConcurrentUpdateError as exc:
        return StepResult(deployment=name, action="stale", reason=str(exc), revision=d.revision)
    logger.info("deployment %s: %s (%s)", name, move.action, move.reason)
    return msgspec.structs.replace(result, revision=changed.revision)


def _where(d: Deployment) -> str:
    return f"shadow {d.shadow_sample:.0%}" if d.mode == "shadow" else f"{d.weight:g}%"


def _traffic(summary: Summary) -> dict[str, Any]:
    """The numbers a rollback or pause was decided on, for the audit log."""
    return {
        "traffic": {
            route.route: {
                "requests": route.requests,
                "errors": route.errors,
                "p50_ms": route.p50_ms,
                "p99_ms": route.p99_ms,
            }
            for route in (summary.stable, summary.candidate)
        }
    }
