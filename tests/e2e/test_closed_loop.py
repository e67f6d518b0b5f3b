"""The closed loop's scenario (``examples/closed_loop.py``) with real processes: a ``yard serve``
under continuous load whose inputs shift so that the served model decays, labels posted late to
``POST /v1/labels``, the alert over the realised accuracy firing, and no failed request."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

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


@pytest.mark.slow
def test_under_load_the_shift_decays_the_served_model_and_fires_the_alert(
    tmp_path: Path,
) -> None:
    [result] = scenario.run_scenarios(
        tmp_path / "decay", [scenario.BETTER], loop=False, timeout_s=12.0, say=print
    )
    assert result.requests > 500 and result.failed == 0, result
    assert result.labelled > 0.8 * result.requests, result
    assert result.accuracy_before is not None and result.accuracy_before > 0.85, result
    assert result.accuracy_decayed is not None and result.accuracy_decayed < 0.7, result
    assert result.shift_to_alert_s is not None and 0 < result.shift_to_alert_s < 12.0, result
    assert result.serving_version == result.first_version == "churn/1"
