"""A loop that cannot promote ends with its reason, an alert to a real webhook and the serving
version unchanged: a failed pipeline, a pipeline that registers nothing, a failed gate, a
rolled-back canary, a person's rejection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard import loop, rollout
from modelyard.loop import LoopController
from tests.integration import test_alert_delivery
from tests.integration._loop import Project, feed, good_traffic, make_project, steps_until
from tests.integration._server import free_port
from tests.integration.test_alert_delivery import Receiver

receiver = test_alert_delivery.receiver  # a webhook on loopback that records each POST


@pytest.fixture
def project(tmp_path: Path, receiver: Receiver) -> Iterator[Project]:
    """On SQLite: the loop's writes are the same on PostgreSQL (``test_loop`` runs on both)."""
    made = make_project(
        tmp_path / "project",
        f"sqlite:///{tmp_path / 'meta.db'}",
        monitoring={"alerts": {"webhooks": [receiver.url], "attempts": 1}},
    )
    yield made
    made.registry.close()


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


def test_an_alert_that_cannot_be_delivered_is_sent_again_next_round(
    project: Project, receiver: Receiver
) -> None:
    reg = project.registry
    alerts = project.settings.monitoring.alerts.model_copy(
        update={"webhooks": [f"http://127.0.0.1:{free_port()}/hook"]}
    )
    down = project.settings.model_copy(
        update={"monitoring": project.settings.monitoring.model_copy(update={"alerts": alerts})}
    )
    loop.trigger(reg.db, "churn", "test")
    loop.reject(reg.db, "churn", "no", "bob")
    assert LoopController(reg, down).step("churn").action == "rejected"
    [status] = loop.loop_status(reg.db, "churn")
    assert status.notified is False
    assert status.notify_error is not None and "connection failed" in status.notify_error
    assert receiver.posts == []
    # the webhook is back (the settings name the receiver): the next round delivers it
    assert LoopController(reg, project.settings).step("churn").action == "none"
    ended(project, receiver, "rejected by bob: no")


def test_a_candidate_waiting_for_approval_is_still_rolled_back_on_a_breach(
    project: Project, receiver: Receiver
) -> None:
    reg = project.registry
    controller = LoopController(reg, project.with_loop(require_approval=True))
    loop.trigger(reg.db, "churn", "test")
    steps_until(controller, "canary")
    for _ in range(2):
        good_traffic(reg)
        controller.step("churn")
    assert loop.loop_status(reg.db, "churn")[0].state == "waiting_approval"
    feed(reg, "stable", 100)
    feed(reg, "candidate", 100, errors=40)
    assert controller.step("churn").action == "rejected"
    ended(project, receiver, "canary rolled back")
    assert rollout.history(reg.db, "churn")[0].action == "rollback"
