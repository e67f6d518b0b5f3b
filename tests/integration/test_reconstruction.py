"""Reconstruction error of a deployment's logged inputs against its version's stored reference
sample: per window and per hour, the reference choices, privacy columns and the errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from modelyard.errors import InvalidInputError, PredictionLogEmptyError
from modelyard.monitoring.multivariate import reconstruction_error, reconstruction_metrics
from modelyard.monitoring.service import DriftOptions, deployment_drift
from modelyard.registry import Registry
from modelyard.settings import ReconstructionSettings
from tests._logdata import write_log

NOW = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)


def inputs(n: int, *, rho: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ab = rng.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], size=n)
    return pd.DataFrame({"a": ab[:, 0], "b": ab[:, 1], "c": rng.normal(size=n)})


@pytest.fixture
def churn(sqlite_registry: Registry) -> tuple[Registry, LogisticRegression]:
    X = inputs(4_000, rho=0.9, seed=1)
    y = (X["a"] - X["b"] + np.random.default_rng(2).normal(size=len(X)) > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    sqlite_registry.register(model, name="churn", data=X, target=y)
    return sqlite_registry, model


def log_hour(root: Path, start: datetime, frame: pd.DataFrame, model: LogisticRegression) -> None:
    times = [start + timedelta(seconds=3000 * i / len(frame)) for i in range(len(frame))]
    write_log(
        root, "churn", frame, times, model="churn", version="1",
        predict=model.predict(frame), proba=model.predict_proba(frame),
    )  # fmt: skip


def calm_then_flipped(root: Path, model: LogisticRegression, rows: int) -> None:
    """``rows`` predictions in 10:00-10:50 like the reference, as many in 11:00-11:50 with the
    correlation of a and b flipped."""
    for hour, rho in ((10, 0.9), (11, -0.9)):
        log_hour(
            root, datetime(2026, 1, 1, hour, tzinfo=UTC), inputs(rows, rho=rho, seed=hour), model
        )


def test_the_flipped_hours_raise_the_alert_and_the_drift_tests_do_not(
    churn: tuple[Registry, LogisticRegression], tmp_path: Path
) -> None:
    registry, model = churn
    root = tmp_path / "log"
    for hour, rho in ((9, 0.9), (10, 0.9), (11, -0.9), (12, -0.9)):
        log_hour(
            root, datetime(2026, 1, 1, hour, tzinfo=UTC), inputs(1_500, rho=rho, seed=hour), model
        )

    calm = reconstruction_error(registry, root, "churn", window=2 * HOUR, now=NOW - 2 * HOUR)
    assert calm.reference == "churn/1 (stored reference sample)"
    assert calm.reference_rows == 4_000 and calm.columns == ("a", "b", "c")
    assert calm.components == 2 and calm.variance > 0.65
    (window,) = calm.windows
    assert window.rows == 1_500 + 900 and not window.alert  # hour 9 and 10:00-10:30

    series = reconstruction_error(registry, root, "churn", window=4 * HOUR, every=HOUR, now=NOW)
    assert [w.start for w in series.windows] == [
        "2026-01-01T08:00:00+00:00",
        *(f"2026-01-01T{h:02}:00:00+00:00" for h in (9, 10, 11, 12)),
    ]
    assert [w.rows for w in series.windows] == [0, 1_500, 1_500, 1_500, 900]  # until 12:30
    assert [w.alert for w in series.windows] == [False, False, False, True, True]
    assert series.windows[0].error is None
    flipped = series.windows[-1].error
    assert flipped is not None and flipped > series.upper_threshold

    # the same hours, one column at a time: nothing drifts
    drift = deployment_drift(registry, root, "churn", window=2 * HOUR, now=NOW)
    assert [c.name for c in drift.columns if c.drifted] == []

    latest = reconstruction_error(registry, root, "churn", window=HOUR, now=NOW)
    assert reconstruction_metrics(latest) == {
        "reconstruction_error": pytest.approx(latest.windows[0].error),
        "reconstruction_threshold:lower": latest.lower_threshold,
        "reconstruction_threshold:upper": latest.upper_threshold,
    }


def test_a_reference_file_privacy_columns_and_parameters(
    churn: tuple[Registry, LogisticRegression], tmp_path: Path
) -> None:
    registry, model = churn
    root = tmp_path / "log"
    log_hour(root, datetime(2026, 1, 1, 12, tzinfo=UTC), inputs(1_000, rho=0.9, seed=3), model)
    train = tmp_path / "train.parquet"
    inputs(3_000, rho=0.9, seed=4).to_parquet(train)
    result = reconstruction_error(
        registry, root, "churn", reference=str(train), now=NOW,
        options=DriftOptions(
            exclude=frozenset({"c"}),
            reconstruction=ReconstructionSettings(variance=0.99, chunks=5, sigmas=2.0),
        ),
    )  # fmt: skip
    assert result.reference == "train.parquet" and result.reference_rows == 3_000
    assert result.columns == ("a", "b") and result.components == 2
    by_version = reconstruction_error(registry, root, "churn", reference="churn/1", now=NOW)
    assert by_version.reference == "churn/1 (stored reference sample)"


def test_bad_inputs_are_one_line_errors(
    churn: tuple[Registry, LogisticRegression], tmp_path: Path
) -> None:
    registry, model = churn
    root = tmp_path / "log"
    log_hour(root, datetime(2026, 1, 1, 12, tzinfo=UTC), inputs(200, rho=0.9, seed=3), model)
    with pytest.raises(PredictionLogEmptyError, match=r"No predictions logged for 'ghost'"):
        reconstruction_error(registry, root, "ghost", now=NOW)
    with pytest.raises(
        PredictionLogEmptyError, match=r"'churn' from 2026-01-02 11:30 to 2026-01-02 12:30 UTC"
    ):
        reconstruction_error(registry, root, "churn", now=NOW + timedelta(days=1))
    for window, shown in ((-HOUR, "-1h"), (timedelta(0), "0s")):
        with pytest.raises(InvalidInputError, match=rf"^The window '{shown}' is empty; use a"):
            reconstruction_error(registry, root, "churn", window=window, now=NOW)
    small = tmp_path / "small.csv"
    inputs(30, rho=0.9, seed=5).to_csv(small, index=False)
    with pytest.raises(InvalidInputError, match=r"small.csv has 30 rows; .* at least 100"):
        reconstruction_error(registry, root, "churn", reference=str(small), now=NOW)
    one = tmp_path / "one.csv"
    inputs(300, rho=0.9, seed=5)[["a"]].to_csv(one, index=False)
    with pytest.raises(InvalidInputError, match=r"at least 2 numeric or categorical .* has 1"):
        reconstruction_error(registry, root, "churn", reference=str(one), now=NOW)


def test_a_reconstruction_error_rule_fires_on_the_flipped_window(
    churn: tuple[Registry, LogisticRegression], tmp_path: Path
) -> None:
    from modelyard.monitoring.alerts import NoData, check_alerts, metric_source, validate_rules
    from modelyard.settings import AlertRule, Settings

    registry, _ = churn
    root = tmp_path / "log"
    now = datetime.now(UTC)
    flipped = inputs(1_200, rho=-0.9, seed=7)
    times = [now - timedelta(minutes=50) + timedelta(seconds=2 * i) for i in range(len(flipped))]
    write_log(root, "churn", flipped, times, model="churn", version="1")
    rules = [
        {"name": "churn-structure", "deployment": "churn", "metric": "reconstruction_error",
         "op": ">", "threshold": 1.0, "window": "1h"},
        {"name": "churn-rows", "deployment": "churn", "metric": "rows", "threshold": 1},
    ]  # fmt: skip
    settings = Settings(
        home=registry.settings.home, database_url=registry.settings.database_url,
        artifact_root=registry.settings.artifact_root,
        monitoring={"log_root": str(root), "alerts": {"rules": rules}},
    )  # fmt: skip
    outcomes = {o.rule: o for o in check_alerts(registry, settings, now=now)}
    fired = outcomes["churn-structure"]
    assert (fired.state, fired.event) == ("firing", "fired")
    expected = reconstruction_error(registry, root, "churn", now=now).windows[0].error
    assert fired.value == pytest.approx(expected) and expected is not None and expected > 1.0
    assert outcomes["churn-rows"].value == 1_200

    # the metric source reads the window's rows once per round, and an unfit window is an error
    source = metric_source(registry, str(root))
    (rule,) = validate_rules([AlertRule.model_validate(rules[0])])
    assert source(rule, now) == pytest.approx(expected)
    assert source(rule, now + timedelta(hours=3)) is None  # nothing logged then: no data
    (ghost,) = validate_rules([AlertRule.model_validate({**rules[0], "deployment": "ghost"})])
    assert isinstance(source(ghost, now), NoData)  # no log at all: no data, saying so


def test_yard_monitor_reconstruction_prints_each_hour_and_json(
    churn: tuple[Registry, LogisticRegression], tmp_path: Path
) -> None:
    import json

    from typer.testing import CliRunner

    from modelyard.cli.main import app

    registry, model = churn
    root = tmp_path / "log"
    now = datetime.now(UTC).replace(minute=30)
    for back, rho in ((2, 0.9), (1, -0.9)):
        start = (now - back * HOUR).replace(minute=0, second=0, microsecond=0)
        log_hour(root, start, inputs(600, rho=rho, seed=back), model)
    env = {
        "MODELYARD_HOME": str(registry.settings.home),
        "MODELYARD_DATABASE_URL": registry.settings.resolved_database_url,
        "MODELYARD_ARTIFACT_ROOT": registry.settings.resolved_artifact_root,
        "MODELYARD_MONITORING__LOG_ROOT": str(root),
    }

    def yard(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["monitor", "reconstruction", *args], env=env)
        return result.exit_code, result.output or str(result.exception)

    code, out = yard("churn", "--window", "3h", "--every", "1h", "--json")
    assert code == 0, out
    result = json.loads(out)
    assert [w["alert"] for w in result["windows"] if w["rows"]] == [False, True]
    assert result["reference"] == "churn/1 (stored reference sample)"
    code, out = yard("churn", "--window", "3h", "--every", "1h")
    assert code == 0, out
    assert "thresholds" in out and "ALERT" in out and out.count(" ok ") >= 1
    code, out = yard("churn", "--every", "2h")
    assert code == 1 and "--every '2h' is not a window size; use --every 1h or 1d." in out
    report = tmp_path / "r.html"
    result = CliRunner().invoke(
        app, ["monitor", "report", "churn", "--window", "3h", "-o", str(report)], env=env
    )
    assert result.exit_code == 0, result.output
    assert "Reconstruction error: 1 of 2 windows past its thresholds." in result.output
    assert "Estimated performance" not in result.output  # no labels: nothing estimated


def test_the_report_shows_the_error_per_hour_with_its_alerts(
    churn: tuple[Registry, LogisticRegression], tmp_path: Path
) -> None:
    from modelyard.monitoring.report import render_report
    from modelyard.monitoring.service import build_report

    registry, model = churn
    root = tmp_path / "log"
    calm_then_flipped(root, model, 800)
    report = build_report(registry, root, "churn", window=3 * HOUR, now=NOW)
    assert report.reconstruction is not None
    assert [w.alert for w in report.reconstruction.windows] == [False, False, True, False]
    assert [w.rows for w in report.reconstruction.windows] == [0, 800, 800, 0]
    html = render_report(report)
    section = html[html.index('data-testid="multivariate"') : html.index('id="performance"')]
    assert section.count('data-testid="reconstruction-row"') == 4
    assert section.count('class="badge bad">alert<') == 1 and "no rows" in section
    assert "churn/1 (stored reference sample)" in section and "<svg" in section
    assert "<script" not in html


def test_a_window_sums_each_log_file_once_and_matches_its_rows(
    churn: tuple[Registry, LogisticRegression], tmp_path: Path
) -> None:
    registry, model = churn
    root = tmp_path / "log"
    calm_then_flipped(root, model, 600)
    noon = datetime(2026, 1, 1, 12, tzinfo=UTC)
    cached = reconstruction_error(registry, root, "churn", window=2 * HOUR, now=noon)
    by_hour = reconstruction_error(registry, root, "churn", window=2 * HOUR, every=HOUR, now=noon)
    # the hourly path scores the rows themselves: the cached sums give the same window
    (window,) = cached.windows
    both = [w for w in by_hour.windows if w.rows]
    assert window.rows == sum(w.rows for w in both) == 1_200
    assert window.error == pytest.approx(sum(w.error * w.rows for w in both if w.error) / 1_200)
    one = reconstruction_error(registry, root, "churn", window=HOUR, now=noon).windows[0]
    assert (one.rows, one.error, one.sampling_error) == (
        both[1].rows, pytest.approx(both[1].error), pytest.approx(both[1].sampling_error),
    )  # fmt: skip
    folder = root / "_profiles" / "deployment=churn"
    files = sorted(folder.glob("reconstruction-*/*.json"))
    assert [f.name for f in files] == ["2026-01-01T10.json", "2026-01-01T11.json"]
    stamps = {f: f.stat().st_mtime_ns for f in files}
    again = reconstruction_error(registry, root, "churn", window=2 * HOUR, now=noon)
    assert again == cached and {f: f.stat().st_mtime_ns for f in files} == stamps
    # half an hour: the files straddle its start and are read, not summed
    half = reconstruction_error(registry, root, "churn", window=HOUR / 2, now=noon)
    assert 0 < half.windows[0].rows < 600
    # a late file in hour 10: that hour's sums are written again, hour 11's are not
    log_hour(root, datetime(2026, 1, 1, 10, 5, tzinfo=UTC), inputs(100, rho=0.9, seed=9), model)
    late = reconstruction_error(registry, root, "churn", window=2 * HOUR, now=noon)
    assert late.windows[0].rows == 1_300
    changed = [f.name for f in files if f.stat().st_mtime_ns != stamps[f]]
    assert changed == ["2026-01-01T10.json"]
