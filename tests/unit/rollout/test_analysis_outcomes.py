"""The canary's business-outcome rule: the one-sided Welch t-test checked against scipy's, and
the verdicts it gives (wait for outcomes, breach on a lower mean, pass otherwise)."""

from __future__ import annotations

import math

import msgspec
import pytest
from scipy.stats import ttest_ind_from_stats

from modelyard.errors import InvalidSpecError
from modelyard.rollout.analysis import evaluate, outcome_p_value
from modelyard.rollout.specs import to_policy
from modelyard.rollout.types import OutcomeStats, Policy, Verdict
from tests.unit.rollout.test_analysis import route, summary

POLICY = Policy(min_requests=10, min_outcomes=30, max_output_distance=None)
TRAFFIC = summary(route("stable", 100), route("candidate", 100), weight=50)


def stats(name: str, count: int, mean: float, sd: float) -> OutcomeStats:
    return OutcomeStats(route=name, count=count, mean=mean, stderr=sd / math.sqrt(count))  # type: ignore[arg-type]


def test_the_p_value_is_scipys_one_sided_welch_test() -> None:
    candidate, stable = stats("candidate", 40, 9.2, 2.5), stats("stable", 90, 10.0, 1.5)
    expected = ttest_ind_from_stats(9.2, 2.5, 40, 10.0, 1.5, 90, equal_var=False,
                                    alternative="less").pvalue  # fmt: skip
    assert outcome_p_value(candidate, stable) == pytest.approx(expected, rel=1e-9)
    # a tolerated 10% drop: the same test against stable's mean less 1.0
    tolerated = ttest_ind_from_stats(9.2, 2.5, 40, 9.0, 1.5, 90, equal_var=False,
                                     alternative="less").pvalue  # fmt: skip
    assert outcome_p_value(candidate, stable, tolerance=0.1) == pytest.approx(tolerated)
    constant = OutcomeStats(route="candidate", count=40, mean=1.0, stderr=0.0)
    assert outcome_p_value(constant, OutcomeStats(route="stable", count=40, mean=2.0,
                                                  stderr=0.0)) == 0.0  # fmt: skip


def test_the_verdict_waits_for_outcomes_on_both_routes() -> None:
    outcomes = {"stable": stats("stable", 50, 10, 1), "candidate": stats("candidate", 12, 5, 1)}
    verdict = evaluate(TRAFFIC, POLICY, outcomes)
    assert (verdict.status, verdict.reasons) == ("wait", ("candidate has 12 of 30 outcomes",))
    unread = evaluate(TRAFFIC, POLICY, None)
    assert unread.status == "wait"
    assert unread.reasons == (
        "outcomes cannot be read: this controller has no prediction log (monitoring.log)",
    )
    # without min_outcomes the rule is off
    assert evaluate(TRAFFIC, Policy(min_requests=10, max_output_distance=None)).status == "pass"


def test_a_lower_mean_outcome_breaches_and_an_equal_or_higher_one_passes() -> None:
    stable = stats("stable", 60, 10.0, 2.0)

    def judge(mean: float, policy: Policy = POLICY) -> Verdict:
        return evaluate(
            TRAFFIC, policy, {"stable": stable, "candidate": stats("candidate", 40, mean, 2.0)}
        )

    lower = judge(8.5)
    assert lower.status == "breach"
    assert lower.outcome_p_value is not None and lower.outcome_p_value < 0.05
    assert lower.reasons == (
        "candidate's mean outcome 8.5 is below stable's 10 (one-sided Welch t-test, p = "
        f"{lower.outcome_p_value:.3g} < 0.05; 40 and 60 outcomes)",
    )
    for mean in (10.0, 12.0):
        verdict = judge(mean)
        assert verdict.status == "pass" and verdict.outcome_p_value is not None
        assert verdict.outcome_p_value >= 0.5
    # a 20% drop is tolerated
    assert judge(8.5, msgspec.structs.replace(POLICY, outcome_tolerance=0.2)).status == "pass"


def test_the_rule_is_skipped_where_the_candidate_answers_no_client_or_stable_gets_none() -> None:
    few = {"stable": stats("stable", 2, 10, 1), "candidate": stats("candidate", 2, 1, 1)}
    shadow = summary(route("stable", 100), route("candidate", 100), mode="shadow", weight=0)
    verdict = evaluate(shadow, POLICY, few)
    assert verdict.status == "pass"
    assert "outcome test skipped: a shadow candidate answers no client" in verdict.notes
    full = summary(route("stable", 0), route("candidate", 100), weight=100)
    assert "outcome test skipped: stable gets no traffic" in evaluate(full, POLICY, few).notes


def test_outcome_policy_fields_are_checked() -> None:
    with pytest.raises(InvalidSpecError) as raised:
        to_policy({"min_outcomes": "1", "outcome_alpha": "1.5", "outcome_tolerance": "-0.1"})
    assert str(raised.value) == (
        "Invalid rollout policy: min_outcomes 1 must be at least 2 (or unset); outcome_alpha 1.5 "
        "must be between 0 and 1; outcome_tolerance -0.1 must be within [0, 1)."
    )
    assert to_policy({"min_outcomes": "200", "outcome_alpha": "0.01"}).min_outcomes == 200
