"""Judging a candidate from the traffic both routes saw: pure functions, no I/O.

``evaluate`` answers ``wait`` until each route has ``policy.min_requests`` requests (the stable
route is exempt when it is meant to get no traffic, a canary or A/B at 100%), then ``breach`` if
any rule is broken, else ``pass``:

- the candidate recorded no outputs for its requests (it answered none of them: every one
  failed or was rejected), whatever the policy;
- candidate error rate above ``max_error_rate``;
- candidate error rate above ``max_error_ratio`` x max(stable error rate, ``error_rate_floor``);
- candidate p99 above ``max_p99_ratio`` x max(stable p99, ``p99_floor_ms``), or above
  ``max_p99_ms``;
- Jensen-Shannon distance between the routes' output distributions above
  ``max_output_distance``.

The distance is ``sqrt(JSD)`` with ``JSD = (KL(P||M) + KL(Q||M)) / 2``, ``M = (P + Q) / 2`` and
logarithms in base 2, so it lies in [0, 1]: 0 for identical distributions, 1 for disjoint ones. It
needs no smoothing for bins one side never saw (unlike PSI), which matters for class labels.
Relative checks are skipped, and a note says so, when the stable route has no traffic to compare.
A stable route with requests but no outputs leaves nothing to compare with: the verdict waits.
A route without outputs is never a pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from modelyard.rollout.types import Policy, RouteStats, Summary, Verdict


def error_rate(requests: int, errors: int) -> float | None:
    """Errors per request, ``None`` without requests."""
    return errors / requests if requests > 0 else None


def js_distance(p_counts: Mapping[str, int], q_counts: Mapping[str, int]) -> float | None:
    """The Jensen-Shannon distance (base 2) between two histograms; ``None`` if either is empty."""
    p_total = sum(v for v in p_counts.values() if v > 0)
    q_total = sum(v for v in q_counts.values() if v > 0)
    if p_total <= 0 or q_total <= 0:
        return None
    divergence = 0.0
    for key in set(p_counts) | set(q_counts):
        p = max(p_counts.get(key, 0), 0) / p_total
        q = max(q_counts.get(key, 0), 0) / q_total
        m = (p + q) / 2
        if p > 0:
            divergence += 0.5 * p * math.log2(p / m)
        if q > 0:
            divergence += 0.5 * q * math.log2(q / m)
    return math.sqrt(min(max(divergence, 0.0), 1.0))


def stable_expected(summary: Summary) -> bool:
    """Whether the stable route is meant to get traffic (not a canary or A/B at 100%)."""
    return not (summary.mode in ("canary", "ab") and summary.weight >= 100)


def evaluate(summary: Summary, policy: Policy) -> Verdict:
    """Pass, wait or breach for the candidate in ``summary`` under ``policy``."""
    if summary.mode is None:
        return Verdict(status="wait", reasons=("the deployment has no candidate",))
    compare = stable_expected(summary)
    missing = _missing_requests(summary, policy, compare=compare)
    if missing:
        return Verdict(status="wait", reasons=tuple(missing))
    candidate, stable = summary.candidate, summary.stable
    breaches = _absolute_breaches(candidate, policy)
    notes: list[str] = []
    distance = None
    if compare and not breaches and _silent(stable):
        return Verdict(
            status="wait",
            reasons=(
                f"stable recorded no outputs for its {stable.requests} requests, so the "
                "candidate cannot be compared",
            ),
        )
    if compare:
        breaches += _relative_breaches(candidate, stable, policy, notes)
        distance = js_distance(stable.output_counts, candidate.output_counts)
        limit = policy.max_output_distance
        if limit is not None and distance is not None and distance > limit:
            breaches.append(
                f"output distance {distance:.3f} is above {limit:.3f} (Jensen-Shannon, base 2)"
            )
    else:
        notes.append(
            f"relative checks skipped: the stable route gets no traffic at {summary.weight:g}%"
        )
    if breaches:
        return Verdict(
            status="breach", reasons=tuple(breaches), notes=tuple(notes), output_distance=distance
        )
    return Verdict(status="pass", notes=tuple(notes), output_distance=distance)


def _missing_requests(summary: Summary, policy: Policy, *, compare: bool) -> list[str]:
    routes = [summary.candidate, summary.stable] if compare else [summary.candidate]
    return [
        f"{r.route} has {r.requests} of {policy.min_requests} requests"
        for r in routes
        if r.requests < policy.min_requests
    ]


def _silent(route: RouteStats) -> bool:
    """Whether ``route`` had requests but recorded no output for any of them."""
    return route.requests > 0 and not any(v > 0 for v in route.output_counts.values())


def _absolute_breaches(candidate: RouteStats, policy: Policy) -> list[str]:
    out = []
    if _silent(candidate):
        out.append(
            f"candidate recorded no outputs for its {candidate.requests} requests: it answered "
            "none of them"
        )
    rate = error_rate(candidate.requests, candidate.errors) or 0.0
    if rate > policy.max_error_rate:
        out.append(f"candidate error rate {rate:.2%} is above {policy.max_error_rate:.2%}")
    p99 = candidate.p99_ms
    if policy.max_p99_ms is not None and p99 is not None and p99 > policy.max_p99_ms:
        out.append(f"candidate p99 {p99:.1f} ms is above {policy.max_p99_ms:g} ms")
    return out


def _relative_breaches(
    candidate: RouteStats, stable: RouteStats, policy: Policy, notes: list[str]
) -> list[str]:
    out = []
    rate = error_rate(candidate.requests, candidate.errors) or 0.0
    base = error_rate(stable.requests, stable.errors) or 0.0
    if rate > policy.max_error_ratio * max(base, policy.error_rate_floor):
        out.append(
            f"candidate error rate {rate:.2%} is above {policy.max_error_ratio:g}x the stable's "
            f"{base:.2%}"
        )
    if candidate.p99_ms is None or stable.p99_ms is None:
        notes.append("p99 check skipped: a route recorded no latencies")
    elif candidate.p99_ms > policy.max_p99_ratio * max(stable.p99_ms, policy.p99_floor_ms):
        out.append(
            f"candidate p99 {candidate.p99_ms:.1f} ms is above {policy.max_p99_ratio:g}x the "
            f"stable's {stable.p99_ms:.1f} ms"
        )
    return out
