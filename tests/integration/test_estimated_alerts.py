"""Alert rules on performance estimated before labels (``estimated:<metric>``, CBPE) evaluated by
``check_alerts`` on a real prediction log: the rule fires on the hour whose scores crowd at the
decision boundary, reads the same value as ``estimated_metrics``, and a deployment that cannot
be estimated is an ``error`` outcome naming why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelyard.monitoring.alerts import check_alerts, metric_source, validate_rules
from modelyard.monitoring.service import DriftOptions
from modelyard.monitoring.unlabelled import estimated_metrics
from modelyard.registry import Registry
from modelyard.settings import AlertRule, EstimationSettings, Settings
from tests._logdata import write_log
from tests.unit.monitoring.test_estimation import logged

HOUR = timedelta(hours=1)


def settings_for(registry: Registry, root: Path, rules: list[dict[str, object]]) -> Settings:
    return Settings(
        home=registry.settings.home, database_url=registry.settings.database_url,
        artifact_root=registry.settings.artifact_root,
        monitoring={
            "log_root": str(root), "alerts": {"rules": rules},
            "estimation": {"reference_rows": 1200, "min_reference_rows": 500},
        },
    )  # fmt: skip


def test_an_estimated_accuracy_rule_fires_on_the_crowded_hour(
    sqlite_registry: Registry, tmp_path: Path
) -> None:
    root = tmp_path / "log"
    logged(root)  # 4 hours to the last whole hour; the last one's scores near 0.5
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rules = [
        {"name": "churn-cbpe", "deployment": "churn", "metric": "estimated:accuracy",
         "op": "<", "threshold": 0.7, "window": "1h"},
        {"name": "churn-auc", "deployment": "churn", "metric": "estimated:roc_auc",
         "op": "<", "threshold": 0.7, "window": "1h"},
        {"name": "plain-cbpe", "deployment": "plain", "metric": "estimated:f1",
         "op": "<", "threshold": 0.7, "window": "1h"},
    ]  # fmt: skip
    write_log(root, "plain", pd.DataFrame({"x": [1.0]}), [now - HOUR / 2], model="m",
              version="1", predict=np.array([1]))  # fmt: skip
    settings = settings_for(sqlite_registry, root, rules)
    outcomes = {o.rule: o for o in check_alerts(sqlite_registry, settings, now=now)}

    expected = estimated_metrics(
        sqlite_registry, root, "churn", window=HOUR, now=now,
        settings=EstimationSettings(reference_rows=1200, min_reference_rows=500),
    )  # fmt: skip
    assert expected["estimated:accuracy"] < 0.7 and expected["estimated_alert:accuracy"] == 1.0
    fired = outcomes["churn-cbpe"]
    assert (fired.state, fired.event) == ("firing", "fired")
    assert fired.value == pytest.approx(expected["estimated:accuracy"])
    assert outcomes["churn-auc"].value == pytest.approx(expected["estimated:roc_auc"])
    plain = outcomes["plain-cbpe"]
    assert plain.state == "error" and plain.detail is not None
    assert "has no out_predict_proba column" in plain.detail and "\n" not in plain.detail

    # an hour of calm scores two hours earlier: the rule's value is above the threshold
    source = metric_source(sqlite_registry, str(root), options=DriftOptions.from_settings(settings))
    (rule,) = validate_rules([AlertRule.model_validate(rules[0])])
    calm = source(rule, now - 2 * HOUR)
    assert calm is not None and calm > 0.7
    assert source(rule, now + 5 * HOUR) is None  # nothing logged then: no data
