"""The controller against real SQLite and PostgreSQL: a good candidate goes through every step
and is promoted, a bad one is rolled back with the reason in the audit log, and only one of
several racing controllers acts."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modelyard import rollout
from modelyard.registry import Registry
from modelyard.rollout import Lease, StepResult
from modelyard.rollout.buckets import LATENCY_BUCKETS
from modelyard.store.db import Database
from tests.conftest import SKIP_POSTGRES, database_url

X = np.random.default_rng(1).normal(size=(60, 3))
BAKE_S = 60.0


@pytest.fixture
def reg(registry: Registry) -> Registry:
    """churn/1 (production) and churn/2, deployed as 'web' on churn@production."""
    for i in range(2):
        registry.register(LogisticRegression().fit(X, (X[:, i] > 0).astype(int)), name="churn",
                          data=X)  # fmt: skip
    registry.set_alias("churn/1", "production")
    rollout.deploy(registry, "web", model_ref="churn@production")
    return registry


def feed(
    registry: Registry,
    route: str,
    requests: int,
    *,
    errors: int = 0,
    bucket: int = 3,
    outputs: dict[str, int] | None = None,
    replica: str = "pod-a",
) -> None:
    """Record traffic for the deployment's current revision, as a server replica would."""
    counts = [0] * LATENCY_BUCKETS
    counts[bucket] = requests
    rollout.record_route_stats(
        registry.db, deployment="web", revision=rollout.deployment_revision(registry.db, "web"),
        replica=replica, window_start=datetime.now(UTC), route=route,  # type: ignore[arg-type]
        requests=requests, errors=errors, latency_counts=counts,
        output_counts=outputs if outputs is not None else {"0": requests // 2,
                                                           "1": requests - requests // 2},
    )  # fmt: skip


def good_traffic(registry: Registry, weight: float) -> None:
    if weight < 100:
        feed(registry, "stable", 1000)
    feed(registry, "candidate", 200)


def started(registry: Registry) -> datetime:
    at = rollout.get_deployment(registry.db, "web").step_started_at
    assert at is not None
    return at


def test_a_good_candidate_advances_through_every_step_and_is_promoted(reg: Registry) -> None:
    rollout.start_candidate(reg, "web", ref="churn/2", mode="canary", steps=[10, 50, 100],
                            bake_s=BAKE_S, auto=True)  # fmt: skip
    assert rollout.step(reg, "web").action == "wait"  # no traffic yet
    for weight, action in [(10, "advance"), (50, "advance"), (100, "promote")]:
        good_traffic(reg, weight)
        baking = rollout.step(reg, "web", now=started(reg) + timedelta(seconds=BAKE_S / 2))
        assert (baking.action, baking.reason) == ("wait", f"baking {weight}%: 30s left")
        assert baking.verdict is not None and baking.verdict.status == "pass"
        done = rollout.step(reg, "web", now=started(reg) + timedelta(seconds=BAKE_S))
        assert done.action == action, done
    d = rollout.get_deployment(reg.db, "web")
    assert (d.state, d.stable_ref, d.candidate_ref, d.stable_alias) == (
        "promoted", "churn/2", None, "production")  # fmt: skip
    assert reg.get_version("churn@production").version == 2
    assert "deployment web promoted churn/2 (controller)" in (
        reg.history("churn", alias="production")[0].reason or "")  # fmt: skip
    events = list(reversed(rollout.history(reg.db, "web")))
    assert [(e.action, e.actor) for e in events] == [
        ("deploy", "tester"), ("start", "tester"), ("advance", "controller"),
        ("advance", "controller"), ("promote", "controller"),
    ]  # fmt: skip
    assert [e.detail.get("to") for e in events[2:]] == [50.0, 100.0, "churn/2"]
    assert events[2].reason == "passed 10% for 60s; advancing to 50%"
    assert rollout.step(reg, "web").action == "none"


def test_a_failing_candidate_is_rolled_back_with_the_reason(reg: Registry) -> None:
    rollout.start_candidate(reg, "web", ref="churn/2", mode="canary", steps=[10, 50, 100],
                            bake_s=BAKE_S, auto=True)  # fmt: skip
    feed(reg, "stable", 1000, errors=2)
    feed(reg, "candidate", 100, errors=20)  # 20% of its requests fail
    result = rollout.step(reg, "web")  # judged at once: a breach does not wait for the bake
    assert result.action == "rollback"
    d = rollout.get_deployment(reg.db, "web")
    assert (d.state, d.stable_ref, d.candidate_ref, d.weight) == ("rolled_back", "churn/1", None,
                                                                  0.0)  # fmt: skip
    assert reg.get_version("churn@production").version == 1
    last = rollout.history(reg.db, "web")[0]
    assert (last.action, last.actor) == ("rollback", "controller")
    assert last.reason == (
        "candidate error rate 20.00% is above 5.00%; candidate error rate 20.00% is above 2x "
        "the stable's 0.20%"
    )
    assert last.detail["candidate"] == "churn/2"
    assert last.detail["verdict"]["status"] == "breach"
    assert last.detail["traffic"]["candidate"]["errors"] == 20


def test_a_slow_candidate_is_rolled_back_on_p99(reg: Registry) -> None:
    rollout.start_candidate(reg, "web", ref="churn/2", mode="ab", weight=50,
                            sticky_header="X-User-Id", auto=True)  # fmt: skip
    feed(reg, "stable", 500, bucket=3)  # (2, 5] ms
    feed(reg, "candidate", 500, bucket=6)  # (20, 50] ms
    assert rollout.step(reg, "web").action == "rollback"
    last = rollout.history(reg.db, "web")[0]
    assert last.reason == "candidate p99 49.7 ms is above 1.5x the stable's 5.0 ms"


def test_a_breach_pauses_when_the_policy_says_so(reg: Registry) -> None:
    rollout.start_candidate(reg, "web", ref="churn/2", mode="shadow", sample=0.5,
                            policy={"on_breach": "pause"})  # fmt: skip
    feed(reg, "stable", 400, outputs={"0": 400})
    feed(reg, "candidate", 200, outputs={"1": 200})  # predicts the other class every time
    assert rollout.step(reg, "web").action == "pause"
    d = rollout.get_deployment(reg.db, "web")
    assert (d.state, d.candidate_ref) == ("paused", "churn/2")
    last = rollout.history(reg.db, "web")[0]
    assert last.reason == "output distance 1.000 is above 0.200 (Jensen-Shannon, base 2)"
    assert rollout.step(reg, "web").action == "none"  # a person decides now


def test_without_auto_the_controller_only_guards(reg: Registry) -> None:
    rollout.start_candidate(reg, "web", ref="churn/2", mode="canary", weight=10)
    good_traffic(reg, 10)
    later = datetime.now(UTC) + timedelta(days=1)
    result = rollout.step(reg, "web", now=later)
    assert result.action == "hold"
    assert rollout.deployment_revision(reg.db, "web") == 2  # nothing changed


def test_status_shows_the_traffic_verdict_and_next_move(reg: Registry) -> None:
    rollout.start_candidate(reg, "web", ref="churn/2", mode="canary", steps=[10, 100],
                            bake_s=BAKE_S, auto=True)  # fmt: skip
    good_traffic(reg, 10)
    status = rollout.rollout_status(reg.db, "web", now=started(reg) + timedelta(seconds=BAKE_S))
    assert (status.summary.stable.requests, status.summary.candidate.requests) == (1000, 200)
    assert status.verdict.status == "pass"
    assert (status.next.action, status.next.weight) == ("advance", 100.0)


# -- one controller at a time --------------------------------------------------------------------


def test_the_lease_admits_one_holder(reg: Registry) -> None:
    first, second = Lease(reg.db, "web"), Lease(reg.db, "web")
    try:
        assert first.acquire()
        assert first.acquire()  # renewing is fine
        assert not second.acquire()
        assert Lease(reg.db, "other").acquire()  # other deployments are independent
        rollout.start_candidate(reg, "web", ref="churn/2", mode="canary", weight=10, auto=True)
        assert rollout.step(reg, "web").action == "busy"
        first.release()
        assert second.acquire()
        assert not first.acquire()
    finally:
        first.release()
        second.release()


def test_an_expired_sqlite_lease_is_taken_over(sqlite_registry: Registry) -> None:
    first = Lease(sqlite_registry.db, "web", ttl_s=10)
    second = Lease(sqlite_registry.db, "web", ttl_s=10)
    now = datetime.now(UTC)
    assert first.acquire(now)
    assert not second.acquire(now + timedelta(seconds=9))
    assert second.acquire(now + timedelta(seconds=11))  # the first holder stopped renewing
    assert not first.acquire(now + timedelta(seconds=12))


@pytest.mark.postgres
@SKIP_POSTGRES
def test_a_dead_postgres_session_frees_its_lease(tmp_path: Path) -> None:
    db = Database(database_url("postgres", tmp_path))
    try:
        first = Lease(db, "web")
        assert first.acquire()
        assert not Lease(db, "web").acquire()
        first._discard_connection()  # what happens when the controller's process dies
        second = Lease(db, "web")
        # the server frees the lock when its backend notices the closed connection: at once
        # on a quiet machine, within moments on a busy one
        deadline = time.monotonic() + 10
        while not second.acquire() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert second.held
        second.release()
    finally:
        db.close()


def race(registry: Registry, name: str, *, now: datetime, players: int = 2) -> list[StepResult]:
    """``players`` controllers call ``step`` at the same moment, each with its own lease."""
    gate = threading.Barrier(players)
    results: list[StepResult] = []
    lock = threading.Lock()

    def play() -> None:
        gate.wait()
        result = rollout.step(registry, name, now=now)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=play) for _ in range(players)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_racing_controllers_act_once_per_round(reg: Registry) -> None:
    rollout.start_candidate(reg, "web", ref="churn/2", mode="canary", steps=[10, 20, 30, 50, 100],
                            bake_s=BAKE_S, auto=True)  # fmt: skip
    for expected in ["advance", "advance", "advance", "advance", "promote"]:
        good_traffic(reg, rollout.get_deployment(reg.db, "web").weight)
        results = race(reg, "web", now=started(reg) + timedelta(seconds=BAKE_S))
        actions = sorted(r.action for r in results)
        assert len(actions) == 2
        acted = [a for a in actions if a == expected]
        assert len(acted) == 1, actions
        # the other found the lease taken, or came second and judged the new state
        assert set(actions) - {expected} <= {"busy", "wait", "none"}, actions
    actions = [e.action for e in reversed(rollout.history(reg.db, "web"))]
    assert actions == ["deploy", "start", "advance", "advance", "advance", "advance", "promote"]


def test_two_controller_loops_and_a_feeding_server_finish_one_rollout(reg: Registry) -> None:
    rollout.start_candidate(reg, "web", ref="churn/2", mode="canary", steps=[10, 50, 100],
                            auto=True, policy={"min_requests": 10})  # fmt: skip
    stop = threading.Event()
    seen: list[StepResult] = []

    def serve() -> None:  # records traffic for each new revision, as a replica would
        fed = -1
        while not stop.is_set():
            revision = rollout.deployment_revision(reg.db, "web")
            if revision != fed:
                good_traffic(reg, 50)
                fed = revision
            time.sleep(0.02)

    def control() -> None:
        rollout.run(reg, "web", interval_s=0.05, stop=stop, on_step=seen.append)

    threads = [threading.Thread(target=f) for f in (serve, control, control)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while rollout.get_deployment(reg.db, "web").state != "promoted":
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    actions = [e.action for e in reversed(rollout.history(reg.db, "web"))]
    assert actions == ["deploy", "start", "advance", "advance", "promote"]
    acted = [r.action for r in seen if r.action in ("advance", "promote", "rollback", "pause")]
    assert acted == ["advance", "advance", "promote"]
    assert "busy" in {r.action for r in seen}  # the second loop was there, and was kept out


def test_run_stops_once_settled_and_refuses_unknown_names(reg: Registry) -> None:
    rollout.start_candidate(reg, "web", ref="churn/2", mode="canary", weight=100, auto=True)
    feed(reg, "candidate", 200)
    last = rollout.run(reg, "web", interval_s=0.01, stop=threading.Event(), until_settled=True)
    assert last is not None and last.action == "promote"
    with pytest.raises(rollout.DeploymentNotFoundError):
        rollout.run(reg, "nope", interval_s=0.01, stop=threading.Event())
