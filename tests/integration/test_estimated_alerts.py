"""Alert rules on performance estimated before labels (``estimated:<metric>``, CBPE) evaluated by
``check_alerts`` on a real prediction log: the rule fires on the hour whose scores crowd at the
decision boundary, reads the same value as ``estimated_metrics``, and a deployment that cannot
be estimated is an ``error`` outcome naming why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
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
    assert "estimated_error:accuracy" not in expected  # that hour has no labels yet
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


def test_yard_monitor_estimate_shows_the_band_the_alert_and_the_realised_value(
    sqlite_registry: Registry, tmp_path: Path
) -> None:
    import json

    from typer.testing import CliRunner

    from modelyard.cli.main import app

    root = tmp_path / "log"
    data = logged(root)  # labels for the first two of the four hours
    env = {
        "MODELYARD_HOME": str(sqlite_registry.settings.home),
        "MODELYARD_DATABASE_URL": sqlite_registry.settings.resolved_database_url,
        "MODELYARD_ARTIFACT_ROOT": sqlite_registry.settings.resolved_artifact_root,
        "MODELYARD_MONITORING__LOG_ROOT": str(root),
        "MODELYARD_MONITORING__ESTIMATION__REFERENCE_ROWS": "1200",
        "MODELYARD_MONITORING__ESTIMATION__MIN_REFERENCE_ROWS": "500",
    }

    def yard(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["monitor", "estimate", *args], env=env)
        return result.exit_code, result.output or str(result.exception)

    code, out = yard("churn", "--window", "5h", "--json")
    assert code == 0, out
    found = json.loads(out)
    hours = [w for w in found["windows"] if w["rows"]]
    assert [w["labelled"] for w in hours] == [600, 600, 0, 0]
    accuracy = [w["metrics"]["accuracy"] for w in hours]
    assert [a["alert"] for a in accuracy] == [False, False, False, True]
    realised = float(np.mean(data["y"][:600] == data["q"][:600]))
    assert accuracy[0]["realized"] == pytest.approx(realised)
    assert accuracy[0]["error"] == pytest.approx(accuracy[0]["value"] - realised)
    assert accuracy[2]["realized"] is None

    code, out = yard("churn", "--window", "5h", "--metric", "accuracy")
    assert code == 0, out
    assert "churn/1" in out and "reference: its oldest labelled predictions (1,200 rows)" in out
    assert out.count("accuracy") == 4 and "roc_auc" not in out and out.count("ALERT") == 1
    assert f"{realised:.3f}" in out
    code, out = yard("churn", "--metric", "auc")
    assert code == 1 and "--metric 'auc' is not estimated; use one of roc_auc, f1" in out

    # a labelled reference file instead of the log's labels
    head = slice(0, 1200)
    table = tmp_path / "reference.csv"
    pd.DataFrame({"label": data["y"][head], "proba_0": 1 - data["p"][head],
                  "proba_1": data["p"][head]}).to_csv(table, index=False)  # fmt: skip
    code, out = yard("churn", "--window", "5h", "--reference", str(table), "--json")
    assert code == 0, out
    assert json.loads(out)["reference"] == "table" and json.loads(out)["reference_rows"] == 1200
    code, out = yard("churn", "--reference", str(tmp_path / "none.csv"))
    assert code == 1 and "does not exist" in out


def test_the_report_shows_estimated_beside_realised_per_hour(
    sqlite_registry: Registry, tmp_path: Path
) -> None:
    from sklearn.linear_model import LogisticRegression

    from modelyard.monitoring.report import render_report
    from modelyard.monitoring.service import build_report

    x = pd.DataFrame({"x": np.random.default_rng(1).random(500)})
    model = LogisticRegression().fit(x, (x["x"] > 0.5).astype(int))
    sqlite_registry.register(model, name="churn", data=x)  # churn/1, as logged
    root = tmp_path / "log"
    logged(root)
    options = DriftOptions(
        estimation=EstimationSettings(reference_rows=1200, min_reference_rows=500)
    )
    report = build_report(sqlite_registry, root, "churn", window=5 * HOUR, options=options)
    assert report.estimated is not None and report.reconstruction is None  # one input only
    html = render_report(report)
    section = html[html.index('data-testid="estimated"') : html.index('id="multivariate"')]
    assert section.count('data-testid="estimate-row"') == 4  # the hours with predictions
    assert section.count('data-testid="realised"') == 2 * 5  # two labelled hours, 5 metrics
    assert section.count('class="badge bad">alert<') >= 1
    assert section.count('data-testid="estimated-') == 5 and "<svg" in section
    assert 'data-testid="no-reconstruction"' in html and "<script" not in html
    encoded = msgspec.json.decode(msgspec.json.encode(report))  # the data goes to JSON too
    first = next(w for w in encoded["estimated"]["windows"] if w["rows"])
    assert first["metrics"]["accuracy"]["realized"] is not None
