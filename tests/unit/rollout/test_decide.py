"""The controller's decision, as a pure function of a deployment, a verdict and the time."""

from __future__ import annotations

from datetime import timedelta

from modelyard.rollout.controller import decide
from modelyard.rollout.types import Policy, Verdict
from tests.unit.rollout._records import NOW, deployment

PASS = Verdict(status="pass")


def test_bakes_then_advances_then_promotes() -> None:
    d = deployment(weight=10.0, bake_s=60.0)
    early = decide(d, PASS, now=NOW + timedelta(seconds=20))
    assert (early.action, early.reason) == ("wait", "baking 10%: 40s left")
    move = decide(d, PASS, now=NOW + timedelta(seconds=60))
    assert (move.action, move.weight) == ("advance", 50.0)
    assert move.reason == "passed 10% for 60s; advancing to 50%"
    last = decide(deployment(weight=100.0), PASS, now=NOW + timedelta(seconds=61))
    assert (last.action, last.reason) == ("promote", "passed the last step (100%) for 60s")


def test_steps_need_not_end_at_100() -> None:
    d = deployment(weight=50.0, steps=(10.0, 50.0))
    assert decide(d, PASS, now=NOW + timedelta(hours=1)).action == "promote"


def test_breach_rolls_back_or_pauses_per_policy() -> None:
    breach = Verdict(status="breach", reasons=("candidate error rate 20.00% is above 5.00%", "x"))
    move = decide(deployment(), breach, now=NOW)
    assert move.action == "rollback"
    assert move.reason == "candidate error rate 20.00% is above 5.00%; x"
    paused = decide(deployment(policy=Policy(on_breach="pause")), breach, now=NOW)
    assert paused.action == "pause"


def test_waits_holds_and_idles() -> None:
    wait = Verdict(status="wait", reasons=("candidate has 3 of 100 requests",))
    assert decide(deployment(), wait, now=NOW).reason == "waiting: candidate has 3 of 100 requests"
    assert decide(deployment(auto=False), PASS, now=NOW + timedelta(days=1)).action == "hold"
    assert decide(deployment(state="paused"), PASS, now=NOW).action == "none"
    assert decide(deployment(state="promoted"), PASS, now=NOW).action == "none"


def test_shadow_promotes_after_its_bake() -> None:
    d = deployment(mode="shadow", weight=0.0, steps=(), shadow_sample=0.2)
    assert decide(d, PASS, now=NOW + timedelta(seconds=30)).reason == "baking shadow 20%: 30s left"
    assert decide(d, PASS, now=NOW + timedelta(seconds=60)).action == "promote"
