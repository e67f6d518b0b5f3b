"""A canary judged on business outcomes: real requests through a real ``yard serve`` with the
prediction log, outcomes posted to ``/v1/outcomes``, and the controller's ``step``. A candidate
whose outcomes are lower is rolled back; one whose outcomes are the same is not."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard import rollout
from modelyard.cli.main import main
from modelyard.errors import ConfigError
from modelyard.registry import Registry
from modelyard.rollout import StepResult
from tests.integration._server import Server, server_env
from tests.integration.conftest import ServedHome
from tests.integration.test_rollout_server import FAST, hgb_body

POLICY = {"min_requests": 20, "min_outcomes": 20, "max_output_distance": None,
          "p99_floor_ms": 200}  # fmt: skip
#: Outcomes cycle through these per route: the same mean on both routes unless shifted.
VALUES = (8.0, 10.0, 12.0, 10.0)


@pytest.fixture
def registry(served_home: ServedHome) -> Iterator[Registry]:
    reg = served_home.registry()
    yield reg
    reg.close()


def canary(registry: Registry, name: str, *, auto: bool = False) -> None:
    rollout.deploy(registry, name, model_ref="hgb/1")
    rollout.start_candidate(registry, name, ref="hgb/2", mode="canary", weight=50,
                            steps=[50], auto=auto, policy=POLICY, prediction_log=True)  # fmt: skip


def requests(client: httpx.Client, name: str, body: dict[str, object]) -> dict[str, list[str]]:
    """Requests with known ids until each route answered at least 20 (the policy's minimum);
    the ids each route answered. Routes are drawn at random, 50/50: 60 requests left one route
    under 20 in 1 run in 160 per deployment (binomial), so the count is not fixed."""
    routes: dict[str, list[str]] = {"stable": [], "candidate": []}
    for i in range(200):
        answer = client.post(f"/v2/models/{name}/infer", json=body,
                             headers={"X-Request-Id": f"{name}-{i}"})  # fmt: skip
        assert answer.status_code == 200, answer.text
        routes[answer.headers["x-route"]].append(f"{name}-{i}")
        if i >= 59 and min(len(ids) for ids in routes.values()) >= 20:
            break
    assert min(len(ids) for ids in routes.values()) >= 20, routes
    return routes


def outcomes(routes: dict[str, list[str]], candidate_shift: float) -> list[dict[str, object]]:
    return [
        {
            "request_id": rid,
            "value": VALUES[i % 4] + (candidate_shift if route == "candidate" else 0),
        }
        for route, ids in routes.items()
        for i, rid in enumerate(ids)
    ]


def state(registry: Registry, name: str) -> str:
    return rollout.get_deployment(registry.db, name).state


def mean(count: int) -> float:
    """The mean of the first ``count`` values of the cycle, by hand."""
    return sum(VALUES[i % 4] for i in range(count)) / count


def step_until(registry: Registry, name: str, log: Path, done: str) -> StepResult:
    """``step`` until the controller stops waiting on traffic (the server flushes its
    statistics and its log every second) or says ``done``."""
    deadline = time.monotonic() + 30
    while True:
        result = rollout.step(registry, name, log_root=str(log))
        if done in result.reason or result.action not in ("wait",) or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


def test_a_candidate_with_lower_outcomes_is_rolled_back_and_an_equal_one_is_not(
    served_home: ServedHome, registry: Registry, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    canary(registry, "revenue-worse")
    canary(registry, "revenue-same")
    canary(registry, "revenue-auto", auto=True)  # the server's own controller judges this one
    env = server_env(served_home.home, MODELYARD_MONITORING__LOG_ROOT=str(log),
                     MODELYARD_MONITORING__FLUSH_INTERVAL_S="0.2", **FAST)  # fmt: skip
    body = hgb_body(served_home)
    server = Server(served_home.home, "--deployment", "revenue-worse", "--deployment",
                    "revenue-same", "--deployment", "revenue-auto", "--log-predictions",
                    env=env)  # fmt: skip
    server.wait_ready()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            worse, same, auto = (
                requests(client, n, body) for n in ("revenue-worse", "revenue-same", "revenue-auto")
            )
            # the traffic passes; the outcomes are not in yet: the controller waits for them
            waiting = step_until(registry, "revenue-worse", log, "outcomes")
            assert waiting.action == "wait", waiting
            assert "candidate has 0 of 20 outcomes" in waiting.reason
            assert "stable has 0 of 20 outcomes" in waiting.reason
            for name, routes, shift in (("revenue-worse", worse, -3.0),
                                        ("revenue-same", same, 0.0)):  # fmt: skip
                posted = client.post("/v1/outcomes", json={"deployment": name,
                                     "outcomes": outcomes(routes, shift)})  # fmt: skip
                assert posted.status_code == 202, posted.text
            # passing traffic alone does not promote: the server's controller waits for outcomes
            assert rollout.get_deployment(registry.db, "revenue-auto").state == "rolling"
            posted = client.post("/v1/outcomes", json={"deployment": "revenue-auto",
                                 "outcomes": outcomes(auto, 0.0)})  # fmt: skip
            assert posted.status_code == 202, posted.text
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and state(registry, "revenue-auto") == "rolling":
                time.sleep(0.2)
            assert state(registry, "revenue-auto") == "promoted"
    finally:
        assert server.stop() == 0, server.log.read_text()

    rolled = rollout.step(registry, "revenue-worse", log_root=str(log))
    assert rolled.action == "rollback", rolled
    assert rolled.verdict is not None and rolled.verdict.outcome_p_value is not None
    assert rolled.verdict.outcome_p_value < 0.05
    stable_mean, candidate_mean = mean(len(worse["stable"])), mean(len(worse["candidate"])) - 3
    assert rolled.reason.startswith(
        f"candidate's mean outcome {candidate_mean:.4g} is below stable's {stable_mean:.4g} "
        "(one-sided Welch t-test, p = "
    )
    event = rollout.history(registry.db, "revenue-worse")[0]
    assert event.action == "rollback"
    assert [o["count"] for o in event.detail["outcomes"]] == [len(worse["stable"]),
                                                              len(worse["candidate"])]  # fmt: skip
    assert rollout.get_deployment(registry.db, "revenue-worse").state == "rolled_back"

    held = rollout.step(registry, "revenue-same", log_root=str(log))
    assert held.action == "hold", held  # passing; not automatic
    assert held.verdict is not None and held.verdict.outcome_p_value is not None
    assert held.verdict.outcome_p_value > 0.05
    assert rollout.get_deployment(registry.db, "revenue-same").state == "rolling"
    # without the log the controller cannot judge outcomes: it waits, it does not pass
    blind = rollout.step(registry, "revenue-same")
    assert blind.action == "wait" and "no prediction log" in blind.reason


def test_an_outcome_policy_without_the_prediction_log_is_refused_at_start(
    served_home: ServedHome,
    registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rollout.deploy(registry, "revenue-blind", model_ref="hgb/1")
    with pytest.raises(ConfigError) as raised:
        rollout.start_candidate(registry, "revenue-blind", ref="hgb/2", mode="canary",
                                weight=10, policy=POLICY, prediction_log=False)  # fmt: skip
    message = (
        "The rollout policy of deployment 'revenue-blind' judges business outcomes "
        "(min_outcomes=20), which need the prediction log, and monitoring.log is off; set it "
        "(MODELYARD_MONITORING__LOG=true, 'yard serve --log-predictions') or drop min_outcomes."
    )
    assert str(raised.value) == message
    command = ["deploy", "revenue-blind", "--canary", "hgb/2", "--weight", "10", "--policy",
               "min_outcomes=20"]  # fmt: skip
    for key, value in server_env(served_home.home).items():
        if key.startswith("MODELYARD_"):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("MODELYARD_MONITORING__LOG", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(command)
    assert exited.value.code == 1
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not rollout.get_deployment(registry.db, "revenue-blind").active
    monkeypatch.setenv("MODELYARD_MONITORING__LOG", "true")
    with pytest.raises(SystemExit) as exited:
        main(command)
    assert exited.value.code == 0
    assert rollout.get_deployment(registry.db, "revenue-blind").policy.min_outcomes == 20
