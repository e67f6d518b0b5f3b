"""The analysis: histogram quantiles, Jensen-Shannon distance and verdicts, checked against
values computed by hand."""

from __future__ import annotations

import math

import pytest

from modelyard.rollout.analysis import error_rate, evaluate, js_distance
from modelyard.rollout.buckets import LATENCY_BUCKETS, latency_bucket, quantile_ms
from modelyard.rollout.types import Mode, Policy, RouteStats, Summary


def latencies(**by_bucket: int) -> list[int]:
    """A histogram from ``b<index>=count`` pairs."""
    counts = [0] * LATENCY_BUCKETS
    for key, count in by_bucket.items():
        counts[int(key[1:])] = count
    return counts


def route(
    name: str,
    requests: int,
    errors: int = 0,
    counts: list[int] | None = None,
    outputs: dict[str, int] | None = None,
) -> RouteStats:
    lat = counts if counts is not None else latencies(b3=requests)  # all in (2, 5] ms
    return RouteStats(
        route=name,  # type: ignore[arg-type]
        requests=requests,
        errors=errors,
        error_rate=error_rate(requests, errors),
        p50_ms=quantile_ms(lat, 0.5),
        p99_ms=quantile_ms(lat, 0.99),
        latency_counts=tuple(lat),
        output_counts=outputs if outputs is not None else {"0": requests // 2, "1": requests // 2},
    )


def summary(
    stable: RouteStats, candidate: RouteStats, *, mode: Mode | None = "canary", weight: float = 10
) -> Summary:
    return Summary(
        deployment="web", revision=2, mode=mode, weight=weight, since=None, stable=stable,
        candidate=candidate,
    )  # fmt: skip


# -- buckets -------------------------------------------------------------------------------------


def test_latency_buckets_hold_their_upper_edge() -> None:
    assert latency_bucket(0.0) == 0
    assert latency_bucket(0.5) == 0  # (.., 0.5]
    assert latency_bucket(0.51) == 1
    assert latency_bucket(2.0) == 2  # (1, 2]
    assert latency_bucket(5000.0) == LATENCY_BUCKETS - 2
    assert latency_bucket(5000.1) == LATENCY_BUCKETS - 1  # overflow


def test_quantiles_interpolate_inside_the_bucket() -> None:
    # 50 requests in (1, 2] ms and 50 in (2, 5] ms.
    counts = latencies(b2=50, b3=50)
    # p50: rank 50 ends bucket (1, 2]: 1 + 1 * 50/50 = 2.0
    assert quantile_ms(counts, 0.5) == pytest.approx(2.0)
    # p99: rank 99 is 49 into the 50 of (2, 5]: 2 + 3 * 49/50 = 4.94
    assert quantile_ms(counts, 0.99) == pytest.approx(4.94)
    # 10 requests in [0, 0.5]: p50 at rank 5 of 10 -> 0.25
    assert quantile_ms(latencies(b0=10), 0.5) == pytest.approx(0.25)


def test_quantile_of_an_empty_histogram_or_the_overflow_bucket() -> None:
    assert quantile_ms([0] * LATENCY_BUCKETS, 0.99) is None
    assert quantile_ms(latencies(b13=7), 0.5) == 5000.0  # nothing is known above the last edge
    # 99 fast requests and one above 5 s: p99 (rank 99) is still the fast bucket's top, 0.5 ms
    assert quantile_ms(latencies(b0=99, b13=1), 0.99) == pytest.approx(0.5)


# -- distance ------------------------------------------------------------------------------------


def test_js_distance_against_hand_computed_values() -> None:
    assert js_distance({"a": 3, "b": 7}, {"a": 30, "b": 70}) == pytest.approx(0.0)
    assert js_distance({"a": 10}, {"b": 5}) == pytest.approx(1.0)  # disjoint
    # P = (1/2, 1/2), Q = (1, 0), M = (3/4, 1/4):
    # KL(P||M) = 1/2 log2(2/3) + 1/2 log2(2) = 0.2075187; KL(Q||M) = log2(4/3) = 0.4150375
    # JSD = (0.2075187 + 0.4150375) / 2 = 0.3112781; distance = sqrt(JSD) = 0.5579230
    assert js_distance({"a": 5, "b": 5}, {"a": 8}) == pytest.approx(0.5579230, abs=1e-6)
    # symmetric
    assert js_distance({"a": 8}, {"a": 5, "b": 5}) == pytest.approx(0.5579230, abs=1e-6)


def test_js_distance_matches_scipy() -> None:
    from scipy.spatial.distance import jensenshannon

    p = {"a": 30, "b": 70, "c": 0}
    q = {"a": 40, "b": 55, "c": 5}
    expected = jensenshannon([0.3, 0.7, 0.0], [0.4, 0.55, 0.05], base=2)
    assert js_distance(p, q) == pytest.approx(expected, abs=1e-12)


def test_js_distance_of_an_empty_histogram_is_unknown() -> None:
    assert js_distance({}, {"a": 1}) is None
    assert js_distance({"a": 0}, {"a": 1}) is None


# -- verdicts ------------------------------------------------------------------------------------


def test_waits_until_each_route_has_enough_requests() -> None:
    verdict = evaluate(summary(route("stable", 900), route("candidate", 99)), Policy())
    assert verdict.status == "wait"
    assert verdict.reasons == ("candidate has 99 of 100 requests",)
    verdict = evaluate(summary(route("stable", 40), route("candidate", 500)), Policy())
    assert verdict.status == "wait"
    assert verdict.reasons == ("stable has 40 of 100 requests",)


def test_zero_errors_everywhere_passes() -> None:
    verdict = evaluate(summary(route("stable", 900), route("candidate", 100)), Policy())
    assert verdict.status == "pass"
    assert verdict.reasons == ()
    assert verdict.output_distance == pytest.approx(0.0)


def test_absolute_error_rate_breach() -> None:
    stable = route("stable", 1000, errors=100)  # stable is bad too: only the absolute rule fires
    verdict = evaluate(summary(stable, route("candidate", 100, errors=6)), Policy())
    assert verdict.status == "breach"
    assert verdict.reasons == ("candidate error rate 6.00% is above 5.00%",)


def test_relative_error_rate_breach_uses_the_floor() -> None:
    # stable 1% (10/1000), candidate 3% (3/100): 3% > 2 x max(1%, 1%) = 2%
    verdict = evaluate(summary(route("stable", 1000, 10), route("candidate", 100, 3)), Policy())
    assert verdict.status == "breach"
    assert verdict.reasons == ("candidate error rate 3.00% is above 2x the stable's 1.00%",)
    # stable without errors: one candidate error in 100 (1%) is under 2 x floor (2%)
    verdict = evaluate(summary(route("stable", 1000), route("candidate", 100, 1)), Policy())
    assert verdict.status == "pass"


def test_p99_ratio_breach() -> None:
    slow = latencies(b3=50, b6=50)  # p99 = 20 + 30 * 49/50 = 49.4 ms
    verdict = evaluate(
        summary(route("stable", 1000), route("candidate", 100, counts=slow)), Policy()
    )
    # stable: 1000 in (2, 5], p99 = 2 + 3 * 990/1000 = 4.97 ms, floored to 5 ms: limit 7.5 ms
    assert verdict.status == "breach"
    assert verdict.reasons == ("candidate p99 49.4 ms is above 1.5x the stable's 5.0 ms",)


def test_p99_under_the_floor_is_not_a_regression() -> None:
    stable = route("stable", 1000, counts=latencies(b0=1000))  # p99 0.495 ms
    candidate = route("candidate", 100, counts=latencies(b2=100))  # p99 1.99 ms, 4x stable
    assert evaluate(summary(stable, candidate), Policy()).status == "pass"
    strict = Policy(p99_floor_ms=0.0)
    assert evaluate(summary(stable, candidate), strict).status == "breach"


def test_absolute_p99_ceiling() -> None:
    verdict = evaluate(
        summary(route("stable", 1000), route("candidate", 100)), Policy(max_p99_ms=4.0)
    )
    assert verdict.reasons == ("candidate p99 5.0 ms is above 4 ms",)  # 2 + 3 * 99/100 = 4.97


def test_output_distance_breach() -> None:
    candidate = route("candidate", 100, outputs={"1": 100})
    verdict = evaluate(summary(route("stable", 1000), candidate), Policy())
    assert verdict.status == "breach"
    assert verdict.output_distance == pytest.approx(0.5579230, abs=1e-6)
    assert verdict.reasons == ("output distance 0.558 is above 0.200 (Jensen-Shannon, base 2)",)
    assert evaluate(summary(route("stable", 1000), candidate),
                    Policy(max_output_distance=None)).status == "pass"  # fmt: skip


def test_empty_latency_histograms_skip_the_p99_check_with_a_note() -> None:
    empty = [0] * LATENCY_BUCKETS
    stable = route("stable", 1000, counts=empty)
    verdict = evaluate(summary(stable, route("candidate", 100, counts=empty)), Policy())
    assert verdict.status == "pass"
    assert verdict.output_distance == 0.0
    assert verdict.notes == ("p99 check skipped: a route recorded no latencies",)
    # without outputs it is never a pass: tests/unit/rollout/test_analysis_no_outputs.py


def test_no_stable_traffic_at_100_percent_judges_the_candidate_alone() -> None:
    candidate = route("candidate", 200, errors=4, outputs={"1": 200})  # 2%, far from stable
    verdict = evaluate(summary(route("stable", 0), candidate, weight=100), Policy())
    assert verdict.status == "pass"
    assert verdict.notes == ("relative checks skipped: the stable route gets no traffic at 100%",)
    failing = route("candidate", 200, errors=20)
    assert evaluate(summary(route("stable", 0), failing, weight=100), Policy()).status == "breach"


def test_shadow_at_weight_zero_still_compares_with_stable() -> None:
    verdict = evaluate(
        summary(route("stable", 0), route("candidate", 100), mode="shadow", weight=0), Policy()
    )
    assert verdict.status == "wait"
    assert verdict.reasons == ("stable has 0 of 100 requests",)


def test_without_a_candidate_there_is_nothing_to_judge() -> None:
    verdict = evaluate(summary(route("stable", 500), route("candidate", 0), mode=None), Policy())
    assert verdict.status == "wait"


def test_error_rate_helper() -> None:
    assert error_rate(0, 0) is None
    assert error_rate(200, 3) == pytest.approx(0.015)
    assert math.isclose(error_rate(3, 3) or 0, 1.0)
