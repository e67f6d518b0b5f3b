"""A candidate that rejects what stable accepts never passes (issue 11, A2): ``yard deploy``
refuses a candidate with other inputs unless ``--force``, and a candidate that recorded no
outputs is judged a breach and rolled back, never promoted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from modelyard import rollout
from modelyard.errors import SignatureMismatchError
from modelyard.registry import Registry
from modelyard.rollout.buckets import LATENCY_BUCKETS
from modelyard.settings import Settings
from tests.integration.test_rollout_cli import env, history, yard

__all__ = ["env"]  # the fixture, imported for pytest

RNG = np.random.default_rng(4)
IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def frame(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(RNG.normal(size=(60, len(columns))), columns=columns)


def register(registry: Registry, name: str, columns: list[str]) -> None:
    X = frame(columns)
    model = LogisticRegression().fit(X, (X.iloc[:, 0] > 0).astype(int))
    registry.register(model, name=name, data=X)


@pytest.fixture
def cli_registry(env: dict[str, str]) -> Iterator[Registry]:
    reg = Registry(Settings(home=Path(env["MODELYARD_HOME"])), identity="setup")
    register(reg, "iris", IRIS)  # iris/1: the stable
    register(reg, "iris", IRIS)  # iris/2: a compatible candidate
    register(reg, "iris", ["sepal_length", "tenure", "plan", "petal_width"])  # iris/3
    yield reg
    reg.close()


def test_deploy_refuses_a_candidate_with_other_inputs_unless_forced(
    env: dict[str, str], cli_registry: Registry
) -> None:
    yard(env, "deploy", "web", "--model", "iris/1")
    bad = yard(env, "deploy", "web", "--canary", "iris/3", "--weight", "50", check=1)
    assert bad.stderr == (
        "error: Candidate iris/3 may reject inputs that stable iris/1 of deployment 'web' "
        "accepts: it needs columns stable does not take: tenure, plan; it does not take "
        "stable's columns sepal_width, petal_length; register a candidate with the stable's "
        "inputs, or pass --force (force=True) to start it anyway.\n"
    )
    for mode in (["--ab", "iris/3", "--weight", "50", "--sticky-header", "X-User"],
                 ["--shadow", "iris/3"]):  # fmt: skip
        assert "may reject inputs" in yard(env, "deploy", "web", *mode, check=1).stderr
    assert history(env) == ["deploy"]  # nothing changed
    bad = yard(env, "deploy", "web", "--model", "iris/2", "--force", check=2)
    assert "candidate options need --canary, --ab or --shadow" in bad.stderr

    yard(env, "deploy", "web", "--canary", "iris/2", "--weight", "50")  # compatible: no --force
    yard(env, "rollout", "abort", "web", "--reason", "next")
    started = json.loads(yard(env, "deploy", "web", "--canary", "iris/3", "--weight", "50",
                              "--force", "--json").stdout)  # fmt: skip
    assert (started["candidate_version"], started["state"]) == (3, "rolling")
    events = json.loads(yard(env, "rollout", "history", "web", "--json").stdout)
    assert events[0]["detail"]["forced"] == [
        "needs columns stable does not take: tenure, plan",
        "does not take stable's columns sepal_width, petal_length",
    ]
    assert "forced" not in events[2]["detail"]


def test_a_candidate_that_answered_nothing_is_rolled_back_not_promoted(
    env: dict[str, str], cli_registry: Registry
) -> None:
    yard(env, "deploy", "web", "--model", "iris/1")
    yard(env, "deploy", "web", "--canary", "iris/3", "--weight", "50", "--auto", "--force")
    counts = [0] * LATENCY_BUCKETS
    counts[3] = 150
    for route, outputs in (("stable", {"0": 70, "1": 80}), ("candidate", {})):
        rollout.record_route_stats(
            cli_registry.db, deployment="web", revision=2, replica="pod-a",
            window_start=datetime.now(UTC), route=route, requests=150, errors=0,
            latency_counts=counts, output_counts=outputs,
        )  # fmt: skip
    table = yard(env, "rollout", "status", "web").stdout
    assert "verdict: breach" in table
    assert "candidate recorded no outputs for its 150 requests" in table
    out = yard(env, "rollout", "run", "web", "--interval", "0.1", "--until-done")
    assert "rollback: candidate recorded no outputs" in out.stdout
    assert history(env) == ["rollback", "start", "deploy"]
    assert cli_registry.get_version("iris/1").version == 1
    listed = json.loads(yard(env, "rollout", "list", "--json").stdout)
    assert [(d["stable_version"], d["state"]) for d in listed] == [(1, "rolled_back")]


def test_the_python_api_refuses_too_and_changes_nothing(registry: Registry) -> None:
    register(registry, "iris", IRIS)
    register(registry, "iris", ["sepal_length", "sepal_width", "petal_length"])
    rollout.deploy(registry, "web", model_ref="iris/1")
    with pytest.raises(SignatureMismatchError, match=r"iris/2 may reject inputs that stable "
                       r"iris/1 .*does not take stable's columns petal_width;"):  # fmt: skip
        rollout.start_candidate(registry, "web", ref="iris/2", mode="canary", weight=10)
    assert [e.action for e in rollout.history(registry.db, "web")] == ["deploy"]
    assert rollout.get_deployment(registry.db, "web").revision == 1
    forced = rollout.start_candidate(
        registry, "web", ref="iris/2", mode="shadow", force=True, reason="try it"
    )
    assert (forced.candidate_ref, forced.mode) == ("iris/2", "shadow")
