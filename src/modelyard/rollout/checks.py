"""The analysis rule by rule: each check ``analysis.evaluate`` applies, with the value it saw,
the limit it compared it with and how it came out (pure functions, no I/O).

``evaluate`` gives one verdict and the reasons of a breach; a person deciding whether to promote
wants every rule, the passing ones too. ``policy_checks`` walks the same rules in the same order
with the same numbers, so its failures are the verdict's breaches and its waits the verdict's
reasons to wait.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from modelyard.rollout.analysis import error_rate, js_distance, stable_expected
from modelyard.rollout.types import Policy, RouteStats, Summary, Verdict

#: ``wait``: not enough traffic yet; ``skipped``: the rule does not apply (``note`` says why).
CheckStatus = Literal["pass", "fail", "wait", "skipped"]
CheckUnit = Literal["count", "percent", "ms", "number"]


class Check(msgspec.Struct, frozen=True, kw_only=True):
    """One rule: ``value`` compared with ``threshold`` (``at least`` or ``at most``)."""

    name: str
    value: float | None
    threshold: float | None
    comparison: Literal["at least", "at most"]
    unit: CheckUnit
    status: CheckStatus
    note: str = ""


def policy_checks(summary: Summary, policy: Policy, verdict: Verdict | None = None) -> list[Check]:
    """Every rule of ``policy`` applied to ``summary``; ``verdict`` (from ``evaluate``) adds the
    business-outcome test when the policy has one."""
    if summary.mode is None:
        return []
    candidate, stable = summary.candidate, summary.stable
    compare = stable_expected(summary)
    out = [_requests(candidate, policy)]
    if compare:
        out.append(_requests(stable, policy))
    else:
        out.append(_skipped("stable requests", "count", "at least", "stable gets no traffic"))
    answered = sum(v for v in candidate.output_counts.values() if v > 0)
    out.append(
        Check(
            name="candidate outputs recorded", value=float(answered),
            threshold=1.0 if candidate.requests else None, comparison="at least", unit="count",
            status="fail" if candidate.requests and not answered else _pass_or_wait(candidate),
        )
    )  # fmt: skip
    rate = error_rate(candidate.requests, candidate.errors)
    out.append(_limit("candidate error rate", rate, policy.max_error_rate, "percent", candidate))
    if compare:
        base = error_rate(stable.requests, stable.errors) or 0.0
        allowed = policy.max_error_ratio * max(base, policy.error_rate_floor)
        out.append(_limit("error rate vs stable", rate, allowed, "percent", candidate))
        out.append(_p99_ratio(candidate, stable, policy))
    else:
        why = f"stable gets no traffic at {summary.weight:g}%"
        out.append(_skipped("error rate vs stable", "percent", "at most", why))
        out.append(_skipped("p99 vs stable", "ms", "at most", why))
    if policy.max_p99_ms is not None:
        out.append(_limit("candidate p99", candidate.p99_ms, policy.max_p99_ms, "ms", candidate))
    out.append(_distance(summary, policy, compare=compare))
    if policy.min_outcomes is not None:
        out.append(_outcomes(policy, verdict))
    return out


def _pass_or_wait(route: RouteStats) -> CheckStatus:
    return "pass" if route.requests > 0 else "wait"


def _requests(route: RouteStats, policy: Policy) -> Check:
    enough = route.requests >= policy.min_requests
    return Check(
        name=f"{route.route} requests", value=float(route.requests),
        threshold=float(policy.min_requests), comparison="at least", unit="count",
        status="pass" if enough else "wait",
    )  # fmt: skip


def _limit(
    name: str, value: float | None, threshold: float, unit: CheckUnit, route: RouteStats
) -> Check:
    if value is None:
        return Check(
            name=name, value=None, threshold=threshold, comparison="at most", unit=unit,
            status="wait", note="no traffic yet",
        )  # fmt: skip
    return Check(
        name=name, value=value, threshold=threshold, comparison="at most", unit=unit,
        status="fail" if value > threshold else _pass_or_wait(route),
    )  # fmt: skip


def _p99_ratio(candidate: RouteStats, stable: RouteStats, policy: Policy) -> Check:
    if candidate.p99_ms is None or stable.p99_ms is None:
        return _skipped("p99 vs stable", "ms", "at most", "a route recorded no latencies")
    allowed = policy.max_p99_ratio * max(stable.p99_ms, policy.p99_floor_ms)
    return _limit("p99 vs stable", candidate.p99_ms, allowed, "ms", candidate)


def _distance(summary: Summary, policy: Policy, *, compare: bool) -> Check:
    name = "output distance (Jensen-Shannon)"
    limit = policy.max_output_distance
    if limit is None:
        return _skipped(name, "number", "at most", "turned off in the policy")
    if not compare:
        return _skipped(name, "number", "at most", "stable gets no traffic")
    distance = js_distance(summary.stable.output_counts, summary.candidate.output_counts)
    if distance is None:
        return Check(
            name=name, value=None, threshold=limit, comparison="at most", unit="number",
            status="wait", note="a route recorded no outputs",
        )  # fmt: skip
    return _limit(name, distance, limit, "number", summary.candidate)


def _outcomes(policy: Policy, verdict: Verdict | None) -> Check:
    name = "outcome test p-value (one-sided Welch)"
    p_value = verdict.outcome_p_value if verdict is not None else None
    if p_value is None:
        return Check(
            name=name, value=None, threshold=policy.outcome_alpha, comparison="at least",
            unit="number", status="wait", note=f"needs {policy.min_outcomes} outcomes per route",
        )  # fmt: skip
    return Check(
        name=name, value=p_value, threshold=policy.outcome_alpha, comparison="at least",
        unit="number", status="fail" if p_value < policy.outcome_alpha else "pass",
    )  # fmt: skip


def _skipped(
    name: str, unit: CheckUnit, comparison: Literal["at least", "at most"], why: str
) -> Check:
    return Check(
        name=name, value=None, threshold=None, comparison=comparison, unit=unit,
        status="skipped", note=why,
    )  # fmt: skip
