"""The analysis rule by rule: ``policy_checks`` reports every rule with its value and limit, and
its failures and waits are exactly where ``evaluate`` breaches and waits."""

from __future__ import annotations

import pytest

from modelyard.rollout.analysis import evaluate
from modelyard.rollout.checks import Check, policy_checks
from modelyard.rollout.types import Policy, Summary
from tests.unit.rollout.test_analysis import latencies, route, summary


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def agree(s: Summary, policy: Policy) -> dict[str, Check]:
    """The checks, after asserting they say what the verdict says."""
    verdict = evaluate(s, policy)
    checks = policy_checks(s, policy, verdict)
    statuses = {c.status for c in checks}
    if verdict.status == "breach":
        assert "fail" in statuses
    elif verdict.status == "wait":
        assert "wait" in statuses and "fail" not in statuses
    else:
        assert statuses <= {"pass", "skipped"}
    return by_name(checks)


def test_a_passing_candidate_passes_every_rule_with_its_numbers() -> None:
    checks = agree(summary(route("stable", 900), route("candidate", 100)), Policy())
    assert checks["candidate requests"].value == 100
    assert checks["candidate requests"].threshold == 100
    assert checks["stable requests"].status == "pass"
    rate = checks["error rate vs stable"]
    assert (rate.value, rate.threshold, rate.status) == (0.0, pytest.approx(0.02), "pass")
    p99 = checks["p99 vs stable"]
    assert p99.threshold == pytest.approx(1.5 * 5.0)  # the stable's 4.94 ms under the floor
    assert checks["output distance (Jensen-Shannon)"].value == 0.0
    assert "candidate p99" not in checks  # no ceiling in the default policy


def test_too_few_requests_wait() -> None:
    checks = agree(summary(route("stable", 900), route("candidate", 99)), Policy())
    assert checks["candidate requests"].status == "wait"


def test_each_breach_is_a_failing_check() -> None:
    error = agree(summary(route("stable", 1000), route("candidate", 100, errors=6)), Policy())
    assert error["candidate error rate"].status == "fail"
    assert error["candidate error rate"].value == pytest.approx(0.06)
    slow = summary(route("stable", 1000), route("candidate", 100, counts=latencies(b6=100)))
    assert agree(slow, Policy())["p99 vs stable"].status == "fail"
    ceiling = agree(slow, Policy(max_p99_ms=20.0, max_p99_ratio=100.0))
    assert ceiling["candidate p99"].status == "fail"
    assert ceiling["p99 vs stable"].status == "pass"
    apart = summary(
        route("stable", 500, outputs={"0": 500}), route("candidate", 500, outputs={"1": 500})
    )
    distance = agree(apart, Policy())["output distance (Jensen-Shannon)"]
    assert (distance.value, distance.status) == (1.0, "fail")
    silent = summary(route("stable", 500), route("candidate", 500, outputs={}))
    assert agree(silent, Policy())["candidate outputs recorded"].status == "fail"


def test_relative_checks_are_skipped_when_stable_gets_no_traffic() -> None:
    full = summary(route("stable", 0), route("candidate", 300), weight=100)
    checks = agree(full, Policy())
    for name in ("stable requests", "error rate vs stable", "p99 vs stable",
                 "output distance (Jensen-Shannon)"):  # fmt: skip
        assert checks[name].status == "skipped" and "no traffic" in checks[name].note


def test_no_candidate_has_no_checks_and_outcomes_wait_without_a_p_value() -> None:
    s = summary(route("stable", 10), route("candidate", 0), mode=None)
    assert policy_checks(s, Policy()) == []
    checks = by_name(policy_checks(summary(route("stable", 900), route("candidate", 100)),
                                   Policy(min_outcomes=50)))  # fmt: skip
    assert checks["outcome test p-value (one-sided Welch)"].status == "wait"
