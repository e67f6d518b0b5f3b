"""The loop reads the prediction log: a metric below its floor (read like an alert rule's, here
realised accuracy from logged predictions joined to labels) starts a loop, and the training table
is the training data plus the labelled window less its newest share, which is the gate's
holdout."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelyard import loop
from modelyard.loop import LoopController, check_policies
from modelyard.loop.data import write_tables
from modelyard.monitoring.labels import ingest_labels
from tests._logdata import write_log
from tests.integration._loop import Project, make_data, make_project


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    made = make_project(tmp_path / "project", f"sqlite:///{tmp_path / 'meta.db'}")
    yield made
    made.registry.close()


def log_traffic(project: Project, rows: pd.DataFrame, times: list[datetime]) -> list[str]:
    """Logged predictions of churn/1 that all say 0, as a decayed model would."""
    return write_log(
        Path(project.settings.resolved_log_root), "churn", rows[["x1", "x2"]], times,
        model="churn", version="1", predict=np.zeros(len(rows), dtype=np.int64),
    )  # fmt: skip


def label(project: Project, ids: list[str], labels: pd.Series) -> None:
    frame = pd.DataFrame({"request_id": ids, "label": labels.to_numpy()})
    ingest_labels(project.settings.resolved_log_root, "churn", frame)


def test_the_training_table_is_training_data_plus_the_labelled_window_less_its_holdout(
    project: Project,
) -> None:
    now = datetime.now(UTC)
    fresh = make_data(40, seed=5)
    times = [now - timedelta(minutes=80 - 2 * i) for i in range(40)]  # oldest first
    ids = log_traffic(project, fresh, times)
    old = make_data(10, seed=6)
    old_ids = log_traffic(project, old, [now - timedelta(days=3)] * 10)
    label(project, ids[:30] + old_ids, pd.concat([fresh["target"][:30], old["target"]]))
    settings = project.with_loop(train={"labelled_window": "1d"}, gate={"holdout": 0.3})
    plan = check_policies(settings)["churn"]
    data = write_tables(plan, settings.resolved_log_root, project.root / "out", now=now)
    train, holdout = pd.read_parquet(data.train), pd.read_parquet(data.holdout)
    assert data.evidence == {
        "training_data": str(project.root / "train.csv"), "training_rows": 300,
        "labelled_rows": 30, "holdout_from": "labelled window", "train_rows": 321,
        "holdout_rows": 9,
    }  # fmt: skip
    base = pd.read_csv(project.root / "train.csv")
    assert list(train.columns) == list(holdout.columns) == ["x1", "x2", "target"]
    pd.testing.assert_frame_equal(train.iloc[:300], base)
    # the 21 oldest labelled rows train, the 9 newest are held out; unlabelled and old rows not
    pd.testing.assert_frame_equal(train.iloc[300:].reset_index(drop=True), fresh.iloc[:21])
    pd.testing.assert_frame_equal(holdout, fresh.iloc[21:30].reset_index(drop=True))


def test_a_metric_below_its_floor_starts_a_loop(project: Project) -> None:
    now = datetime.now(UTC)
    rows = make_data(60, seed=7)
    ids = log_traffic(project, rows, [now - timedelta(minutes=30)] * 60)
    label(project, ids, rows["target"])
    settings = project.with_loop(
        trigger={"metric": "performance:accuracy", "below": 0.9, "window": "1h"},
        train={"labelled_window": "1h"},
    )
    controller = LoopController(project.registry, settings)
    result = controller.step("churn", now=now)
    assert (result.action, result.loop) == ("triggered", 1), result
    [status] = loop.loop_status(project.registry.db, "churn")
    assert status.trigger is not None
    accuracy = float((rows["target"] == 0).mean())
    assert status.trigger["kind"] == "metric"
    assert status.trigger["metric"] == "performance:accuracy"
    assert status.trigger["value"] == pytest.approx(accuracy)
    assert status.trigger["threshold"] == 0.9 and status.trigger["serving"] == "churn/1"
    assert status.transitions[0].trigger_key is not None
    assert status.transitions[0].trigger_key.startswith("metric:performance:accuracy:churn/1:")
    moved = controller.step("churn", now=now)
    assert moved.action == "training"
    [status] = loop.loop_status(project.registry.db, "churn")
    evidence = status.transitions[-1].evidence["data"]
    assert (evidence["labelled_rows"], evidence["holdout_rows"]) == (60, 18)
