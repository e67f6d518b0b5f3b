"""PCA reconstruction error (NannyML's data reconstruction): a correlation that changes sign while
every column keeps its distribution is caught by it and by no per-column test; the encoding,
imputation and thresholds; and the bad inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelyard.errors import InvalidInputError
from modelyard.monitoring.drift import DriftDetector
from modelyard.monitoring.multivariate import ReconstructionDrift


def rows(n: int, *, rho: float, seed: int) -> pd.DataFrame:
    """a and b correlated by ``rho``; c independent; city categorical."""
    rng = np.random.default_rng(seed)
    ab = rng.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], size=n)
    return pd.DataFrame(
        {
            "a": ab[:, 0],
            "b": ab[:, 1],
            "c": rng.normal(size=n),
            "city": pd.Series(rng.choice(["x", "y", "z"], size=n, p=[0.5, 0.3, 0.2])),
        }
    ).astype({"city": "string"})


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return rows(5_000, rho=0.9, seed=0)


def test_a_correlation_flip_no_column_shows_raises_the_alert(reference: pd.DataFrame) -> None:
    flipped = rows(2_000, rho=-0.9, seed=2)
    columns = DriftDetector().fit(reference).compare(flipped).columns
    assert [c.name for c in columns if c.drifted] == []  # each column looks the same

    model = ReconstructionDrift().fit(reference)
    assert model.columns_ == ("a", "b", "c", "city")
    assert len(model.components_) == 2 and model.explained_ > 0.65
    assert 0 <= model.lower_ < model.reference_error_ < model.upper_

    calm = model.score(rows(2_000, rho=0.9, seed=1))
    assert calm.error is not None and not calm.alert
    assert model.lower_ <= calm.error <= model.upper_
    drifted = model.score(flipped)
    assert drifted.alert and drifted.error is not None and drifted.error > model.upper_
    assert drifted.rows == 2_000 and drifted.sampling_error == pytest.approx(
        model.errors(flipped).std(ddof=1) / np.sqrt(2_000)
    )


def test_the_thresholds_are_the_reference_chunks_mean_plus_minus_three_sigma(
    reference: pd.DataFrame,
) -> None:
    model = ReconstructionDrift(chunks=5, sigmas=2.0).fit(reference)
    errors = model.errors(reference)
    means = np.array([part.mean() for part in np.array_split(errors, 5)])
    assert model.reference_error_ == pytest.approx(means.mean())
    assert model.upper_ == pytest.approx(means.mean() + 2 * means.std())
    assert model.lower_ == pytest.approx(max(0.0, means.mean() - 2 * means.std()))
    # the same reference scores as it was fitted: the mean of its chunk means
    assert model.score(reference).error == pytest.approx(errors.mean())


def test_the_components_keep_the_share_of_variance_asked_for(reference: pd.DataFrame) -> None:
    assert len(ReconstructionDrift(variance=0.2).fit(reference).components_) == 1
    everything = ReconstructionDrift(variance=1.0).fit(reference)
    assert len(everything.components_) == 4
    assert everything.errors(reference) == pytest.approx(np.zeros(len(reference)), abs=1e-9)


def test_missing_values_are_imputed_and_unseen_categories_encode_as_zero(
    reference: pd.DataFrame,
) -> None:
    model = ReconstructionDrift().fit(reference)
    shares = reference["city"].value_counts(normalize=True)
    probe = pd.DataFrame(
        {
            "a": [np.nan, 0.0, 0.0],
            "b": [0.0, 0.0, 0.0],
            "c": [0.0, 0.0, 0.0],
            "city": pd.Series([None, "x", "atlantis"], dtype="string"),
        }
    )
    encoded = model._encode(probe)  # inputs x rows
    assert encoded[0, 0] == pytest.approx(reference["a"].mean())  # the reference mean
    assert encoded[3, 0] == pytest.approx(shares["x"])  # the most frequent city, x
    assert encoded[3, 1] == pytest.approx(shares["x"])
    assert encoded[3, 2] == 0.0  # never seen
    assert np.isfinite(model.errors(probe)).all()


def test_an_empty_window_has_no_error_and_no_alert(reference: pd.DataFrame) -> None:
    window = ReconstructionDrift().fit(reference).score(reference.iloc[:0])
    assert (window.rows, window.error, window.sampling_error, window.alert) == (
        0,
        None,
        None,
        False,
    )


def test_datetime_and_free_text_columns_are_left_out(reference: pd.DataFrame) -> None:
    rng = np.random.default_rng(3)
    words = np.array(["late", "delivery", "great", "service", "refund", "please", "now"])
    frame = reference.assign(
        when=pd.date_range("2026-01-01", periods=len(reference), freq="min"),
        note=[" ".join(rng.choice(words, size=6)) for _ in range(len(reference))],
    )
    assert ReconstructionDrift().fit(frame).columns_ == ("a", "b", "c", "city")


@pytest.mark.parametrize(
    ("frame", "params", "message"),
    [
        (
            pd.DataFrame({"a": np.arange(200.0), "when": pd.date_range("2026", periods=200)}),
            {},
            "needs at least 2 numeric or categorical input columns; the reference has 1 (a)",
        ),
        (
            pd.DataFrame({"a": np.arange(50.0), "b": np.arange(50.0)}),
            {},
            "the reference has 50 rows; reconstruction error needs at least 100 (10 chunks of 10)",
        ),
        (
            pd.DataFrame({"a": np.arange(200.0), "b": np.arange(200.0)}),
            {"variance": 1.5},
            "variance 1.5 is not a share of variance; use a number in (0, 1]",
        ),
        (
            pd.DataFrame({"a": np.arange(200.0), "b": np.arange(200.0)}),
            {"chunks": 1},
            "chunks 1 gives no spread for the thresholds; use 2 or more",
        ),
        (
            pd.DataFrame({"a": np.arange(200.0), "b": np.arange(200.0)}),
            {"sigmas": 0.0},
            "sigmas 0.0 is not positive",
        ),
    ],
)
def test_bad_references_are_one_line_errors(
    frame: pd.DataFrame, params: dict[str, float], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ReconstructionDrift(**params).fit(frame)  # type: ignore[arg-type]


def test_a_window_without_a_reference_column_is_an_error(reference: pd.DataFrame) -> None:
    model = ReconstructionDrift().fit(reference, description="churn/1")
    with pytest.raises(InvalidInputError) as raised:
        model.errors(reference.drop(columns=["b"]))
    assert str(raised.value) == (
        "The current data lacks the columns 'b' that churn/1 has; compare data of the same model."
    )
    assert "\n" not in str(raised.value)
