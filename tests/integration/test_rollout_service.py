"""The rollout service against real SQLite and PostgreSQL: deployments, candidates, promotion,
rollback, the audit log, and every bad request leaving everything as it was."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modelyard import rollout
from modelyard.errors import (
    ConcurrentUpdateError,
    ConflictError,
    InvalidInputError,
    InvalidSpecError,
    ModelNotFoundError,
    ModelyardError,
    VersionNotFoundError,
)
from modelyard.registry import Registry
from modelyard.rollout import DeploymentNotFoundError, Policy
from modelyard.rollout.buckets import LATENCY_BUCKETS

X = np.random.default_rng(0).normal(size=(60, 3))


def register_versions(registry: Registry, name: str = "churn", count: int = 3) -> None:
    """``count`` versions of ``name``; ``production`` points at version 1."""
    for i in range(count):
        model = LogisticRegression().fit(X, (X[:, i % 3] > 0).astype(int))
        registry.register(model, name=name, data=X)
    registry.set_alias(f"{name}/1", "production")


@pytest.fixture
def reg(registry: Registry) -> Registry:
    register_versions(registry)
    return registry


def snapshot(registry: Registry, name: str = "web") -> tuple[Any, ...]:
    """Everything a bad request must leave alone."""
    db = registry.db
    return (
        rollout.list_deployments(db),
        [d.name for d in rollout.list_deployments(db)],
        rollout.history(db, name) if name in rollout.deployment_revisions(db) else None,
        registry.history("churn"),
    )


def test_deploy_records_the_stable_route_and_its_alias(reg: Registry) -> None:
    d = rollout.deploy(reg, "web", model_ref="churn@production", actor="ann", reason="launch")
    assert (d.stable_ref, d.stable_alias, d.state, d.revision) == ("churn/1", "production",
                                                                   "stable", 1)  # fmt: skip
    assert (d.candidate_ref, d.mode, d.weight, d.policy) == (None, None, 0.0, Policy())
    again = rollout.deploy(reg, "web", model_ref="churn/2")  # pinned: no alias to follow
    assert (again.stable_ref, again.stable_alias, again.revision) == ("churn/2", None, 2)
    events = rollout.history(reg.db, "web")
    assert [(e.action, e.revision, e.actor, e.reason) for e in events] == [
        ("deploy", 2, "tester", None),
        ("deploy", 1, "ann", "launch"),
    ]
    assert events[0].detail == {"stable": "churn/2", "alias": None, "from": "churn/1"}
    assert rollout.get_deployment(reg.db, "web") == again


def test_canary_reweight_promote_moves_the_alias(reg: Registry) -> None:
    rollout.deploy(reg, "web", model_ref="churn@production")
    d = rollout.start_candidate(
        reg, "web", ref="churn/2", mode="canary", steps=[10, 50, 100], bake_s="5m", auto=True,
        policy={"min_requests": "20"}, actor="ann", reason="new features",
    )  # fmt: skip
    assert (d.candidate_ref, d.mode, d.weight) == ("churn/2", "canary", 10.0)
    assert (d.steps, d.bake_s) == ((10.0, 50.0, 100.0), 300.0)
    assert (d.state, d.revision, d.auto, d.policy.min_requests) == ("rolling", 2, True, 20)
    assert d.step_started_at is not None and d.next_weight == 50.0
    d = rollout.set_weight(reg, "web", weight=50, reason="looks fine")
    assert (d.weight, d.step_index, d.revision) == (50.0, 1, 3)
    d = rollout.promote(reg, "web", actor="ann", reason="all good")
    assert (d.stable_ref, d.candidate_ref, d.state, d.revision) == ("churn/2", None, "promoted", 4)
    assert d.stable_alias == "production"
    assert reg.get_version("churn@production").version == 2
    moved = reg.history("churn", alias="production")[0]
    assert (moved.from_version, moved.to_version) == (1, 2)
    assert moved.reason == "deployment web promoted churn/2 (ann): all good"
    actions = [(e.action, e.revision) for e in rollout.history(reg.db, "web")]
    assert actions == [("promote", 4), ("weight", 3), ("start", 2), ("deploy", 1)]
    assert rollout.history(reg.db, "web")[0].detail == {
        "from": "churn/1", "to": "churn/2", "alias": "production",
    }  # fmt: skip


def test_abort_goes_back_to_stable_and_leaves_the_alias(reg: Registry) -> None:
    rollout.deploy(reg, "web", model_ref="churn@production")
    rollout.start_candidate(reg, "web", ref="churn/3", mode="ab", weight=50,
                            sticky_header="X-User-Id")  # fmt: skip
    d = rollout.abort(reg, "web", actor="bob", reason="conversion dropped")
    assert (d.stable_ref, d.candidate_ref, d.state, d.mode, d.sticky_header) == (
        "churn/1", None, "rolled_back", None, None)  # fmt: skip
    assert reg.get_version("churn@production").version == 1
    last = rollout.history(reg.db, "web")[0]
    assert (last.action, last.actor, last.reason, last.detail) == (
        "abort", "bob", "conversion dropped", {"candidate": "churn/3"})  # fmt: skip
    # a new candidate may start once the last one is gone
    d = rollout.start_candidate(reg, "web", ref="churn/2", mode="shadow", sample=0.25)
    assert (d.mode, d.shadow_sample, d.weight, d.steps) == ("shadow", 0.25, 0.0, ())


def test_pause_and_resume(reg: Registry) -> None:
    rollout.deploy(reg, "web", model_ref="churn/1")
    rollout.start_candidate(reg, "web", ref="churn/2", mode="canary", weight=5)
    assert rollout.pause(reg, "web", reason="holiday").state == "paused"
    with pytest.raises(ConflictError, match="is paused, not rolling, so it cannot pause"):
        rollout.pause(reg, "web")
    assert rollout.resume(reg, "web").state == "rolling"
    assert [e.action for e in rollout.history(reg.db, "web")][:2] == ["resume", "pause"]


def test_a_different_model_as_candidate_leaves_the_alias_where_it_was(reg: Registry) -> None:
    register_versions(reg, "churn-xgb", count=1)
    rollout.deploy(reg, "web", model_ref="churn@production")
    rollout.start_candidate(reg, "web", ref="churn-xgb/1", mode="canary", weight=10)
    d = rollout.promote(reg, "web")
    assert (d.stable_ref, d.stable_alias) == ("churn-xgb/1", None)
    assert reg.get_version("churn@production").version == 1
    assert rollout.history(reg.db, "web")[0].detail["alias_left"] == "churn@production"


def test_revisions_grow_on_every_change(reg: Registry) -> None:
    rollout.deploy(reg, "web", model_ref="churn/1")
    rollout.deploy(reg, "api", model_ref="churn/1")
    assert rollout.deployment_revision(reg.db, "web") == 1
    rollout.start_candidate(reg, "web", ref="churn/2", mode="canary", weight=5)
    rollout.set_weight(reg, "web", weight=20)
    assert rollout.deployment_revision(reg.db, "web") == 3
    assert rollout.deployment_revisions(reg.db) == {"api": 1, "web": 3}
    assert rollout.deployment_revisions(reg.db, ["web", "nope"]) == {"web": 3}
    assert [d.name for d in rollout.list_deployments(reg.db)] == ["api", "web"]


def test_a_stale_expected_revision_changes_nothing(reg: Registry) -> None:
    rollout.deploy(reg, "web", model_ref="churn/1")
    rollout.start_candidate(reg, "web", ref="churn/2", mode="canary", weight=5)
    before = snapshot(reg)
    with pytest.raises(ConcurrentUpdateError, match="changed while this change was prepared"):
        rollout.promote(reg, "web", expected_revision=1)
    assert snapshot(reg) == before


# -- bad requests: a clear error, nothing changed ------------------------------------------------

BAD: list[tuple[str, Callable[[Registry], object], type[ModelyardError], str]] = [
    ("unknown deployment",
     lambda r: rollout.start_candidate(r, "nope", ref="churn/2", mode="canary", weight=5),
     DeploymentNotFoundError, "No deployment named 'nope'; run 'yard rollout list'"),
    ("unknown deployment (promote)", lambda r: rollout.promote(r, "nope"),
     DeploymentNotFoundError, "No deployment named 'nope'"),
    ("unknown deployment (revision)", lambda r: rollout.deployment_revision(r.db, "nope"),
     DeploymentNotFoundError, "No deployment named 'nope'"),
    ("unknown version",
     lambda r: rollout.start_candidate(r, "web", ref="churn/9", mode="canary", weight=5),
     VersionNotFoundError, "Model 'churn' has no version 9 (latest is 3)"),
    ("unknown model", lambda r: rollout.deploy(r, "web", model_ref="nope/1"),
     ModelNotFoundError, "No model named 'nope'"),
    ("weight above 100",
     lambda r: rollout.start_candidate(r, "web", ref="churn/2", mode="canary", weight=150),
     InvalidInputError, "Weight 150 is outside 0-100"),
    ("negative weight",
     lambda r: rollout.start_candidate(r, "web", ref="churn/2", mode="canary", weight=-1),
     InvalidInputError, "Weight -1 is outside 0-100"),
    ("sticky mode without a key",
     lambda r: rollout.start_candidate(r, "web", ref="churn/2", mode="ab", weight=50),
     InvalidSpecError, "An A/B rollout needs exactly one sticky key; pass --sticky-header"),
    ("promote without a candidate", lambda r: rollout.promote(r, "web"),
     ConflictError, "Deployment 'web' has no candidate to promote (state stable)"),
    ("abort without a candidate", lambda r: rollout.abort(r, "web", reason="x"),
     ConflictError, "Deployment 'web' has no candidate to abort"),
    ("reweight without a candidate", lambda r: rollout.set_weight(r, "web", weight=5),
     ConflictError, "no candidate to reweight"),
    ("steps not increasing",
     lambda r: rollout.start_candidate(r, "web", ref="churn/2", mode="canary", steps=[50, 10]),
     InvalidSpecError, "Steps 50,10 do not increase (10 follows 50)"),
    ("steps outside 0-100",
     lambda r: rollout.start_candidate(r, "web", ref="churn/2", mode="canary",
                                       steps=[10, 150]),
     InvalidSpecError, "Step 150 is outside 0-100"),
    ("bad duration",
     lambda r: rollout.start_candidate(r, "web", ref="churn/2", mode="canary", weight=5,
                                       bake_s="5 minutes"),
     InvalidInputError, "Invalid duration '5 minutes'; use e.g. 90s, 5m"),
    ("bad policy",
     lambda r: rollout.start_candidate(r, "web", ref="churn/2", mode="canary", weight=5,
                                       policy={"max_error_rate": "lots"}),
     InvalidSpecError, "Invalid rollout policy"),
    ("candidate equal to stable",
     lambda r: rollout.start_candidate(r, "web", ref="churn@production", mode="canary", weight=5),
     ConflictError, "Version churn/1 is already the stable route of deployment 'web'"),
    ("bad deployment name", lambda r: rollout.deploy(r, "no way", model_ref="churn/1"),
     InvalidInputError, "Invalid deployment name 'no way'"),
]  # fmt: skip


@pytest.mark.parametrize(("label", "call", "error", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_requests_change_nothing(
    reg: Registry,
    label: str,
    call: Callable[[Registry], object],
    error: type[ModelyardError],
    message: str,
) -> None:
    rollout.deploy(reg, "web", model_ref="churn@production")
    before = snapshot(reg)
    with pytest.raises(error) as info:
        call(reg)
    assert message in str(info.value)
    assert str(info.value).endswith(".")
    assert snapshot(reg) == before


def test_a_second_candidate_is_refused(reg: Registry) -> None:
    rollout.deploy(reg, "web", model_ref="churn@production")
    rollout.start_candidate(reg, "web", ref="churn/2", mode="canary", weight=10)
    before = snapshot(reg)
    with pytest.raises(ConflictError) as info:
        rollout.start_candidate(reg, "web", ref="churn/3", mode="shadow")
    assert str(info.value) == (
        "Deployment 'web' already has candidate churn/2 (canary, rolling); promote it with "
        "'yard rollout promote web' or abort it with 'yard rollout abort web --reason ...' first."
    )
    with pytest.raises(ConflictError, match="already has candidate churn/2"):
        rollout.deploy(reg, "web", model_ref="churn/3")
    with pytest.raises(InvalidSpecError, match="takes no weight or steps"):
        rollout.start_candidate(reg, "web", ref="churn/3", mode="shadow", weight=10)
    assert snapshot(reg) == before


def test_an_archived_version_cannot_serve(reg: Registry) -> None:
    rollout.deploy(reg, "web", model_ref="churn/1")
    reg.archive("churn/3")
    before = snapshot(reg)
    with pytest.raises(ConflictError, match="Version churn/3 is archived"):
        rollout.start_candidate(reg, "web", ref="churn/3", mode="canary", weight=5)
    assert snapshot(reg) == before


# -- statistics ----------------------------------------------------------------------------------

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def lat(**by_bucket: int) -> list[int]:
    counts = [0] * LATENCY_BUCKETS
    for key, count in by_bucket.items():
        counts[int(key[1:])] = count
    return counts


def test_route_stats_add_up_across_calls_replicas_and_windows(reg: Registry) -> None:
    rollout.deploy(reg, "web", model_ref="churn/1")
    d = rollout.start_candidate(reg, "web", ref="churn/2", mode="canary", weight=50)
    record = rollout.record_route_stats
    common = {"deployment": "web", "revision": d.revision}
    record(reg.db, **common, replica="a", window_start=T0, route="stable", requests=50,
           errors=1, latency_counts=lat(b2=50), output_counts={"0": 20, "1": 30})  # fmt: skip
    record(
        reg.db,
        **common,
        replica="a",
        window_start=T0,
        route="stable",
        requests=50,
        errors=0,
        latency_counts=lat(b3=50),
        output_counts={"1": 50},
    )  # same key: added
    record(reg.db, **common, replica="b", window_start=T0 + timedelta(seconds=10),
           route="candidate", requests=10, errors=2, latency_counts=lat(b5=10),
           output_counts={"0": 10})  # fmt: skip
    record(reg.db, deployment="web", revision=d.revision - 1, replica="a", window_start=T0,
           route="candidate", requests=999, errors=999, latency_counts=lat(b13=999),
           output_counts={})  # another revision: not counted  # fmt: skip
    s = rollout.route_summary(reg.db, "web")
    assert (s.revision, s.mode, s.weight) == (d.revision, "canary", 50.0)
    assert (s.stable.requests, s.stable.errors, s.stable.error_rate) == (100, 1, 0.01)
    assert s.stable.latency_counts == tuple(lat(b2=50, b3=50))
    assert s.stable.output_counts == {"0": 20, "1": 80}
    assert s.stable.p50_ms == pytest.approx(2.0)  # 1 + 1 * 50/50
    assert s.stable.p99_ms == pytest.approx(4.94)  # 2 + 3 * 49/50
    assert (s.candidate.requests, s.candidate.errors, s.candidate.error_rate) == (10, 2, 0.2)
    assert s.candidate.p50_ms == pytest.approx(15.0)  # (10, 20] ms, rank 5 of 10
    later = rollout.route_summary(reg.db, "web", since=T0 + timedelta(seconds=5))
    assert (later.stable.requests, later.candidate.requests) == (0, 10)
    old = rollout.route_summary(reg.db, "web", revision=d.revision - 1)
    assert (old.candidate.requests, old.candidate.p99_ms) == (999, 5000.0)
    assert rollout.prune_route_stats(reg.db, before=T0 + timedelta(seconds=5)) == 2  # 2 keys
    assert rollout.route_summary(reg.db, "web").stable.requests == 0


def test_bad_stats_are_refused(reg: Registry) -> None:
    rollout.deploy(reg, "web", model_ref="churn/1")
    good = dict(deployment="web", revision=1, replica="a", window_start=T0, route="stable",
                requests=5, errors=0, latency_counts=lat(b0=5), output_counts={})  # fmt: skip
    cases: list[tuple[dict[str, Any], type[ModelyardError], str]] = [
        ({"deployment": "nope"}, DeploymentNotFoundError, "No deployment named 'nope'"),
        ({"route": "green"}, InvalidInputError, "Unknown route 'green'"),
        ({"errors": 6}, InvalidInputError, "errors at most requests"),
        ({"latency_counts": [1, 2]}, InvalidInputError, "latency_counts must be 14 whole numbers"),
        ({"output_counts": {"a": -1}}, InvalidInputError, "Output count 'a': -1 is invalid"),
        ({"window_start": datetime(2026, 1, 1)}, InvalidInputError, "has no time zone"),
    ]
    for change, error, message in cases:
        with pytest.raises(error, match=message):
            rollout.record_route_stats(reg.db, **{**good, **change})
    assert rollout.route_summary(reg.db, "web").stable.requests == 0


def test_stats_buffer_counts_and_flushes(reg: Registry) -> None:
    rollout.deploy(reg, "web", model_ref="churn/1")
    d = rollout.start_candidate(reg, "web", ref="churn/2", mode="canary", weight=50)
    buffer = rollout.StatsBuffer(replica="pod-1")
    at = T0.timestamp()
    for i in range(10):
        buffer.observe("web", d.revision, "stable", latency_ms=1.5, outputs=["1"], at=at + i)
    buffer.observe("web", d.revision, "candidate", latency_ms=30.0, error=True, at=at)
    assert buffer.flush(reg.db) == 2  # (stable, window 0), (candidate, window 0)
    assert buffer.flush(reg.db) == 0
    s = rollout.route_summary(reg.db, "web")
    assert (s.stable.requests, s.stable.output_counts, s.stable.latency_counts[2]) == (
        10, {"1": 10}, 10)  # fmt: skip
    assert (s.candidate.requests, s.candidate.errors, s.candidate.latency_counts[6]) == (1, 1, 1)
