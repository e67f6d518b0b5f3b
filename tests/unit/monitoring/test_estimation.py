"""CBPE: estimates equal the analytic expectation on calibrated data, a shift toward the decision
boundary lowers them and raises the alert, multiclass, the log's windows, and every bad input."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelyard.errors import InvalidInputError, PredictionLogEmptyError
from modelyard.monitoring import _calibration
from modelyard.monitoring.estimated import estimate_performance, reference_from_log
from modelyard.monitoring.estimation import CBPE, METRICS, row_chunks, time_chunks
from modelyard.monitoring.labels import ingest_labels
from modelyard.settings import EstimationSettings
from tests._logdata import write_log

HOUR = timedelta(hours=1)


def calibrated(
    n: int, rng: np.random.Generator, p: np.ndarray | None = None
) -> tuple[np.ndarray, ...]:
    """Scores that are the true probabilities: ``y ~ Bernoulli(p)``, predicted ``p > 0.5``."""
    p = rng.random(n) if p is None else p
    return p, (rng.random(n) < p).astype(np.int64), (p > 0.5).astype(np.int64)


def fitted(rng: np.random.Generator, rows: int = 20_000, chunk: int = 2000) -> CBPE:
    p, y, q = calibrated(rows, rng)
    return CBPE(chunk_size=chunk).fit(y, p, q, classes=[0, 1])


def test_calibrated_scores_estimate_the_analytic_expectation() -> None:
    # p ~ U(0, 1), y ~ Bernoulli(p): accuracy E[max(p, 1 - p)] = 3/4; precision E[p | p > 1/2]
    # = 3/4; recall = (3/8) / (1/2) = 3/4; F1 = 3/4; ROC AUC = P(p+ > p-) = 5/6
    rng = np.random.default_rng(0)
    cbpe = fitted(rng)
    p, _, q = calibrated(20_000, rng)
    [chunk] = cbpe.estimate(p, q)
    expected = {"accuracy": 0.75, "precision": 0.75, "recall": 0.75, "f1": 0.75, "roc_auc": 5 / 6}
    for metric, truth in expected.items():
        found = chunk.metrics[metric]
        assert found.value is not None and found.sampling_error is not None
        assert abs(found.value - truth) < 3 * found.sampling_error, metric
        assert found.lower == pytest.approx(found.value - 3 * found.sampling_error)
        assert found.upper == pytest.approx(found.value + 3 * found.sampling_error)
        assert not found.alert
        assert found.realized is None and found.error is None
    assert chunk.rows == 20_000 and chunk.labelled == 0
    # the reference chunks' realised values set the thresholds around the expectation
    low, high = cbpe.thresholds_["accuracy"]
    assert low is not None and high is not None and low < 0.75 < high
    assert len(cbpe.reference_chunks_) == 10


def test_a_shift_toward_the_decision_boundary_lowers_the_estimate_and_alerts() -> None:
    rng = np.random.default_rng(1)
    cbpe = fitted(rng)
    near = rng.beta(12, 12, 4000)  # scores crowd around 0.5: the model is unsure
    p = np.concatenate([rng.random(4000), near])
    _, y, q = calibrated(8000, rng, p)
    before, after = cbpe.estimate(p, q, starts=[0, 4000], y_true=y)
    for metric in ("accuracy", "roc_auc"):
        assert not before.metrics[metric].alert
        shifted = after.metrics[metric]
        assert shifted.alert
        assert shifted.value is not None and shifted.lower_threshold is not None
        assert shifted.value < shifted.lower_threshold
        assert before.metrics[metric].value > shifted.value + 0.1  # type: ignore[operator]
        # the labels confirm it: the realised value is inside the estimate's band
        assert shifted.lower is not None and shifted.upper is not None
        assert shifted.realized is not None and shifted.lower <= shifted.realized <= shifted.upper
        assert shifted.error == pytest.approx(shifted.value - shifted.realized)


def test_miscalibrated_scores_are_calibrated_on_the_reference() -> None:
    rng = np.random.default_rng(2)
    truth_p = rng.random(30_000)
    y = (rng.random(30_000) < truth_p).astype(np.int64)
    score = truth_p**3  # ranks right, probabilities wrong
    q = (score > 0.5).astype(np.int64)
    cbpe = CBPE(chunk_size=3000).fit(y[:20_000], score[:20_000], q[:20_000], classes=[0, 1])
    assert cbpe.calibrated_ == (True,)
    [chunk] = cbpe.estimate(score[20_000:], q[20_000:], y_true=y[20_000:])
    for metric in METRICS:
        found = chunk.metrics[metric]
        assert found.error is not None and found.sampling_error is not None
        assert abs(found.error) < 3 * found.sampling_error + 0.01, metric
    raw = CBPE(chunk_size=3000, calibration="never").fit(y, score, q, classes=[0, 1])
    [uncalibrated] = raw.estimate(score[20_000:], q[20_000:], y_true=y[20_000:])
    assert abs(uncalibrated.metrics["accuracy"].error or 0) > 0.1  # what calibration fixes


@pytest.mark.parametrize("bend", [1.0, 1.1, 0.5, 2.0])
def test_the_calibration_decision_is_nannymls(bend: float) -> None:
    # the quick look on our own splits decides only when the answer is plain; it must agree
    # with the decision on NannyML's own splits (scikit-learn's, seed 42)
    rng = np.random.default_rng(int(bend * 10))
    p = rng.random(5000)
    positive = rng.random(5000) < p
    score = p**bend
    ranked = np.argsort(score, kind="stable")
    before, after = _calibration.split_errors(
        positive, score, ranked, _calibration.nannyml_splits(positive)
    )
    assert _calibration.needs_calibration(positive, score, ranked) == (before > after)


def test_multiclass_estimates_match_the_labels_and_take_text_classes() -> None:
    rng = np.random.default_rng(3)
    classes = ["cat", "dog", "eel"]

    def rows(n: int, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        proba = rng.dirichlet([alpha] * 3, n)
        cut = proba.cumsum(axis=1)
        truth = (rng.random(n)[:, None] > cut).sum(axis=1)
        return proba, np.array(classes)[truth], np.array(classes)[proba.argmax(axis=1)]

    proba, y, q = rows(15_000, 0.7)
    cbpe = CBPE(chunk_size=1500).fit(y, proba, q, classes=classes)
    sharp, y1, q1 = rows(5000, 0.7)
    flat, y2, q2 = rows(5000, 6.0)  # near-uniform probabilities: a worse model
    found = cbpe.estimate(
        np.vstack([sharp, flat]), np.r_[q1, q2], starts=[0, 5000], y_true=np.r_[y1, y2]
    )
    assert found[0].metrics["accuracy"].value == pytest.approx(sharp.max(axis=1).mean(), abs=0.02)
    for metric in METRICS:
        for chunk in found:
            got = chunk.metrics[metric]
            assert got.error is not None and got.sampling_error is not None
            assert abs(got.error) < 3 * got.sampling_error + 0.01, (metric, chunk.index)
    assert found[1].metrics["accuracy"].alert and not found[0].metrics["accuracy"].alert


def test_binary_proba_as_one_or_two_columns_and_missing_labels() -> None:
    rng = np.random.default_rng(4)
    cbpe = fitted(rng, chunk=1000)
    p, y, q = calibrated(3000, rng)
    one = cbpe.estimate(p, q, starts=row_chunks(3000, 1000))
    two = cbpe.estimate(np.c_[1 - p, p], None, starts=row_chunks(3000, 1000))  # argmax labels
    assert [c.metrics["f1"].value for c in one] == pytest.approx(
        [c.metrics["f1"].value for c in two]
    )
    labels = y.astype(object)
    labels[:2500] = None  # only the last 500 rows' labels arrived
    found = cbpe.estimate(p, q, starts=row_chunks(3000, 1000), y_true=labels)
    assert [c.labelled for c in found] == [0, 0, 500]
    assert found[0].metrics["accuracy"].realized is None
    assert found[2].metrics["accuracy"].realized == pytest.approx((y[2500:] == q[2500:]).mean())


def test_time_chunks_include_empty_periods() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    times = np.array(["2026-01-01T00:10", "2026-01-01T00:20", "2026-01-01T02:05"], "datetime64[us]")
    firsts, spans = time_chunks(times, start, start + timedelta(hours=3), timedelta(hours=1))
    assert firsts.tolist() == [0, 2, 2]
    assert spans[1] == (start + timedelta(hours=1), start + timedelta(hours=2))
    local = start.astimezone(timezone(timedelta(hours=2)))  # the same instant, written at +02:00
    assert time_chunks(times, local, local + timedelta(hours=3), HOUR)[0].tolist() == [0, 2, 2]
    cbpe = fitted(np.random.default_rng(5))
    found = cbpe.estimate([0.9, 0.2, 0.7], [1, 0, 1], starts=firsts)
    assert [c.rows for c in found] == [2, 0, 1]
    assert found[1].metrics == {} and found[0].metrics["accuracy"].value == pytest.approx(
        0.85, abs=0.02
    )


@pytest.mark.parametrize(
    ("y", "proba", "message"),
    [
        ([None] * 400, np.full(400, 0.5), "Reference label 0 is missing"),
        ([1] * 400, np.full(400, 0.5), "hold one class only (1)"),
        ([0, 1] * 200, np.full(400, 1.5), "outside [0, 1]; give probabilities"),
        ([0, 1] * 200, np.full((400, 3), 0.3), "shape (400, 3), not rows x 2"),
        ([0, 1] * 200, np.r_[np.full(399, 0.5), np.nan], "hold NaN or infinity (row 399)"),
        ([0, 1] * 100, np.full(200, 0.5), "200 rows, fewer than two chunks of 150"),
        ([0, 2] * 200, np.full(400, 0.5), "Reference label 1 is 2, not one of the classes"),
        (
            [0, 1] * 100,
            np.full(400, 0.5),
            "labels have shape (200,) and the probabilities 400 rows",
        ),
    ],
)
def test_bad_reference_inputs_are_refused(y: list[object], proba: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        CBPE(chunk_size=150).fit(y, proba, classes=[0, 1])
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_bad_chunk_inputs_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="not fitted"):
        CBPE(chunk_size=10).estimate([0.5])
    cbpe = fitted(np.random.default_rng(6))
    cases = [
        (([0.5, np.nan], [1, 0]), "hold NaN or infinity (row 1)"),
        (([0.5, -0.1], [1, 0]), "outside [0, 1]"),
        (([[0.5, 0.2, 0.3]], [1]), "not rows x 2"),
        (([0.5, 0.6], [1, 7]), "prediction in row 1 is not one of the classes"),
        (([], None), "has no rows"),
    ]
    for (proba, predicted), message in cases:
        with pytest.raises(InvalidInputError, match=re.escape(message)):
            cbpe.estimate(proba, predicted)
    with pytest.raises(InvalidInputError, match="Invalid chunk starts"):
        cbpe.estimate([0.5, 0.6], starts=[1])
    with pytest.raises(InvalidInputError, match="lack the classes"):
        CBPE(chunk_size=10).fit([0, 1] * 20, np.full((40, 3), 1 / 3), classes=[0, 1, 2])
    with pytest.raises(InvalidInputError, match="Invalid calibration"):
        CBPE(chunk_size=10, calibration="sometimes").fit([0, 1] * 20, [0.5] * 40, classes=[0, 1])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="distinct classes"):
        CBPE(chunk_size=10).fit([0, 1] * 20, [0.5] * 40, classes=[0, 0])


# -- the prediction log ------------------------------------------------------------------------


def logged(
    root: Path, *, hours: int = 4, per_hour: int = 600, shift_last: bool = True
) -> dict[str, np.ndarray]:
    """``hours`` of binary predictions of churn/1, calibrated; the last hour's scores crowd at
    the boundary. Labels for the first half of the rows."""
    rng = np.random.default_rng(7)
    n = hours * per_hour
    p = rng.random(n)
    if shift_last:
        p[-per_hour:] = rng.beta(12, 12, per_hour)
    _, y, q = calibrated(n, rng, p)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)
    times = [start + timedelta(seconds=3600 * i / per_hour) for i in range(n)]
    inputs = pd.DataFrame({"x": p})
    ids = write_log(root, "churn", inputs, times, model="churn", version="1", predict=q,
                    proba=np.c_[1 - p, p])  # fmt: skip
    half = n // 2
    ingest_labels(root, "churn", pd.DataFrame({"request_id": ids[:half], "label": y[:half]}))
    return {"p": p, "y": y, "q": q}


def test_estimates_per_hour_of_the_log(tmp_path: Path) -> None:
    data = logged(tmp_path)
    settings = EstimationSettings(reference_rows=1200, min_reference_rows=500)
    found = estimate_performance(tmp_path, "churn", since=timedelta(hours=4), settings=settings)
    assert (found.model, found.version, found.reference, found.reference_rows) == (
        "churn", "1", "log", 1200,
    )  # fmt: skip
    assert found.classes == (0, 1) and found.chunk == "1h"
    assert [w.rows for w in found.windows] == [600] * 4 + [0]  # the hour running now: none
    hours = [w for w in found.windows if w.rows]
    assert [w.rows for w in hours] == [600] * 4
    assert [w.labelled for w in hours] == [600, 600, 0, 0]
    assert all(w.model == "churn" and w.version == "1" for w in found.windows)
    assert found.windows[-1].start is not None and found.windows[-1].end is not None
    assert [w.metrics["accuracy"].alert for w in hours] == [False, False, False, True]
    first = hours[0].metrics["accuracy"]
    assert first.realized == pytest.approx((data["y"][:600] == data["q"][:600]).mean())
    latest = found.latest()
    assert latest is not None and latest.metrics["roc_auc"].alert
    # a reference kept by the caller gives the same estimates
    kept = reference_from_log(tmp_path, "churn", settings=settings)
    again = estimate_performance(
        tmp_path, "churn", since=timedelta(hours=4), reference=kept, settings=settings
    )
    assert again.reference == "fitted"
    assert [w.metrics for w in again.windows] == [w.metrics for w in found.windows]
    # row windows and an explicit reference table
    head = slice(0, 1200)
    reference = pd.DataFrame({"label": data["y"][head], "proba_0": 1 - data["p"][head],
                              "proba_1": data["p"][head], "predict": data["q"][head]})  # fmt: skip
    rows = estimate_performance(
        tmp_path, "churn", chunk=600, reference=reference, settings=settings
    )
    assert rows.reference == "table" and rows.chunk == "600 rows"
    assert [w.rows for w in rows.windows] == [600] * 4


def test_log_inputs_that_cannot_be_estimated(tmp_path: Path) -> None:
    logged(tmp_path, hours=1, per_hour=400, shift_last=False)
    with pytest.raises(InvalidInputError, match=r"Only 200 predictions of churn/1 have labels"):
        estimate_performance(tmp_path, "churn", settings=EstimationSettings())
    with pytest.raises(PredictionLogEmptyError, match="No predictions logged for 'ghost'"):
        estimate_performance(tmp_path, "ghost")
    with pytest.raises(PredictionLogEmptyError, match="No predictions of churn/9"):
        estimate_performance(tmp_path, "churn", version="churn/9")
    with pytest.raises(InvalidInputError, match=r"^The window '0s' is empty; use a positive"):
        estimate_performance(tmp_path, "churn", since=timedelta(0))
    with pytest.raises(InvalidInputError, match="Invalid version 'nine'"):
        estimate_performance(tmp_path, "churn", version="nine")
    with pytest.raises(InvalidInputError, match="no 'label' column"):
        estimate_performance(tmp_path, "churn", reference=pd.DataFrame({"y": [1]}))
    with pytest.raises(InvalidInputError, match="has 200 rows, fewer than two chunks of 150"):
        small = EstimationSettings(min_reference_rows=10)
        estimate_performance(tmp_path, "churn", chunk=150, settings=small)
    write_log(tmp_path, "plain", pd.DataFrame({"x": [1.0]}), [datetime.now(UTC)], model="m",
              version="1", predict=np.array([1]))  # fmt: skip
    with pytest.raises(InvalidInputError, match="no out_predict_proba column"):
        estimate_performance(tmp_path, "plain")


def test_labelled_rows_without_probabilities_do_not_count_toward_the_reference(
    tmp_path: Path,
) -> None:
    # the same model called through a door that asked for predict_proba and one that did not
    rng = np.random.default_rng(3)
    proba = rng.dirichlet([1.0, 1.0], 600)
    start = datetime.now(UTC) - timedelta(hours=1)
    times = [start + timedelta(seconds=i) for i in range(600)]
    frame = pd.DataFrame({"x": proba[:, 0]})
    first = write_log(tmp_path, "churn", frame, times, model="churn", version="1",
                      predict=proba.argmax(axis=1), proba=proba)  # fmt: skip
    second = write_log(tmp_path, "churn", frame, times, model="churn", version="1",
                       predict=proba.argmax(axis=1))  # fmt: skip
    labels = rng.integers(0, 2, 1200)
    ingest_labels(tmp_path, "churn", pd.DataFrame({"request_id": first + second, "label": labels}))
    settings = EstimationSettings(reference_rows=1200, min_reference_rows=1000)
    with pytest.raises(InvalidInputError) as caught:
        estimate_performance(tmp_path, "churn", settings=settings)
    assert str(caught.value).startswith(
        "Only 600 predictions of churn/1 have labels and class probabilities (600 more have "
        "labels only), fewer than min_reference_rows (1000)"
    )


def test_multiclass_text_labels_from_the_log(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    names = np.array(["cat", "dog", "eel"])
    proba = rng.dirichlet([0.8] * 3, 3000)
    truth = names[(rng.random(3000)[:, None] > proba.cumsum(axis=1)).sum(axis=1)]
    start = datetime.now(UTC) - timedelta(hours=2)
    times = [start + timedelta(seconds=i) for i in range(3000)]
    ids = write_log(tmp_path, "pets", pd.DataFrame({"x": proba[:, 0]}), times, model="pets",
                    version="4", predict=names[proba.argmax(axis=1)], proba=proba)  # fmt: skip
    ingest_labels(tmp_path, "pets", pd.DataFrame({"request_id": ids, "label": truth}))
    settings = EstimationSettings(reference_rows=1500, min_reference_rows=1000)
    found = estimate_performance(tmp_path, "pets", chunk=600, settings=settings)
    assert found.classes == ("cat", "dog", "eel") and len(found.calibrated) == 3
    assert [w.labelled for w in found.windows] == [600] * 5
    for window in found.windows:
        for metric in METRICS:
            got = window.metrics[metric]
            assert got.error is not None and got.sampling_error is not None
            assert abs(got.error) < 3 * got.sampling_error + 0.02, (metric, window.index)
