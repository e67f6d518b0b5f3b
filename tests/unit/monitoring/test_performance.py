"""Performance where labels meet logged predictions: each metric equals scikit-learn's on the
joined rows, windows select predictions, unmatched labels are counted."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm

from modelyard.errors import InvalidInputError, PredictionLogEmptyError
from modelyard.monitoring.labels import ingest_labels
from modelyard.monitoring.performance import compute_performance, performance_series
from modelyard.registry import Registry

NOW = datetime.now(UTC)


def write_log(
    root: Path,
    name: str,
    *,
    ids: Sequence[str],
    predict: Sequence[Any],
    proba: np.ndarray | None = None,
    times: Sequence[datetime] | None = None,
    rows: Sequence[int] | None = None,
) -> None:
    """Predictions in the layout ``ParquetSink`` writes: one file per hour partition."""
    n = len(ids)
    times = list(times or [NOW - timedelta(minutes=5)] * n)
    data: dict[str, Any] = {
        "request_id": pa.array(list(ids), pa.string()),
        "row": pa.array(list(rows or [0] * n), pa.int64()),
        "time": pa.array(times, pa.timestamp("us", tz="UTC")),
        "deployment": [name] * n, "route": ["v2_infer"] * n, "model": ["m"] * n,
        "version": ["1"] * n, "latency_ms": [1.0] * n, "in_x": np.arange(n, dtype=np.float64),
        "out_predict": pa.array(list(predict)),
    }  # fmt: skip
    if proba is not None:
        data["out_predict_proba"] = pa.array(proba.tolist(), pa.list_(pa.float64()))
    table = pa.table(data)
    hours = [t.strftime("%Y-%m-%dT%H") for t in times]
    for hour in sorted(set(hours)):
        folder = root / f"deployment={name}" / f"hour={hour}"
        folder.mkdir(parents=True, exist_ok=True)
        chosen = table.filter(pa.array([h == hour for h in hours]))
        pq.write_table(chosen, folder / f"{uuid.uuid4().hex}.parquet")


def label(root: Path, name: str, ids: Sequence[str], values: Sequence[Any], **extra: Any) -> None:
    frame = pd.DataFrame({"request_id": list(ids), "label": list(values), **extra})
    ingest_labels(root, name, frame, count_matched=False)


def binary_case(root: Path, n: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` binary predictions of ``bin``, labels for the first 250 (and 7 unknown ids)."""
    rng = np.random.default_rng(1)
    p1 = rng.random(n)
    proba = np.c_[1 - p1, p1]
    predicted = (p1 > 0.5).astype(np.int64)
    truth = (rng.random(n) < 0.2 + 0.6 * p1).astype(np.int64)
    ids = [f"r{i}" for i in range(n)]
    write_log(root, "bin", ids=ids, predict=predicted, proba=proba)
    label(root, "bin", ids[:250] + [f"ghost{i}" for i in range(7)], [*truth[:250], *[1] * 7])
    return truth[:250], predicted[:250], proba[:250]


def test_binary_metrics_equal_sklearn_on_the_joined_rows(tmp_path: Path) -> None:
    truth, predicted, proba = binary_case(tmp_path)
    result = compute_performance(tmp_path, "bin", since=timedelta(hours=1))
    assert result.task == "classification"
    assert result.metrics == pytest.approx({
        "accuracy": skm.accuracy_score(truth, predicted),
        "precision": skm.precision_score(truth, predicted),
        "recall": skm.recall_score(truth, predicted),
        "f1": skm.f1_score(truth, predicted),
        "roc_auc": skm.roc_auc_score(truth, proba[:, 1]),
        "log_loss": skm.log_loss(truth, proba),
    })  # fmt: skip
    assert result.counts == dict.fromkeys(result.metrics, 250)
    assert (result.labelled, result.predictions, result.unmatched_labels) == (250, 300, 7)


def test_multiclass_string_classes_use_macro_and_one_vs_rest(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    classes = ["cat", "dog", "eel"]
    proba = rng.dirichlet([1, 1, 1], size=200)
    predicted = np.array(classes)[proba.argmax(axis=1)]
    truth = np.where(rng.random(200) < 0.6, predicted, rng.choice(classes, 200))
    ids = [f"r{i}" for i in range(200)]
    write_log(tmp_path, "animals", ids=ids, predict=predicted.tolist(), proba=proba)
    label(tmp_path, "animals", ids, truth.tolist())
    result = compute_performance(tmp_path, "animals", classes=classes)
    macro = {"average": "macro"}
    assert result.metrics == pytest.approx({
        "accuracy": skm.accuracy_score(truth, predicted),
        "precision": skm.precision_score(truth, predicted, **macro),
        "recall": skm.recall_score(truth, predicted, **macro),
        "f1": skm.f1_score(truth, predicted, **macro),
        "roc_auc": skm.roc_auc_score(truth, proba, multi_class="ovr", labels=classes),
        "log_loss": skm.log_loss(truth, proba, labels=classes),
    })  # fmt: skip
    assert result.counts == dict.fromkeys(result.metrics, 200)
    # inferred classes (sorted labels and predictions) give the same numbers
    assert compute_performance(tmp_path, "animals").metrics == pytest.approx(result.metrics)


def test_numeric_multiclass_inferred_from_the_log(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    proba = rng.dirichlet([2, 1, 1, 1], size=120)
    predicted = proba.argmax(axis=1)
    truth = np.where(rng.random(120) < 0.5, predicted, rng.integers(0, 4, 120))
    ids = [f"r{i}" for i in range(120)]
    write_log(tmp_path, "digits", ids=ids, predict=predicted, proba=proba)
    label(tmp_path, "digits", ids, truth.astype(float))  # 1.0 labels match class 1
    result = compute_performance(tmp_path, "digits", since=timedelta(hours=1))
    assert result.metrics["f1"] == pytest.approx(skm.f1_score(truth, predicted, average="macro"))
    assert result.metrics["roc_auc"] == pytest.approx(
        skm.roc_auc_score(truth, proba, multi_class="ovr")
    )
    assert result.metrics["log_loss"] == pytest.approx(skm.log_loss(truth, proba))


def test_regression_metrics_equal_sklearn(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    predicted = rng.normal(10, 3, 150)
    truth = predicted + rng.normal(0, 1, 150)
    ids = [f"r{i}" for i in range(150)]
    write_log(tmp_path, "price", ids=ids, predict=predicted)
    label(tmp_path, "price", ids[:100], truth[:100])
    result = compute_performance(tmp_path, "price", since=timedelta(hours=1))
    assert result.task == "regression"
    y, p = truth[:100], predicted[:100]
    assert result.metrics == pytest.approx({
        "mae": skm.mean_absolute_error(y, p),
        "rmse": skm.root_mean_squared_error(y, p),
        "r2": skm.r2_score(y, p),
    })  # fmt: skip
    assert result.counts == {"mae": 100, "rmse": 100, "r2": 100}
    assert (result.labelled, result.predictions, result.unmatched_labels) == (100, 150, 0)


def test_multi_row_requests_join_on_the_row(tmp_path: Path) -> None:
    write_log(tmp_path, "rows", ids=["a", "a", "a", "b"], rows=[0, 1, 2, 0],
              predict=[1.0, 2.0, 3.0, 4.0])  # fmt: skip
    label(tmp_path, "rows", ["a", "a", "b", "a"], [1.0, 5.0, 4.0, 9.0], row=[0, 2, 0, 7])
    result = compute_performance(tmp_path, "rows")
    # a/0 is right, a/2 is off by 2, b/0 is right; a/7 matches no prediction
    assert result.metrics["mae"] == pytest.approx(2 / 3)
    assert (result.labelled, result.predictions, result.unmatched_labels) == (3, 4, 1)


def test_a_later_label_replaces_an_earlier_one(tmp_path: Path) -> None:
    write_log(tmp_path, "bin", ids=["a", "b"], predict=[1, 0])
    label(tmp_path, "bin", ["a", "b"], [0, 0])
    assert compute_performance(tmp_path, "bin", task="classification").metrics["accuracy"] == 0.5
    label(tmp_path, "bin", ["a"], [1])
    assert compute_performance(tmp_path, "bin", task="classification").metrics["accuracy"] == 1.0


def test_the_window_selects_predictions_and_unmatched_means_no_prediction_at_all(
    tmp_path: Path,
) -> None:
    old, new = NOW - timedelta(hours=5), NOW - timedelta(minutes=5)
    write_log(tmp_path, "w", ids=["old1", "old2", "new1", "new2", "new3"],
              predict=[1.0, 2.0, 3.0, 4.0, 5.0], times=[old, old, new, new, new])  # fmt: skip
    label(tmp_path, "w", ["old1", "new1", "new2", "nowhere"], [1.0, 3.0, 6.0, 0.0])
    recent = compute_performance(tmp_path, "w", since=timedelta(hours=1))
    assert recent.metrics == pytest.approx({"mae": 1.0, "rmse": 2**0.5, "r2": 1 / 9})
    # old1 is labelled but outside the window: not used, and not unmatched either
    assert (recent.labelled, recent.predictions, recent.unmatched_labels) == (2, 3, 1)
    everything = compute_performance(tmp_path, "w")
    assert (everything.labelled, everything.predictions) == (3, 5)
    between = compute_performance(tmp_path, "w", start=old - timedelta(minutes=1), end=new)
    assert (between.labelled, between.predictions) == (1, 2)
    assert between.metrics == {"mae": 0.0, "rmse": 0.0}
    assert between.counts == {"mae": 1, "rmse": 1}  # r2 needs two rows


def test_metrics_that_cannot_be_computed_are_left_out(tmp_path: Path) -> None:
    ids = ["a", "b", "c"]
    write_log(tmp_path, "one", ids=ids, predict=[1, 1, 0], proba=np.array([[0.2, 0.8]] * 3))
    label(tmp_path, "one", ids, [1, 1, 1])
    result = compute_performance(tmp_path, "one")
    assert "roc_auc" not in result.metrics  # one class in the labels
    assert result.metrics["accuracy"] == pytest.approx(2 / 3)
    expected = skm.log_loss([1, 1, 1], [[0.2, 0.8]] * 3, labels=[0, 1])
    assert result.metrics["log_loss"] == pytest.approx(expected)


def test_labels_outside_the_model_classes_count_as_wrong(tmp_path: Path) -> None:
    ids = ["a", "b", "c", "d"]
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    write_log(tmp_path, "bin", ids=ids, predict=["no", "yes", "yes", "no"], proba=proba)
    label(tmp_path, "bin", ids, ["no", "yes", "maybe", "yes"])
    result = compute_performance(tmp_path, "bin", classes=["no", "yes"])
    assert result.metrics["accuracy"] == 0.5
    assert result.counts["accuracy"] == 4
    assert result.counts["roc_auc"] == result.counts["log_loss"] == 3  # "maybe" has no column
    known = [0, 1, 3]
    assert result.metrics["roc_auc"] == pytest.approx(skm.roc_auc_score([0, 1, 1], proba[known, 1]))
    # still the binary scores of "yes": "maybe" is one more row that is not "yes" (one label
    # outside the classes used to switch all three to macro averages over three classes)
    positive = [False, True, False, True], [False, True, True, False]
    assert result.metrics["precision"] == pytest.approx(skm.precision_score(*positive))
    assert result.metrics["recall"] == pytest.approx(skm.recall_score(*positive))
    assert result.metrics["f1"] == pytest.approx(skm.f1_score(*positive))


def test_a_label_outside_three_classes_is_no_class_of_the_macro_average(tmp_path: Path) -> None:
    ids = ["a", "b", "c", "d", "e"]
    predicted = ["x", "y", "z", "x", "y"]
    write_log(tmp_path, "tri", ids=ids, predict=predicted)
    label(tmp_path, "tri", ids, ["x", "y", "z", "zzz", "x"])
    result = compute_performance(tmp_path, "tri", classes=["x", "y", "z"])
    truth = ["x", "y", "z", "zzz", "x"]
    macro = {"average": "macro", "labels": ["x", "y", "z"], "zero_division": 0}
    assert result.metrics["accuracy"] == pytest.approx(3 / 5)
    assert result.metrics["f1"] == pytest.approx(skm.f1_score(truth, predicted, **macro))
    assert result.metrics["recall"] == pytest.approx(skm.recall_score(truth, predicted, **macro))


def test_no_labels_yet_gives_no_metrics(tmp_path: Path) -> None:
    write_log(tmp_path, "bin", ids=["a"], predict=[1])
    result = compute_performance(tmp_path, "bin", since=timedelta(hours=1))
    assert (result.metrics, result.counts, result.labelled, result.predictions) == ({}, {}, 0, 1)
    assert result.unmatched_labels == 0


def test_empty_window_and_unknown_name_are_clear_errors(tmp_path: Path) -> None:
    write_log(tmp_path, "bin", ids=["a"], predict=[1], times=[NOW - timedelta(hours=3)])
    with pytest.raises(PredictionLogEmptyError) as caught:
        compute_performance(tmp_path, "bin", since=timedelta(hours=1))
    assert str(caught.value) == (
        f"No predictions logged for 'bin' in the last 1h (log root {tmp_path}); serve it with "
        "'yard serve --log-predictions' or widen the window."
    )
    with pytest.raises(PredictionLogEmptyError, match=r"^No predictions logged for 'ghost' at all"):
        compute_performance(tmp_path, "ghost")
    with pytest.raises(InvalidInputError, match="either since or start/end"):
        compute_performance(tmp_path, "bin", since=timedelta(hours=1), start=NOW)
    with pytest.raises(InvalidInputError, match=r"^The window '0s' is empty; use a positive"):
        compute_performance(tmp_path, "bin", since=timedelta(0))  # yard labels performance


def test_hourly_series_matches_each_window_computed_alone(tmp_path: Path) -> None:
    now = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)
    times = [datetime(2026, 5, 1, h, m, tzinfo=UTC) for h, m in
             [(10, 5), (10, 50), (10, 59), (12, 1), (12, 20), (12, 29), (9, 10)]]  # fmt: skip
    ids = [f"r{i}" for i in range(len(times))]
    write_log(tmp_path, "s", ids=ids, predict=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], times=times)
    label(tmp_path, "s", ids, [1.5, 2.0, 5.0, 4.0, 4.0, 8.0, 0.0])
    series = performance_series(tmp_path, "s", since=timedelta(hours=3), every="1h", now=now)
    starts = [s for s, _, _ in series]
    assert starts == [datetime(2026, 5, 1, h, tzinfo=UTC) for h in (9, 10, 11, 12)]
    assert series[-1][1] == now  # the running hour ends now
    assert series[2][2] is None  # nothing logged at 11:00
    for start, end, perf in (series[0], series[1], series[3]):
        assert perf == compute_performance(tmp_path, "s", start=start, end=end)
    assert series[1][2] is not None and series[1][2].metrics["mae"] == pytest.approx(2.5 / 3)
    daily = performance_series(tmp_path, "s", since=timedelta(hours=3), every="1d", now=now)
    assert [(s, e) for s, e, _ in daily] == [(datetime(2026, 5, 1, tzinfo=UTC), now)]
    assert daily[0][2] is not None and daily[0][2].labelled == 7


def test_the_registry_knows_a_classifier_whose_log_has_no_probabilities(
    tmp_path: Path, sqlite_registry: Registry
) -> None:
    from sklearn.linear_model import LogisticRegression

    X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    sqlite_registry.register(LogisticRegression().fit(X, [0, 0, 1, 1]), name="m", data=X)
    ids = ["a", "b", "c", "d"]
    write_log(tmp_path, "clf", ids=ids, predict=[0, 1, 1, 0])  # predict only: 0/1 integers
    label(tmp_path, "clf", ids, [0, 1, 0, 0])
    known = compute_performance(tmp_path, "clf", registry=sqlite_registry)
    assert known.task == "classification"
    assert known.metrics["accuracy"] == 0.75
    assert "roc_auc" not in known.metrics  # no probabilities were logged
    # without the registry, integer predictions without probabilities look like a regressor
    assert compute_performance(tmp_path, "clf").task == "regression"


class Verdict:
    """Text predictions without ``classes_``: a model whose signature records no classes."""

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.where(X["x"].to_numpy() > 1.5, "spam", "ham").astype(object)


def test_text_predictions_without_classes_are_scored_as_a_classifier(
    tmp_path: Path, sqlite_registry: Registry
) -> None:
    """Registration gives such a model a signature with text predictions and no classes;
    performance took it for a regressor (MAE over the labels that are numbers: none), while
    ingest takes any label for it. Its labels are compared as text now, as ingest takes them."""
    from modelyard.monitoring.labelrules import logged_rule

    X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    version = sqlite_registry.register(Verdict(), name="m", data=X, trust_pickle=True)
    assert version.signature is not None and version.signature.classes is None
    assert [(o.name, o.dtype) for o in version.signature.outputs] == [("predict", "string")]
    ids = ["a", "b", "c", "d"]
    write_log(tmp_path, "txt", ids=ids, predict=["ham", "spam", "spam", "ham"])
    assert logged_rule(tmp_path, "txt", sqlite_registry) is None  # any label is taken
    label(tmp_path, "txt", ids, ["ham", "spam", "ham", "ham"])
    found = compute_performance(tmp_path, "txt", registry=sqlite_registry)
    assert (found.task, found.labelled) == ("classification", 4)
    assert found.metrics["accuracy"] == 0.75
