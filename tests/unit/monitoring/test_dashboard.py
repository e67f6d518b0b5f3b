"""What the dashboard's monitoring pages read: windows, logged names, name checks, the log's
fingerprint, a name's summary and its hourly report over any window."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from modelyard.errors import InvalidInputError, NotFoundError
from modelyard.monitoring.dashboard import (
    check_logged,
    log_fingerprint,
    log_summary,
    logged_names,
    monitoring_report,
    parse_window,
)
from modelyard.monitoring.labels import ingest_labels
from modelyard.monitoring.service import build_report
from modelyard.registry import Registry
from tests._logdata import write_log

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_windows_are_the_three_offered() -> None:
    assert parse_window(None) == ("24h", 24 * HOUR)
    assert parse_window("") == ("24h", 24 * HOUR)
    assert parse_window("1h") == ("1h", HOUR)
    assert parse_window("7d") == ("7d", 7 * 24 * HOUR)
    for bad in ("30d", "1H", "<script>", "x" * 500):
        with pytest.raises(InvalidInputError, match="is not one of 1h, 24h, 7d") as caught:
            parse_window(bad)
        assert len(str(caught.value)) < 120


def test_logged_names_and_checks(tmp_path: Path) -> None:
    assert logged_names(tmp_path / "nowhere") == []
    (tmp_path / "deployment=b" / "hour=2026-03-10T11").mkdir(parents=True)
    (tmp_path / "deployment=a" / "hour=2026-03-10T12").mkdir(parents=True)
    (tmp_path / "deployment=empty").mkdir()
    (tmp_path / "labels" / "deployment=c").mkdir(parents=True)
    assert logged_names(tmp_path) == ["a", "b"]
    check_logged(tmp_path, "a")
    with pytest.raises(NotFoundError, match="No prediction log for 'nobody'"):
        check_logged(tmp_path, "nobody")
    for bad in ("", ".", "..", ".hidden", "a/b", "a\\b", "a\0b", "x" * 201):
        with pytest.raises(InvalidInputError, match="is not a deployment or model name"):
            check_logged(tmp_path, bad)


def test_the_fingerprint_changes_with_new_files_and_labels(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    ids = write_log(tmp_path, "d", frame, [NOW - HOUR] * 2, model="m", version="1")
    first = log_fingerprint(tmp_path, "d")
    assert first == log_fingerprint(tmp_path, "d") and len(first) == 1
    folder = next((tmp_path / "deployment=d").iterdir())
    os.utime(folder, ns=(1, 1))  # a new file in the same hour moves its folder's time
    write_log(tmp_path, "d", frame, [NOW - HOUR] * 2, model="m", version="1")
    second = log_fingerprint(tmp_path, "d")
    assert second != first and len(second) == 1
    ingest_labels(tmp_path, "d", pd.DataFrame({"request_id": ids, "label": [0, 1]}))
    assert len(log_fingerprint(tmp_path, "d")) == 2


def inputs(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=rows) + shift, "b": rng.normal(size=rows)})


@pytest.fixture
def logged(sqlite_registry: Registry, tmp_path: Path) -> tuple[Registry, Path]:
    """Four days of traffic, the last two hours shifted in ``a``, labels for the last hour."""
    train = inputs(3_000, 1)
    y = (train["a"] > 0).astype(int)
    model = LogisticRegression().fit(train, y)
    sqlite_registry.register(model, name="m", data=train, target=y)
    root = tmp_path / "log"
    first = NOW.replace(minute=0) - 96 * HOUR
    for h in range(97):
        start = first + h * HOUR
        frame = inputs(300, 10 + h, shift=1.5 if start >= NOW - 2 * HOUR else 0.0)
        times = [start + timedelta(seconds=1_500 * i / len(frame)) for i in range(len(frame))]
        ids = write_log(
            root, "d", frame, times, model="m", version="1", predict=model.predict(frame),
            proba=model.predict_proba(frame),
        )  # fmt: skip
        if h == 96:
            labels = (frame["a"] > 0).astype(int)
            ingest_labels(root, "d", pd.DataFrame({"request_id": ids, "label": labels}))
    return sqlite_registry, root


def test_a_summary_counts_the_hour_and_day_and_says_the_hours_drift(
    logged: tuple[Registry, Path],
) -> None:
    registry, root = logged
    summary = log_summary(registry, root, "d", now=NOW)
    assert (summary.rows_hour, summary.rows_day) == (300, 24 * 300)  # rows at :00 to :25
    assert summary.latest_hour == NOW.replace(minute=0)
    assert summary.drift is not None and summary.drift.dataset_drift
    assert summary.firing == ()
    quiet = log_summary(registry, root, "d", now=NOW + 5 * HOUR)
    assert (quiet.rows_hour, quiet.drift) == (0, None)
    assert quiet.drift_error == "No predictions in the last hour."


def test_a_week_has_a_point_per_hour_with_drift_share_and_performance(
    logged: tuple[Registry, Path],
) -> None:
    registry, root = logged
    week = monitoring_report(registry, root, "d", window=7 * 24 * HOUR, now=NOW)
    assert len(week.series) == 97  # every logged hour, not one point a day
    shares = [p.drift_share for p in week.series]
    assert all(s is not None for s in shares)
    assert shares[-1] == 0.5 and shares[0] == 0.0  # a drifts in the last hours, b never
    assert week.reconstruction is None  # not drawn by the pages
    assert week.performance is not None and week.performance.labelled == 300
    assert week.series[-1].performance["accuracy"] > 0.9
    daily = build_report(registry, root, "d", window=7 * 24 * HOUR, now=NOW)
    assert len(daily.series) == 5  # the report's own choice: a point a day
    with pytest.raises(InvalidInputError, match="an hour or a day apart"):
        build_report(registry, root, "d", window=HOUR, now=NOW, every=timedelta(minutes=5))
