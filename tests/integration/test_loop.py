"""The loop end to end with a real registry, pipeline, gate and rollout on SQLite and PostgreSQL:
a trigger (by hand, or a firing alert rule) retrains, gates, canaries and promotes; with
``require_approval`` the candidate waits for a person; racing writers record one transition;
the cooldown holds triggers off. (The loops that end rejected: ``test_loop_endings``.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelyard import loop, rollout
from modelyard.errors import ConflictError, DeploymentNotFoundError
from modelyard.loop import LoopController
from modelyard.loop import state as loop_state
from modelyard.settings import AlertRule
from modelyard.store.schema import alert_incidents, alert_states
from tests.conftest import database_url
from tests.integration._loop import Project, good_traffic, make_data, make_project, steps_until


@pytest.fixture
def project(backend: str, tmp_path: Path) -> Iterator[Project]:
    made = make_project(tmp_path / "project", database_url(backend, tmp_path))
    yield made
    made.registry.close()


def test_a_trigger_retrains_gates_canaries_and_promotes(project: Project) -> None:
    reg = project.registry
    controller = LoopController(reg, project.settings)
    assert controller.step("churn").action == "none"  # no trigger holds
    loop.trigger(reg.db, "churn", "labels show decay", actor="alice")
    moves = steps_until(controller, "canary")
    assert [m.action for m in moves] == ["training", "gating", "canary"]
    d = rollout.get_deployment(reg.db, "churn")
    assert (d.stable_ref, d.candidate_ref, d.auto, d.steps) == (
        "churn/1", "churn/2", True, (50.0, 100.0))  # fmt: skip
    assert controller.step("churn").action == "none"  # no traffic yet
    good_traffic(reg)
    assert rollout.step(reg, "churn").action == "advance"  # a rollout controller moves it,
    good_traffic(reg)
    assert controller.step("churn").action == "promoted"  # or the loop's own rollout round
    assert rollout.get_deployment(reg.db, "churn").stable_ref == "churn/2"
    assert reg.get_version("churn@production").version == 2

    [status] = loop.loop_status(reg.db, "churn")
    assert (status.state, status.candidate, status.loop) == ("promoted", "churn/2", 1)
    assert status.trigger == {"kind": "manual", "reason": "labels show decay", "by": "alice"}
    assert status.trigger_key is not None and status.trigger_key.startswith("manual:")
    assert status.ended_at == status.since == status.transitions[-1].at
    steps = [(t.from_state, t.to_state) for t in status.transitions]
    assert steps == [("idle", "triggered"), ("triggered", "training"), ("training", "gating"),
                     ("gating", "canary"), ("canary", "promoted")]  # fmt: skip
    evidence = {t.to_state: t.evidence for t in status.transitions}
    assert evidence["training"]["run_id"] == evidence["gating"]["run_id"] == status.run_id
    assert evidence["training"]["data"]["holdout_rows"] == 90  # 30% of the 300 training rows
    assert evidence["gating"]["version"] == "churn/2"
    gate = evidence["canary"]["gate"]
    assert gate["passed"] and (gate["candidate"], gate["baseline"]) == ("churn/2", "churn/1")
    accuracy = gate["metrics"][0]
    assert accuracy["metric"] == "accuracy" and accuracy["candidate"] > accuracy["baseline"]
    actions = [v["action"] for v in evidence["promoted"]["rollout"]]
    assert actions == ["advance", "promote"]
    # a new trigger is needed for another loop; the same one never starts a second
    assert controller.step("churn").action == "none"


def test_a_firing_alert_starts_one_loop_per_incident(project: Project) -> None:
    reg = project.registry
    alerts = project.settings.monitoring.alerts.model_copy(
        update={"rules": [AlertRule(name="churn-decay", deployment="churn",
                                    metric="performance:accuracy", op="<", threshold=0.8)]}
    )  # fmt: skip
    settings = project.settings.model_copy(
        update={"monitoring": project.settings.monitoring.model_copy(update={"alerts": alerts})}
    )
    looped = Project(project.root, settings, reg).with_loop(trigger={"alerts": ["churn-decay"]})
    controller = LoopController(reg, looped)
    now = datetime.now(UTC)
    with reg.db.write() as conn:
        incident = conn.execute(
            alert_incidents.insert().values(
                rule="churn-decay", deployment="churn", metric="performance:accuracy", op="<",
                threshold=0.8, window="1h", value=0.61, last_value=0.6, started_at=now,
                fired_at=now, notified=True, resolve_notified=False,
            ).returning(alert_incidents.c.id)
        ).scalar_one()  # fmt: skip
        conn.execute(alert_states.insert().values(
            rule="churn-decay", deployment="churn", incident_id=incident, revision=1))  # fmt: skip
    first = controller.step("churn")
    assert (first.action, first.loop) == ("triggered", 1)
    [status] = loop.loop_status(reg.db, "churn")
    assert status.trigger is not None
    assert (status.trigger["kind"], status.trigger["rule"], status.trigger["value"]) == (
        "alert", "churn-decay", 0.61)  # fmt: skip
    loop.reject(reg.db, "churn", "not now", "bob")
    assert controller.step("churn").action == "rejected"
    # still firing, same incident, cooldown 0: no second loop for that trigger
    assert controller.step("churn").action == "none"
    assert loop.loop_status(reg.db, "churn")[0].loop == 1


def test_approval_holds_the_candidate_until_a_person_approves(project: Project) -> None:
    reg = project.registry
    controller = LoopController(reg, project.with_loop(require_approval=True))
    loop.trigger(reg.db, "churn", "test")
    steps_until(controller, "canary")
    d = rollout.get_deployment(reg.db, "churn")
    assert (d.auto, d.weight) == (False, 50.0)
    good_traffic(reg)
    assert controller.step("churn").action == "none"  # advanced the canary to 100%
    assert rollout.get_deployment(reg.db, "churn").weight == 100.0
    good_traffic(reg)
    assert controller.step("churn").action == "waiting_approval"
    for _ in range(2):  # neither the loop nor the rollout controller promotes it
        assert controller.step("churn").action == "none"
        rollout.step(reg, "churn")
    assert rollout.get_deployment(reg.db, "churn").candidate_ref == "churn/2"
    loop.approve(reg.db, "churn", "metrics look right", "carol")
    with pytest.raises(Exception, match="already approved by carol"):
        loop.approve(reg.db, "churn", "again", "dave")
    assert controller.step("churn").action == "promoted"
    assert rollout.get_deployment(reg.db, "churn").stable_ref == "churn/2"
    [status] = loop.loop_status(reg.db, "churn")
    last = status.transitions[-1]
    assert (last.to_state, last.evidence["approved_by"]) == ("promoted", "carol")
    assert any(t.evidence.get("decision") == "approved" and t.actor == "carol"
               for t in status.transitions)  # fmt: skip


def test_cooldown_ignores_triggers_after_a_loop_ends(project: Project) -> None:
    reg = project.registry
    controller = LoopController(reg, project.with_loop(cooldown="1h", require_approval=True))
    loop.trigger(reg.db, "churn", "test")
    loop.reject(reg.db, "churn", "no", "bob")
    assert controller.step("churn").action == "rejected"
    later = datetime.now(UTC) + timedelta(minutes=30)
    result = controller.step("churn", now=later)
    assert result.action == "cooldown" and "left" in result.reason


def test_racing_writers_record_one_transition_and_one_loop_per_trigger(project: Project) -> None:
    db = project.registry.db
    current = loop_state.ensure_state(db, "churn")
    barrier = threading.Barrier(2)
    results: list[object] = []

    def start(key: str) -> None:
        barrier.wait()
        info = {"kind": "manual", "by": key}
        results.append(loop_state.start(db, current, key=key, trigger_info=info, actor=key))

    threads = [threading.Thread(target=start, args=(key,)) for key in ("k1", "k2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r is not None for r in results) == 1
    [status] = loop.loop_status(db, "churn")
    assert [(t.from_state, t.to_state) for t in status.transitions] == [("idle", "triggered")]
    key = status.transitions[0].trigger_key
    loop.reject(db, "churn", "no", "bob")
    assert LoopController(project.registry, project.settings).step("churn").action == "rejected"
    ended = loop_state.read_state(db, "churn")
    assert ended is not None and ended.state == "rejected"
    assert loop_state.start(db, ended, key=str(key), trigger_info={}, actor="x") is None
    assert loop_state.seen_trigger(db, "churn", str(key))


def test_two_controllers_racing_on_a_loop_train_once(project: Project) -> None:
    loop.trigger(project.registry.db, "churn", "test")
    controllers = [LoopController(project.registry, project.settings) for _ in range(2)]
    assert controllers[0].step("churn").action == "training"
    barrier = threading.Barrier(2)
    actions: list[str] = []

    def step(controller: LoopController) -> None:
        barrier.wait()
        actions.append(controller.step("churn").action)

    threads = [threading.Thread(target=step, args=(c,)) for c in controllers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # one trains; the other finds the lease taken, or (had it come after) the loop gated
    assert sorted(actions) in (["busy", "gating"], ["canary", "gating"])
    assert project.registry.get_model("churn").latest_version == 2


def test_no_loop_starts_while_the_deployment_has_a_candidate(project: Project) -> None:
    reg = project.registry
    from sklearn.linear_model import LogisticRegression

    data = make_data(20, seed=3)
    model = LogisticRegression().fit(data[["x1", "x2"]], data["target"])
    reg.register(model, name="churn", data=data[["x1", "x2"]])
    rollout.start_candidate(reg, "churn", ref="churn/2", mode="canary", weight=10)
    with pytest.raises(ConflictError, match=r"has candidate churn/2 \(rolling\); promote or abort"):
        loop.trigger(reg.db, "churn", "by hand")
    with pytest.raises(DeploymentNotFoundError):
        loop.trigger(reg.db, "nope", "by hand")
    controller = LoopController(reg, project.with_loop(trigger={"max_age": "0s"}))
    busy = controller.step("churn")
    assert (busy.action, busy.reason) == ("none", "deployment has a candidate (churn/2, rolling)")
    rollout.abort(reg, "churn", reason="not this one")
    result = controller.step("churn")
    assert (result.action, result.loop) == ("triggered", 1)
    [status] = loop.loop_status(reg.db, "churn")
    assert status.trigger is not None
    assert (status.trigger["kind"], status.trigger["version"]) == ("max_age", "churn/1")
    assert status.transitions[0].trigger_key == "age:churn/1"


def test_a_rejection_after_the_candidate_was_promoted_records_the_promotion(
    project: Project,
) -> None:
    reg = project.registry
    controller = LoopController(reg, project.settings)
    loop.trigger(reg.db, "churn", "test")
    steps_until(controller, "canary")
    rollout.promote(reg, "churn", reason="looks good", actor="frank")  # by hand, meanwhile
    loop.reject(reg.db, "churn", "too late", "gina")
    result = controller.step("churn")
    assert (result.action, result.reason) == (
        "promoted", "churn/2 promoted (the rejection came after the promotion)")  # fmt: skip
    [status] = loop.loop_status(reg.db, "churn")
    evidence = status.transitions[-1].evidence
    assert evidence["rejected_by"] == "gina"
    assert [(e["action"], e["actor"]) for e in evidence["rollout"]] == [("promote", "frank")]
