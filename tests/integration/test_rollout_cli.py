"""``yard deploy`` and ``yard rollout`` in subprocesses, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modelyard import rollout
from modelyard.registry import Registry
from modelyard.rollout.buckets import LATENCY_BUCKETS
from modelyard.settings import Settings

YARD = str(Path(sys.executable).parent / "yard")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    out["MODELYARD_HOME"] = str(tmp_path / "home")
    out["MODELYARD_IDENTITY"] = "cli-user"
    return out


@pytest.fixture
def registry(env: dict[str, str]) -> Iterator[Registry]:
    """The registry the CLI sees, with churn/1 (production), churn/2 and churn/3."""
    reg = Registry(Settings(home=Path(env["MODELYARD_HOME"])), identity="setup")
    X = np.random.default_rng(2).normal(size=(40, 3))
    for i in range(3):
        reg.register(LogisticRegression().fit(X, (X[:, i] > 0).astype(int)), name="churn", data=X)
    reg.set_alias("churn/1", "production")
    yield reg
    reg.close()


def yard(env: dict[str, str], *args: str, check: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [YARD, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == check, proc.stdout + proc.stderr
    return proc


def history(env: dict[str, str]) -> list[str]:
    events = json.loads(yard(env, "rollout", "history", "web", "--json").stdout)
    return [e["action"] for e in events]


def test_deploy_canary_status_abort_history(env: dict[str, str], registry: Registry) -> None:
    out = yard(env, "deploy", "web", "--model", "churn@production", "--reason", "launch")
    assert out.stdout.strip() == (
        "deployment web (revision 1, stable): stable churn/1 (churn@production)"
    )
    bad = yard(env, "deploy", "web", "--canary", "churn/2", "--weight", "150", check=1)
    assert bad.stderr == (
        "error: Weight 150.0 is outside 0-100; give the candidate's percentage, e.g. 10.\n"
    )
    bad = yard(env, "deploy", "web", "--ab", "churn/2", "--weight", "50", check=1)
    assert "needs exactly one sticky key; pass --sticky-header HEADER" in bad.stderr
    bad = yard(env, "deploy", "web", "--canary", "churn/2", "--weight", "5", "--bake", "5x",
               check=1)  # fmt: skip
    assert "Invalid duration '5x'" in bad.stderr
    bad = yard(env, "deploy", "web", "--canary", "churn/2", "--steps", "50,10", check=1)
    assert "Steps 50,10 do not increase" in bad.stderr
    bad = yard(env, "deploy", "web", "--canary", "churn/2", "--shadow", "churn/3", check=2)
    assert "exactly one of --model, --canary, --ab or --shadow" in bad.stderr
    assert history(env) == ["deploy"]  # nothing changed

    started = json.loads(yard(env, "deploy", "web", "--canary", "churn/2", "--steps", "10,50,100",
                              "--bake", "5m", "--auto", "--policy", "min_requests=20",
                              "--json").stdout)  # fmt: skip
    assert (started["weight"], started["steps"], started["bake_s"], started["auto"]) == (
        10.0, [10.0, 50.0, 100.0], 300.0, True)  # fmt: skip
    assert started["policy"]["min_requests"] == 20
    bad = yard(env, "deploy", "web", "--ab", "churn/3", "--weight", "50", "--sticky-header",
               "X-User-Id", check=1)  # fmt: skip
    assert "already has candidate churn/2" in bad.stderr

    status = json.loads(yard(env, "rollout", "status", "web", "--json").stdout)
    assert status["verdict"]["status"] == "wait"
    assert status["next"]["action"] == "wait"
    table = yard(env, "rollout", "status", "web").stdout
    assert "churn/2" in table and "90%" in table and "verdict: wait" in table
    assert "candidate has 0 of 20 requests" in table

    out = yard(env, "rollout", "abort", "web", "--reason", "latency looks off")
    assert out.stdout.strip() == "deployment web (revision 3, rolled_back): stable churn/1 " \
        "(churn@production)"  # fmt: skip
    bad = yard(env, "rollout", "promote", "web", check=1)
    assert bad.stderr.startswith("error: Deployment 'web' has no candidate to promote")
    bad = yard(env, "rollout", "status", "nope", check=1)
    assert "No deployment named 'nope'" in bad.stderr
    events = json.loads(yard(env, "rollout", "history", "web", "--json").stdout)
    assert [(e["action"], e["actor"], e["reason"]) for e in events] == [
        ("abort", "cli-user", "latency looks off"), ("start", "cli-user", None),
        ("deploy", "cli-user", "launch"),
    ]  # fmt: skip
    assert "latency looks off" in yard(env, "rollout", "history", "web").stdout


def test_the_controller_command_promotes_and_the_alias_moves(
    env: dict[str, str], registry: Registry
) -> None:
    yard(env, "deploy", "web", "--model", "churn@production")
    yard(env, "deploy", "web", "--canary", "churn/3", "--weight", "100", "--auto")
    counts = [0] * LATENCY_BUCKETS
    counts[3] = 150
    rollout.record_route_stats(
        registry.db, deployment="web", revision=2, replica="pod-a",
        window_start=datetime.now(UTC), route="candidate", requests=150, errors=1,
        latency_counts=counts, output_counts={"0": 75, "1": 75},
    )  # fmt: skip
    out = yard(env, "rollout", "run", "web", "--interval", "0.1", "--until-done")
    assert "promote: passed the last step (100%) for 0s" in out.stdout
    assert registry.get_version("churn@production").version == 3
    listed = json.loads(yard(env, "rollout", "list", "--json").stdout)
    assert [(d["name"], d["stable_version"], d["state"]) for d in listed] == [
        ("web", 3, "promoted")
    ]
    assert history(env) == ["promote", "start", "deploy"]
