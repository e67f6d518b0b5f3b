"""The loop end to end with a real registry, pipeline, gate and rollout on SQLite and PostgreSQL:
a trigger (by hand, or a firing alert rule) retrains, gates, canaries and promotes; a failed
pipeline, a failed gate, a rolled-back canary and a person's rejection each end the loop with its
reason, an alert to a real webhook, and the serving version unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelyard import loop, rollout
from modelyard.loop import LoopController, LoopStep
from modelyard.settings import AlertRule
from modelyard.store.schema import alert_incidents, alert_states
from tests.conftest import database_url
from tests.integration import test_alert_delivery
from tests.integration._loop import Project, feed, good_traffic, make_project
from tests.integration.test_alert_delivery import Receiver

receiver = test_alert_delivery.receiver  # a webhook on loopback that records each POST


@pytest.fixture
def project(backend: str, tmp_path: Path, receiver: Receiver) -> Iterator[Project]:
    made = make_project(
        tmp_path / "project",
        database_url(backend, tmp_path),
        monitoring={"alerts": {"webhooks": [receiver.url], "attempts": 1}},
    )
    yield made
    made.registry.close()


def steps_until(controller: LoopController, state: str, limit: int = 8) -> list[LoopStep]:
    seen = []
    for _ in range(limit):
        result = controller.step("churn")
        seen.append(result)
        if result.state == state:
            return seen
    raise AssertionError(f"the loop did not reach {state}: {seen}")


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
    for _ in range(2):  # the rollout controller moves it; the loop watches
        assert controller.step("churn").action == "none"
        good_traffic(reg)
        rollout.step(reg, "churn")
    assert controller.step("churn").action == "promoted"
    assert rollout.get_deployment(reg.db, "churn").stable_ref == "churn/2"
    assert reg.get_version("churn@production").version == 2

    [status] = loop.loop_status(reg.db, "churn")
    assert (status.state, status.candidate, status.loop) == ("promoted", "churn/2", 1)
    assert status.trigger == {"kind": "manual", "reason": "labels show decay", "by": "alice"}
    steps = [(t.from_state, t.to_state) for t in status.transitions]
    assert steps == [("idle", "triggered"), ("triggered", "training"), ("training", "gating"),
                     ("gating", "canary"), ("canary", "promoted")]  # fmt: skip
    evidence = {t.to_state: t.evidence for t in status.transitions}
    assert evidence["training"]["run_id"] == evidence["gating"]["run_id"] == status.run_id
    assert evidence["training"]["data"]["holdout_rows"] == 90  # 30% of the 300 training rows
    assert evidence["gating"]["version"] == "churn/2"
    gate = evidence["canary"]["gate"]
    assert gate["passed"] and gate["baseline_version"] == "churn/1"
    accuracy = gate["results"][0]
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


def ended(project: Project, receiver: Receiver, reason_part: str) -> None:
    """The loop ended rejected with the reason, the alert reached the webhook, churn/1 serves."""
    [status] = loop.loop_status(project.registry.db, "churn")
    assert status.state == "rejected"
    assert status.reason is not None and reason_part in status.reason, status.reason
    assert status.notified is True
    [sent] = receiver.posts
    post = sent.body
    assert (post["kind"], post["deployment"], post["state"], post["loop"]) == (
        "loop", "churn", "rejected", 1)  # fmt: skip
    assert reason_part in post["reason"]
    assert sent.key == "loop:churn:1:rejected"
    d = rollout.get_deployment(project.registry.db, "churn")
    assert (d.stable_ref, d.candidate_ref) == ("churn/1", None)
    assert project.registry.get_version("churn@production").version == 1


def test_a_failed_pipeline_ends_the_loop_with_an_alert(
    project: Project, receiver: Receiver
) -> None:
    settings = project.with_loop(train={"params": {"quality": "broken"}})
    controller = LoopController(project.registry, settings)
    loop.trigger(project.registry.db, "churn", "test")
    moves = steps_until(controller, "rejected")
    assert [m.action for m in moves] == ["training", "rejected"]
    ended(project, receiver, "the training data is unusable")


def test_a_pipeline_that_registers_nothing_ends_the_loop(
    project: Project, receiver: Receiver
) -> None:
    settings = project.with_loop(train={"params": {"register_model": False}})
    controller = LoopController(project.registry, settings)
    loop.trigger(project.registry.db, "churn", "test")
    steps_until(controller, "rejected")
    ended(project, receiver, "registered no new version of model 'churn'")


def test_a_failed_gate_ends_the_loop_with_an_alert(project: Project, receiver: Receiver) -> None:
    settings = project.with_loop(train={"params": {"quality": "bad"}})
    controller = LoopController(project.registry, settings)
    loop.trigger(project.registry.db, "churn", "test")
    assert [m.action for m in steps_until(controller, "rejected")] == [
        "training", "gating", "rejected"]  # fmt: skip
    ended(project, receiver, "gate failed for churn/2 against churn/1")
    [status] = loop.loop_status(project.registry.db, "churn")
    assert status.transitions[-1].evidence["gate"]["passed"] is False


def test_a_rolled_back_canary_ends_the_loop_with_an_alert(
    project: Project, receiver: Receiver
) -> None:
    reg = project.registry
    controller = LoopController(reg, project.settings)
    loop.trigger(reg.db, "churn", "test")
    steps_until(controller, "canary")
    feed(reg, "stable", 100)
    feed(reg, "candidate", 100, errors=40)
    assert rollout.step(reg, "churn").action == "rollback"
    assert controller.step("churn").action == "rejected"
    ended(project, receiver, "canary rolled back")
    [status] = loop.loop_status(reg.db, "churn")
    [rollback] = status.transitions[-1].evidence["rollout"]
    assert rollback["action"] == "rollback" and rollback["detail"]["verdict"]["status"] == "breach"


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


def test_a_rejection_aborts_the_candidate_and_alerts(project: Project, receiver: Receiver) -> None:
    reg = project.registry
    controller = LoopController(reg, project.with_loop(require_approval=True))
    loop.trigger(reg.db, "churn", "test")
    steps_until(controller, "canary")
    for _ in range(2):
        good_traffic(reg)
        controller.step("churn")
    assert loop.loop_status(reg.db, "churn")[0].state == "waiting_approval"
    loop.reject(reg.db, "churn", "the new data is suspect", "erin")
    assert controller.step("churn").action == "rejected"
    ended(project, receiver, "rejected by erin: the new data is suspect")
    assert rollout.history(reg.db, "churn")[0].action == "abort"


def test_cooldown_ignores_triggers_after_a_loop_ends(project: Project) -> None:
    reg = project.registry
    controller = LoopController(reg, project.with_loop(cooldown="1h", require_approval=True))
    loop.trigger(reg.db, "churn", "test")
    loop.reject(reg.db, "churn", "no", "bob")
    assert controller.step("churn").action == "rejected"
    later = datetime.now(UTC) + timedelta(minutes=30)
    result = controller.step("churn", now=later)
    assert result.action == "cooldown" and "left" in result.reason
