"""A route that recorded no outputs is never judged a pass (issue 11, A2): a candidate that
answered none of its requests used to pass because the output distance was skipped."""

from __future__ import annotations

import pytest

from modelyard.rollout.analysis import evaluate
from modelyard.rollout.types import Policy
from tests.unit.rollout.test_analysis import route, summary


@pytest.mark.parametrize("limit", [0.2, None], ids=["distance-on", "distance-off"])
def test_a_candidate_without_outputs_breaches(limit: float | None) -> None:
    policy = Policy(min_requests=100, max_output_distance=limit)
    verdict = evaluate(summary(route("stable", 900), route("candidate", 100, outputs={})), policy)
    assert verdict.status == "breach"
    assert verdict.reasons == (
        "candidate recorded no outputs for its 100 requests: it answered none of them",
    )


def test_a_candidate_without_outputs_breaches_when_it_takes_all_traffic() -> None:
    s = summary(route("stable", 0), route("candidate", 150, outputs={}), weight=100)
    verdict = evaluate(s, Policy(min_requests=100))
    assert verdict.status == "breach"
    assert "candidate recorded no outputs" in verdict.reasons[0]


def test_a_stable_route_without_outputs_leaves_nothing_to_compare_with() -> None:
    s = summary(route("stable", 900, outputs={}), route("candidate", 100))
    verdict = evaluate(s, Policy(min_requests=100))
    assert verdict.status == "wait"
    assert verdict.reasons == (
        "stable recorded no outputs for its 900 requests, so the candidate cannot be compared",
    )


def test_routes_with_outputs_still_pass() -> None:
    verdict = evaluate(summary(route("stable", 900), route("candidate", 100)), Policy())
    assert (verdict.status, verdict.reasons) == ("pass", ())
