"""Recent traffic from the recorded route statistics (what the dashboard's deployment page shows)
and a stale abort, against real SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from modelyard import rollout
from modelyard.errors import ConcurrentUpdateError, InvalidInputError
from modelyard.registry import Registry
from tests.integration.test_rollout_service import lat, register_versions, snapshot

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def reg(registry: Registry) -> Registry:
    register_versions(registry)
    return registry


def test_live_traffic_rates_the_current_revision_over_the_window(reg: Registry) -> None:
    rollout.deploy(reg, "web", model_ref="churn/1")
    d = rollout.start_candidate(reg, "web", ref="churn/2", mode="canary", weight=10)
    buffer = rollout.StatsBuffer(replica="pod-1")
    start = NOW - timedelta(seconds=120)  # two minutes of traffic
    for i in range(120):
        at = (start + timedelta(seconds=i)).timestamp()
        buffer.observe("web", d.revision, "stable", latency_ms=3.0, outputs=["1"], at=at)
        if i % 10 == 0:
            buffer.observe("web", d.revision, "candidate", latency_ms=30.0, error=i == 0, at=at)
    buffer.observe("web", d.revision, "stable", latency_ms=3.0, at=(NOW - timedelta(hours=1))
                   .timestamp())  # outside the window  # fmt: skip
    buffer.observe("web", d.revision - 1, "stable", latency_ms=3.0, at=start.timestamp())
    buffer.flush(reg.db)
    live = rollout.live_traffic(reg.db, "web", window_s=300, now=NOW)
    stable, candidate = live.routes
    assert (live.revision, stable.requests, candidate.requests) == (d.revision, 120, 12)
    assert stable.requests_per_s == pytest.approx(1.0)  # 120 requests in 120 s
    assert (candidate.errors, candidate.error_rate) == (1, pytest.approx(1 / 12))
    assert candidate.p99_ms is not None and 20 < candidate.p99_ms <= 50
    empty = rollout.live_traffic(reg.db, "web", window_s=300, now=NOW + timedelta(hours=2))
    assert [r.requests_per_s for r in empty.routes] == [0.0, 0.0]
    assert empty.routes[0].p99_ms is None


def test_traffic_series_sums_every_revision_per_step(reg: Registry) -> None:
    rollout.deploy(reg, "web", model_ref="churn/1")
    d = rollout.start_candidate(reg, "web", ref="churn/2", mode="canary", weight=10)
    record = rollout.record_route_stats
    for revision, minute, route, requests, errors in [
        (d.revision - 1, 0, "stable", 60, 0),
        (d.revision, 0, "stable", 60, 6),
        (d.revision, 2, "candidate", 30, 3),
        (d.revision, 2, "candidate", 30, 0),
    ]:
        record(reg.db, deployment="web", revision=revision, replica=f"r{requests}{errors}",
               window_start=NOW + timedelta(minutes=minute), route=route, requests=requests,
               errors=errors, latency_counts=lat(b3=requests), output_counts={})  # fmt: skip
    series = rollout.traffic_series(reg.db, "web", start=NOW, end=NOW + timedelta(minutes=3))
    assert series.starts == tuple(NOW + timedelta(minutes=m) for m in range(3))
    stable, candidate = series.routes
    assert stable.requests_per_s == (2.0, 0.0, 0.0)
    assert stable.error_rate == (pytest.approx(0.05), None, None)
    assert candidate.requests_per_s == (0.0, 0.0, 1.0)
    assert candidate.error_rate == (None, None, pytest.approx(0.05))
    assert not series.empty
    later = rollout.traffic_series(reg.db, "web", start=NOW + timedelta(hours=1),
                                   end=NOW + timedelta(hours=2))  # fmt: skip
    assert later.empty and len(later.starts) == 60
    with pytest.raises(InvalidInputError, match="steps of at least 10s"):
        rollout.traffic_series(reg.db, "web", start=NOW, end=NOW, step_s=60)
    with pytest.raises(InvalidInputError, match="too long"):
        rollout.traffic_series(reg.db, "web", start=NOW - timedelta(days=30), end=NOW)


def test_a_stale_abort_changes_nothing(reg: Registry) -> None:
    rollout.deploy(reg, "web", model_ref="churn/1")
    d = rollout.start_candidate(reg, "web", ref="churn/2", mode="canary", weight=5)
    rollout.set_weight(reg, "web", weight=10)
    before = snapshot(reg)
    with pytest.raises(ConcurrentUpdateError, match="changed while this change was prepared"):
        rollout.abort(reg, "web", reason="x", expected_revision=d.revision)
    assert snapshot(reg) == before
    done = rollout.abort(reg, "web", reason="x", expected_revision=d.revision + 1)
    assert done.state == "rolled_back"
