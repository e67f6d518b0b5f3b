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

Business outcomes (``policy.min_outcomes`` set; ``outcomes`` given by the controller, which
joins each route's logged predictions of the current step to ``POST /v1/outcomes``): the
verdict waits until each route has ``min_outcomes`` outcomes, then breaches when a one-sided
Welch t-test says the candidate's mean outcome per request is lower than stable's:

- H0: ``mean_c >= mean_s - outcome_tolerance * |mean_s|``; H1: the candidate is lower by more.
  ``t = (mean_c - mean_s + outcome_tolerance * |mean_s|) / sqrt(se_c^2 + se_s^2)`` with the
  Welch-Satterthwaite degrees of freedom, ``p = P(T <= t)``; breach when ``p < outcome_alpha``.
- Welch, not Student: the routes get different shares of traffic and a new model can change
  the spread of outcomes as well as their mean, so neither equal sizes nor equal variances
  are assumed. Outcomes such as revenue are skewed, but the test is on means of at least
  ``min_outcomes`` requests, which the central limit theorem makes near normal: choose
  ``min_outcomes`` in the hundreds for heavy-tailed outcomes.
- One-sided: a candidate that earns more is never a breach; only "worse" is.
- A wait on outcomes is not a pass: the step does not advance or promote until both
  routes have their outcomes (which often arrive late: a conversion days after the request).
  A test that does not reject is a pass for this rule: with too few outcomes to see a small
  drop, raise ``min_outcomes``. Each step is judged on its own predictions, but within a
  step the test runs again every controller round while the step bakes and outcomes accrue:
  these repeated looks make a false rollback of an equal candidate more likely than
  ``outcome_alpha`` says, so give a lower alpha (or a tolerance) to a step that bakes long.
- Skipped, with a note, where stable gets no traffic (a canary at 100%) or the candidate
  answers no client (shadow: the outcomes are stable's).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from modelyard.rollout.types import OutcomeStats, Policy, RouteStats, Summary, Verdict


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


def evaluate(
    summary: Summary,
    policy: Policy,
    outcomes: Mapping[str, OutcomeStats] | None = None,
) -> Verdict:
    """Pass, wait or breach for the candidate in ``summary`` under ``policy``; ``outcomes``
    (per route name) are needed when ``policy.min_outcomes`` is set, ``None`` when they could
    not be read (the verdict waits)."""
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
    waits: list[str] = []
    p_value = None
    if policy.min_outcomes is not None:
        if not compare or summary.mode == "shadow":
            notes.append(
                "outcome test skipped: "
                + ("a shadow candidate answers no client" if compare else "stable gets no traffic")
            )
        else:
            p_value = _outcome_rule(outcomes, policy, breaches, waits)
    if breaches:
        return Verdict(
            status="breach", reasons=tuple(breaches), notes=tuple(notes),
            output_distance=distance, outcome_p_value=p_value,
        )  # fmt: skip
    if waits:
        return Verdict(status="wait", reasons=tuple(waits), notes=tuple(notes),
                       output_distance=distance)  # fmt: skip
    return Verdict(
        status="pass", notes=tuple(notes), output_distance=distance, outcome_p_value=p_value
    )


def _outcome_rule(
    outcomes: Mapping[str, OutcomeStats] | None,
    policy: Policy,
    breaches: list[str],
    waits: list[str],
) -> float | None:
    """The outcome test's p-value, appending a breach or the reasons to wait."""
    needed = policy.min_outcomes or 0
    if outcomes is None:
        waits.append(
            "outcomes cannot be read: this controller has no prediction log (monitoring.log)"
        )
        return None
    routes = {name: outcomes.get(name) for name in ("candidate", "stable")}
    short = [
        f"{name} has {stats.count if stats else 0} of {needed} outcomes"
        for name, stats in routes.items()
        if stats is None or stats.count < needed
    ]
    if short:
        waits.extend(short)
        return None
    candidate, stable = routes["candidate"], routes["stable"]
    assert candidate is not None and stable is not None
    p_value = outcome_p_value(candidate, stable, tolerance=policy.outcome_tolerance)
    if p_value is not None and p_value < policy.outcome_alpha:
        drop = f" by more than {policy.outcome_tolerance:.1%}" if policy.outcome_tolerance else ""
        breaches.append(
            f"candidate's mean outcome {candidate.mean:.4g} is below stable's {stable.mean:.4g}"
            f"{drop} (one-sided Welch t-test, p = {p_value:.3g} < {policy.outcome_alpha:g}; "
            f"{candidate.count} and {stable.count} outcomes)"
        )
    return p_value


def outcome_p_value(
    candidate: OutcomeStats, stable: OutcomeStats, *, tolerance: float = 0.0
) -> float | None:
    """The one-sided Welch t-test's p-value that the candidate's mean outcome is below stable's
    less ``tolerance`` x |stable's mean|; ``None`` without means and standard errors."""
    if None in (candidate.mean, candidate.stderr, stable.mean, stable.stderr):
        return None
    assert candidate.mean is not None and stable.mean is not None
    assert candidate.stderr is not None and stable.stderr is not None
    margin = candidate.mean - stable.mean + tolerance * abs(stable.mean)
    var_c, var_s = candidate.stderr**2, stable.stderr**2
    if var_c + var_s == 0:  # constant outcomes on both routes: the means say it all
        return 0.0 if margin < 0 else 1.0
    from scipy.stats import t as student_t

    t = margin / math.sqrt(var_c + var_s)
    df = (var_c + var_s) ** 2 / (
        var_c**2 / max(candidate.count - 1, 1) + var_s**2 / max(stable.count - 1, 1)
    )
    return float(student_t.cdf(t, df))


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
