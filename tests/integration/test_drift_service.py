"""Drift of a deployment's logged traffic against a registered version: windows, cached hour
profiles, output drift, reference and current files, and the errors."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from modelyard.errors import InvalidInputError, PredictionLogEmptyError
from modelyard.monitoring.report import render_report
from modelyard.monitoring.service import (
    DriftOptions,
    build_report,
    deployment_drift,
    drift_series,
    window_metrics,
)
from modelyard.registry import Registry
from tests._logdata import write_log
from tests.integration._server import YARD, server_env

NOW = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)


def data(rows: int, seed: int, *, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    colours = np.array(["red", "green", "blue"])
    return pd.DataFrame(
        {
            "a": rng.normal(size=rows) + shift,
            "b": rng.lognormal(size=rows),
            "colour": pd.Series(colours[rng.choice(3, size=rows, p=[0.5, 0.3, 0.2])]),
        }
    ).astype({"colour": "string"})


@pytest.fixture
def churn(sqlite_registry: Registry) -> tuple[Registry, LogisticRegression]:
    X = data(5_000, 1)
    y = (X["a"] + np.random.default_rng(2).normal(size=len(X)) > 0).astype(int)
    model = LogisticRegression().fit(X[["a", "b"]], y)
    sqlite_registry.register(model, name="churn", data=X[["a", "b"]], target=y)
    return sqlite_registry, model


def log_hour(root: Path, start: datetime, frame: pd.DataFrame, model: LogisticRegression) -> None:
    times = [start + timedelta(seconds=3000 * i / len(frame)) for i in range(len(frame))]
    X = frame[["a", "b"]]
    write_log(
        root, "churn", X, times, model="churn", version="1",
        predict=model.predict(X), proba=model.predict_proba(X),
    )  # fmt: skip


def test_the_shifted_hours_drift_and_each_file_is_profiled_once(
    churn: tuple[Registry, LogisticRegression], tmp_path: Path
) -> None:
    registry, model = churn
    root = tmp_path / "log"
    log_hour(root, datetime(2026, 1, 1, 9, 0, tzinfo=UTC), data(3_000, 3), model)
    log_hour(root, datetime(2026, 1, 1, 10, 0, tzinfo=UTC), data(3_000, 4), model)
    log_hour(root, datetime(2026, 1, 1, 11, 0, tzinfo=UTC), data(3_000, 5, shift=1.0), model)
    log_hour(root, datetime(2026, 1, 1, 12, 0, tzinfo=UTC), data(3_000, 6, shift=1.0), model)

    calm = deployment_drift(registry, root, "churn", window=timedelta(hours=2), now=NOW - 2 * HOURS)
    assert calm.reference == "churn/1 (stored profile)"
    assert [c.name for c in calm.columns if c.drifted] == []
    assert calm.current_rows == 3_000 + 1_800  # all of hour 9, and 10:00-10:30 of hour 10

    drifting = deployment_drift(registry, root, "churn", window=timedelta(hours=3), now=NOW)
    assert [c.name for c in drifting.columns if c.drifted] == ["a"]
    assert {c.method for c in drifting.columns} == {"psi"}
    outputs = {c.name: c for c in drifting.outputs}
    assert set(outputs) == {"predict", "proba_0", "proba_1"}
    assert outputs["proba_1"].drifted  # a drives the prediction

    cache = root / "_profiles" / "deployment=churn"
    cached = sorted(p.name for p in cache.glob("*/*.json"))
    # every hour's files, for the inputs and for the outputs
    assert cached == [f"2026-01-01T{hour}.json" for hour in ("09", "10", "11", "12") for _ in "io"]
    stamps = {p: p.stat().st_mtime_ns for p in cache.glob("*/*.json")}
    again = deployment_drift(registry, root, "churn", window=timedelta(hours=3), now=NOW)
    assert again == drifting
    assert {p: p.stat().st_mtime_ns for p in cache.glob("*/*.json")} == stamps

    series = drift_series(registry, root, "churn", window=timedelta(hours=4), now=NOW)
    assert [hour.hour for hour, _ in series] == [9, 10, 11, 12]
    assert [result.columns[0].drifted for _, result in series] == [False, False, True, True]
    stamps = {p: p.stat().st_mtime_ns for p in cache.glob("*/*.json")}

    # a late file in a cached hour changes its digest: that hour (only) is profiled again
    log_hour(root, datetime(2026, 1, 1, 10, 5, tzinfo=UTC), data(500, 7, shift=1.0), model)
    late = deployment_drift(registry, root, "churn", window=timedelta(hours=3), now=NOW)
    assert late.current_rows == drifting.current_rows + 500
    changed = [p.name for p in cache.glob("*/*.json") if p.stat().st_mtime_ns != stamps[p]]
    assert sorted(changed) == ["2026-01-01T10.json"] * 2, changed


HOURS = timedelta(hours=1)


def test_last_rows_and_files_compare_exactly(
    churn: tuple[Registry, LogisticRegression], tmp_path: Path
) -> None:
    registry, model = churn
    root = tmp_path / "log"
    log_hour(root, datetime(2026, 1, 1, 11, 0, tzinfo=UTC), data(3_000, 3), model)
    log_hour(root, datetime(2026, 1, 1, 12, 0, tzinfo=UTC), data(800, 4, shift=1.0), model)
    last = deployment_drift(registry, root, "churn", last=500, now=NOW)
    assert last.current_rows == 500 and last.current == "last 500 predictions"
    assert {c.name: c.method for c in last.columns} == {"a": "chi2", "b": "chi2"}
    assert [c.name for c in last.columns if c.drifted] == ["a"]

    reference = tmp_path / "train.parquet"
    data(5_000, 1)[["a", "b"]].to_parquet(reference)
    exact = deployment_drift(
        registry, root, "churn", window=timedelta(hours=2), reference=str(reference), now=NOW
    )
    assert exact.reference == "train.parquet"
    assert {c.name: c.method for c in exact.columns} == {"a": "wasserstein", "b": "wasserstein"}
    assert {c.name for c in exact.outputs} == {"predict", "proba_0", "proba_1"}

    current = tmp_path / "today.csv"
    data(2_000, 9, shift=1.0)[["a", "b"]].to_csv(current, index=False)
    from_file = deployment_drift(
        registry, root, "churn", reference=str(reference), current=str(current)
    )
    assert from_file.current == "today.csv" and from_file.current_rows == 2_000
    assert [c.name for c in from_file.columns if c.drifted] == ["a"]
    by_version = deployment_drift(
        registry, root, "churn", reference="churn/1", current=str(current)
    )
    assert [c.name for c in by_version.columns if c.drifted] == ["a"]


def test_privacy_columns_are_left_out(
    churn: tuple[Registry, LogisticRegression], tmp_path: Path
) -> None:
    registry, model = churn
    root = tmp_path / "log"
    log_hour(root, datetime(2026, 1, 1, 12, 0, tzinfo=UTC), data(2_000, 3), model)
    result = deployment_drift(
        registry, root, "churn", now=NOW, options=DriftOptions(exclude=frozenset({"b"}))
    )
    assert [c.name for c in result.columns] == ["a"]


def test_bad_inputs_are_one_line_errors(
    churn: tuple[Registry, LogisticRegression], tmp_path: Path
) -> None:
    registry, model = churn
    root = tmp_path / "log"
    log_hour(root, datetime(2026, 1, 1, 12, 0, tzinfo=UTC), data(100, 3), model)
    with pytest.raises(PredictionLogEmptyError, match=r"No prediction log for 'ghost' .*churn"):
        deployment_drift(registry, root, "ghost", now=NOW)
    with pytest.raises(PredictionLogEmptyError, match=r"'churn' in the last 1h"):
        deployment_drift(registry, root, "churn", now=NOW + timedelta(days=1))
    # the hour's folder is there, but nothing was logged in the second before ``later``
    empty = r"No predictions logged for 'churn' in the last 1s \(log root .*widen the window"
    second, later = timedelta(seconds=1), NOW + timedelta(minutes=20)
    train = tmp_path / "train.csv"
    data(100, 4)[["a", "b"]].to_csv(train, index=False)
    for reference in (None, str(train)):
        with pytest.raises(PredictionLogEmptyError, match=empty):
            deployment_drift(registry, root, "churn", window=second, reference=reference, now=later)
    with pytest.raises(PredictionLogEmptyError, match=empty):
        build_report(registry, root, "churn", window=second, now=later)
    for window, shown in ((timedelta(0), "0s"), (-HOURS, "-1h")):  # not the default hour
        with pytest.raises(InvalidInputError, match=rf"^The window '{shown}' is empty; use "):
            deployment_drift(registry, root, "churn", window=window, now=NOW)
        with pytest.raises(InvalidInputError, match=rf"^The window '{shown}' is empty; use "):
            build_report(registry, root, "churn", window=window, now=NOW)
    wrong = tmp_path / "wrong.csv"
    pd.DataFrame({"a": [1.0], "zz": [2.0]}).to_csv(wrong, index=False)
    with pytest.raises(InvalidInputError, match=r"columns the reference churn/1 .* lacks: 'zz'"):
        deployment_drift(registry, root, "churn", reference="churn/1", current=str(wrong))
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(InvalidInputError, match=r"neither CSV nor Parquet"):
        deployment_drift(registry, root, "churn", current=str(tmp_path / "x.json"))
    with pytest.raises(InvalidInputError, match=r"does not exist"):
        deployment_drift(registry, root, "churn", reference=str(tmp_path / "none.csv"), now=NOW)
    assert not (root / "_profiles" / "deployment=ghost").exists()


def yard_env(registry: Registry, root: Path) -> dict[str, str]:
    """The environment of a 'yard' subprocess on ``registry``'s store and the log at ``root``."""
    return server_env(
        Path(registry.settings.home),
        MODELYARD_DATABASE_URL=registry.settings.resolved_database_url,
        MODELYARD_ARTIFACT_ROOT=registry.settings.resolved_artifact_root,
        MODELYARD_MONITORING__LOG_ROOT=str(root),
    )


def test_yard_monitor_drift_prints_json(
    churn: tuple[Registry, LogisticRegression], tmp_path: Path
) -> None:
    registry, _ = churn
    root = tmp_path / "log"
    now = datetime.now(UTC)
    frame = data(1_500, 3, shift=1.0)
    write_log(
        root, "churn", frame[["a", "b"]], [now - timedelta(minutes=5)] * len(frame),
        model="churn", version="1",
    )  # fmt: skip
    env = yard_env(registry, root)
    out = subprocess.run(
        [YARD, "monitor", "drift", "churn", "--window", "1h", "--json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(out.stdout)
    assert [c["name"] for c in result["columns"] if c["drifted"]] == ["a"]
    text = subprocess.run(
        [YARD, "monitor", "drift", "churn"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "drift of inputs" in text and "DRIFT" in text
    # missing values: a of 70% null rows (the rest alike), b null in every row
    nulls = data(1_000, 5)[["a", "b"]]
    nulls.loc[:699, "a"] = np.nan
    nulls["b"] = np.nan
    nulls.to_csv(tmp_path / "nulls.csv", index=False)
    command = [YARD, "monitor", "drift", "churn", "--reference", "churn/1", "--current"]
    shown = subprocess.run(
        [*command, str(tmp_path / "nulls.csv")], env=env, capture_output=True, text=True, check=True
    ).stdout
    lines = {line.split()[1]: line for line in shown.splitlines() if line.startswith("│ ")}
    assert re.search(r"│ a .* chi2 .* DRIFT .* 300 .* 0\.0% → 70\.0% DRIFT +│", lines["a"])
    assert re.search(
        r"│ b .* chi2 .* all null .* DRIFT .* 0 .* 0\.0% → 100\.0% DRIFT +│", lines["b"]
    )
    out = subprocess.run(
        [*command, str(tmp_path / "nulls.csv"), "--json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    a, b = json.loads(out.stdout)["columns"]
    assert (a["current_null_share"], a["null_drifted"], a["compared"]) == (0.7, True, True)
    assert (b["current_null_share"], b["null_drifted"], b["compared"]) == (1.0, True, False)
    assert a["drifted"] and b["drifted"] and a["null_p_value"] < 1e-12
    bad = subprocess.run(
        [YARD, "monitor", "drift", "nobody"], env=env, capture_output=True, text=True, check=False
    )
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
    assert "No prediction log for 'nobody'" in bad.stderr

    def refused(*args: str) -> str:
        """The one stderr line of a drift call refused before it reads anything."""
        done = subprocess.run(
            [YARD, "monitor", "drift", "churn", *args],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert (done.returncode, done.stdout) == (1, "")
        return done.stderr

    assert refused("--window", "0s") == (
        "error: The window '0s' is empty; use a positive one such as --window 1h.\n"
    )
    assert refused("--window", "1h", "--last", "10") == (
        "error: --window and --last both choose the rows to compare; pass one of them "
        "(--last 10 alone for the newest 10 rows).\n"
    )
    assert refused("--current", "x.parquet", "--window", "1h") == (
        "error: --current x.parquet is the rows to compare, so --window would be ignored; pass "
        "one of them.\n"
    )
    out = subprocess.run(
        [YARD, "monitor", "report", "churn", "--window", "2h", "-o", str(tmp_path / "r.html")],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.startswith(f"Wrote {tmp_path / 'r.html'}") and "1 of 2 columns" in out.stdout
    assert re.search(r" \(\d+\.\d (KiB|MiB)\): ", out.stdout), out.stdout


def test_window_metrics_and_the_report_cover_the_window(
    churn: tuple[Registry, LogisticRegression], tmp_path: Path
) -> None:
    registry, model = churn
    root = tmp_path / "log"
    log_hour(root, datetime(2026, 1, 1, 10, 0, tzinfo=UTC), data(2_000, 3), model)
    log_hour(root, datetime(2026, 1, 1, 11, 0, tzinfo=UTC), data(2_000, 4, shift=1.0), model)
    metrics = window_metrics(registry, root, "churn", window=timedelta(hours=3), now=NOW)
    assert metrics["rows"] == 4_000 and metrics["requests"] == 4_000
    assert metrics["error_rate"] == 0.0 and metrics["p99_latency_ms"] == pytest.approx(1.5)
    assert metrics["drift:a"] >= 0.1 > metrics["drift:b"]
    assert metrics["drift_share"] == 0.5 and "output_drift:proba_1" in metrics
    later = NOW + timedelta(hours=2)
    empty = window_metrics(registry, root, "churn", window=timedelta(hours=1), now=later)
    assert empty == {"rows": 0.0}

    report = build_report(registry, root, "churn", window=timedelta(hours=3), now=NOW)
    assert report.window == "3h" and report.drift.current_rows == 4_000
    assert [p.rows for p in report.series] == [2_000, 2_000]
    assert [p.drift_share for p in report.series] == [0.0, 0.5]
    assert report.performance is None  # no labels yet
    html = render_report(report)
    assert "churn/1 (stored profile)" in html and "<script" not in html


def test_only_the_logged_outputs_are_compared(
    churn: tuple[Registry, LogisticRegression], tmp_path: Path
) -> None:
    registry, model = churn
    root = tmp_path / "log"
    X = data(2_000, 3)[["a", "b"]]
    times = [datetime(2026, 1, 1, 12, 0, tzinfo=UTC)] * len(X)
    write_log(root, "churn", X, times, model="churn", version="1", predict=model.predict(X))
    result = deployment_drift(registry, root, "churn", now=NOW)
    assert [(c.name, c.current_rows) for c in result.outputs] == [("predict", 2_000)]
    assert not result.outputs[0].drifted


def test_rows_without_the_probabilities_are_missing_in_the_output_drift(
    churn: tuple[Registry, LogisticRegression], tmp_path: Path
) -> None:
    """A log mixing requests that asked for ``predict_proba`` (the V2 door) and requests that
    did not (``/invocations``): drift, the last rows, the metrics and the report compare the
    probabilities of the rows that have them."""
    registry, model = churn
    root = tmp_path / "log"
    X = data(2_000, 3)[["a", "b"]]
    for half, start in ((X.iloc[:1_000], 0), (X.iloc[1_000:], 25)):
        times = [NOW - timedelta(minutes=start + 1 + 20 * i / len(half)) for i in range(len(half))]
        write_log(
            root, "churn", half, times, model="churn", version="1", predict=model.predict(half)
        )
        proba = model.predict_proba(half)
        write_log(
            root, "churn", half, times, model="churn", version="1",
            predict=model.predict(half), proba=proba,
        )  # fmt: skip
    for found in (
        deployment_drift(registry, root, "churn", now=NOW),
        deployment_drift(registry, root, "churn", last=3_000, now=NOW),
    ):
        outputs = {c.name: c for c in found.outputs}
        assert set(outputs) == {"predict", "proba_0", "proba_1"}
        assert outputs["proba_1"].current_rows == found.current_rows // 2
        assert not outputs["proba_1"].drifted
    metrics = window_metrics(registry, root, "churn", window=timedelta(hours=1), now=NOW)
    assert metrics["rows"] == 4_000 and "output_drift:proba_1" in metrics
    report = build_report(registry, root, "churn", window=timedelta(hours=1), now=NOW)
    assert {c.name for c in report.drift.outputs} == {"predict", "proba_0", "proba_1"}


def test_a_classifier_without_a_reference_sample_is_compared_on_the_reference_file(
    sqlite_registry: Registry, tmp_path: Path
) -> None:
    """A classifier registered with an input example has no stored sample, so with --reference
    FILE its inputs were compared with the file and its outputs section left out without a
    word. The model's outputs on a seeded sample of the file's rows are the reference now."""
    X = data(12_000, 1)[["a", "b"]]
    y = (X["a"] + np.random.default_rng(2).normal(size=len(X)) > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    sqlite_registry.register(model, name="churn", input_example=X.head(20))
    root = tmp_path / "log"
    log_hour(root, datetime(2026, 1, 1, 11, 0, tzinfo=UTC), data(3_000, 3), model)
    log_hour(root, datetime(2026, 1, 1, 12, 0, tzinfo=UTC), data(800, 4, shift=1.0), model)
    reference = tmp_path / "train.parquet"
    data(12_000, 1).to_parquet(reference)  # the inputs and a column the model does not take

    calm = deployment_drift(sqlite_registry, root, "churn", reference=str(reference),
                            window=timedelta(hours=1), now=NOW - HOURS)  # fmt: skip
    late = deployment_drift(sqlite_registry, root, "churn", reference=str(reference), last=800,
                            now=NOW)  # fmt: skip
    for result, drifts in ((calm, False), (late, True)):
        outputs = {c.name: c for c in result.outputs}
        assert set(outputs) == {"predict", "proba_0", "proba_1"}
        assert outputs["proba_1"].drifted is drifts  # a drives the prediction
        assert outputs["proba_1"].reference_rows == 10_000  # a seeded sample of the file's rows
        assert result.notes == ()
    again = deployment_drift(sqlite_registry, root, "churn", reference=str(reference), last=800,
                             now=NOW)  # fmt: skip
    assert again == late  # the same seeded rows
    assert not (root / "_profiles" / "outputs").exists()  # a file's outputs are not the version's

    env = yard_env(sqlite_registry, root)
    out = subprocess.run(
        [YARD, "monitor", "drift", "churn", "--last", "800", "--reference", str(reference),
         "--json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    shown = json.loads(out.stdout)
    assert {c["name"]: c["drifted"] for c in shown["outputs"]}["proba_1"] is True
    assert shown["notes"] == []


class PickledClassifier:
    """Class 1 where a is positive: a model only a trusted pickle can hold."""

    classes_ = np.array([0, 1])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        if (X["a"] > 10).any():
            raise ValueError("a above 10 is out of range")
        return (X["a"].to_numpy() > 0).astype(np.int64)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = 1 / (1 + np.exp(-X["a"].to_numpy()))
        return np.column_stack([1 - p, p])


def test_an_outputs_section_that_cannot_be_computed_says_why(
    sqlite_registry: Registry, tmp_path: Path
) -> None:
    X = data(500, 1)[["a", "b"]]
    sqlite_registry.register(PickledClassifier(), name="churn", input_example=X.head(20),
                             trust_pickle=True)  # fmt: skip
    root = tmp_path / "log"
    log_hour(root, datetime(2026, 1, 1, 12, 0, tzinfo=UTC), data(300, 3), PickledClassifier())  # type: ignore[arg-type]
    reference = tmp_path / "train.csv"
    X.to_csv(reference, index=False)
    result = deployment_drift(sqlite_registry, root, "churn", reference=str(reference), last=300,
                              now=NOW)  # fmt: skip
    assert result.outputs == ()
    assert result.notes == (
        "Outputs 'predict', 'predict_proba' were not compared: churn/1 is a pickle, loaded only "
        "when trusted; set MODELYARD_SERVING__TRUST_PICKLE=true to compare them.",
    )
    trusted = deployment_drift(
        sqlite_registry, root, "churn", reference=str(reference), last=300, now=NOW,
        options=DriftOptions(trust_pickle=True),
    )  # fmt: skip
    assert {c.name for c in trusted.outputs} == {"predict", "proba_0", "proba_1"}
    assert trusted.notes == ()
    # a model that cannot predict on the file's rows: a note, not a failed drift
    X.assign(a=X["a"] + 100).to_csv(reference, index=False)
    failed = deployment_drift(
        sqlite_registry, root, "churn", reference=str(reference), last=300, now=NOW,
        options=DriftOptions(trust_pickle=True),
    )  # fmt: skip
    (note,) = failed.notes
    assert (
        note.startswith(
            "Outputs 'predict', 'predict_proba' were not compared: churn/1 cannot predict on its "
            "reference rows: "
        )
        and "a above 10" in note
    ), note
    assert failed.outputs == () and failed.columns  # the inputs are compared all the same
