"""The closed loop's two scenarios (``examples/closed_loop.py``) with real processes, side by side:
one ``yard serve`` (prediction log, alert rules, rollout controller) and one ``yard loop run``;
each deployment under continuous load whose inputs shift so that its model decays, labels posted
late to ``POST /v1/labels``, the alert on CBPE's estimated accuracy starting the loop. The first
loop retrains, gates, canaries and promotes; the second's retrained model is worse, passes a
lenient gate and its canary rolls back. No client request fails in either."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parents[2]


def _scenario() -> ModuleType:
    spec = importlib.util.spec_from_file_location("closed_loop", ROOT / "examples/closed_loop.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["closed_loop"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


scenario = _scenario()


def test_the_shift_decays_the_first_model_and_retraining_on_fresh_labels_recovers() -> None:
    rng = np.random.default_rng(0)
    train = scenario.make_rows(2000, shifted=False, rng=rng)
    fresh, later = (scenario.make_rows(n, shifted=True, rng=rng) for n in (600, 2000))
    columns = ["x0", "x1"]
    first = LogisticRegression(max_iter=200).fit(train[columns], train["target"])
    both = pd.concat([train, fresh])
    retrained = LogisticRegression(max_iter=200).fit(both[columns], both["target"])

    def accuracy(model: LogisticRegression, rows: pd.DataFrame) -> float:
        return float((model.predict(rows[columns]) == rows["target"]).mean())

    before = scenario.make_rows(2000, shifted=False, rng=rng)
    assert accuracy(first, before) > 0.85
    assert accuracy(first, later) < 0.65  # decayed
    assert accuracy(retrained, later) > 0.85  # recovered
    # the decay is one CBPE sees: the first model grows unsure on the shifted rows
    confidence = first.predict_proba(later[columns]).max(axis=1).mean()
    assert confidence < first.predict_proba(before[columns]).max(axis=1).mean() - 0.15


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both scenarios, side by side on one server and one ``yard loop run``."""
    folder = tmp_path_factory.mktemp("closed-loop")
    started = time.monotonic()
    done = scenario.run_scenarios(folder, [scenario.BETTER, scenario.WORSE], timeout_s=100.0)
    print(f"both scenarios in {time.monotonic() - started:.0f} s")
    for result in done:
        print("\n".join(result.lines()))
    return {result.deployment: result for result in done}


def _moves(result: Any) -> list[tuple[str, str]]:
    [status] = result.transitions
    return [(t["from_state"], t["to_state"]) for t in status["transitions"]]


def _evidence(result: Any, state: str) -> dict[str, Any]:
    [status] = result.transitions
    return next(t["evidence"] for t in status["transitions"] if t["to_state"] == state)


@pytest.mark.slow
def test_the_loop_retrains_gates_canaries_and_promotes_the_decayed_model_without_a_failed_request(
    results: dict[str, Any],
) -> None:
    result = results[scenario.BETTER]
    assert result.requests > 500 and result.failed == 0, result.lines()
    assert result.accuracy_before > 0.85 and result.accuracy_decayed < 0.7, result.lines()
    assert _moves(result) == [
        ("idle", "triggered"), ("triggered", "training"), ("training", "gating"),
        ("gating", "canary"), ("canary", "promoted"),
    ]  # fmt: skip
    trigger = _evidence(result, "triggered")["trigger"]
    assert trigger["kind"] == "alert" and trigger["rule"] == "churn-accuracy", trigger
    # CBPE's estimate from the logged scores (no label needed) fell below the rule's 0.8
    assert trigger["metric"] == "estimated:accuracy" and trigger["value"] < 0.8, trigger
    assert _evidence(result, "training")["data"]["labelled_rows"] > 100
    assert _evidence(result, "gating")["version"] == "churn/2"
    assert _evidence(result, "canary")["gate"]["passed"] is True
    assert result.end_state == "promoted" and result.serving_version == "churn/2"
    assert result.versions_after == {"2": sum(result.versions_after.values())}, result
    assert result.accuracy_candidate > 0.8 and result.accuracy_after > 0.8, result.lines()
    assert 0 < result.shift_to_alert_s < result.shift_to_end_s, result.lines()
    assert "promoted" in result.status_text and "churn/2" in result.status_text


@pytest.mark.slow
def test_a_worse_retrained_model_passes_a_lenient_gate_and_its_canary_rolls_back_on_outcomes(
    results: dict[str, Any],
) -> None:
    result = results[scenario.WORSE]
    assert result.requests > 500 and result.failed == 0, result.lines()
    assert _moves(result) == [
        ("idle", "triggered"), ("triggered", "training"), ("training", "gating"),
        ("gating", "canary"), ("canary", "rejected"),
    ]  # fmt: skip
    [status] = result.transitions
    # the business outcomes (1 per right answer, posted by the client) caught it
    assert status["reason"].startswith("canary rolled back: candidate's mean outcome")
    assert result.end_state == "rejected" and result.serving_version == "churn-worse/1"
    assert result.versions_after == {"1": sum(result.versions_after.values())}, result
    assert result.versions_after["1"] > 50
    assert "rejected" in result.status_text and "rolled back" in result.status_text
