"""Embedding drift: the MMD permutation test finds shifted embeddings, keeps quiet on unchanged
ones at about its nominal rate, and names every bad input."""

from __future__ import annotations

import numpy as np
import pytest

from modelyard.errors import InvalidInputError
from modelyard.monitoring.drift import ranked, severity
from modelyard.monitoring.embeddings import EmbeddingDetector, mmd_test, subsample


def gaussian(rows: int, seed: int, *, dim: int = 16, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(rows, dim))
    points[:, 0] += shift
    return points


def test_shifted_embeddings_drift_and_unchanged_ones_do_not() -> None:
    detector = EmbeddingDetector().fit(gaussian(3_000, 1), name="predict")
    same = detector.compare(gaussian(2_000, 2))
    assert (same.name, same.kind, same.method, same.threshold) == (
        "predict", "embedding", "mmd", 0.05,
    )  # fmt: skip
    assert not same.drifted and same.score >= 0.05
    assert same.reference_rows == 3_000 and same.current_rows == 2_000
    shifted = detector.compare(gaussian(2_000, 3, shift=0.5))
    assert shifted.drifted and shifted.score == pytest.approx(1 / 301)
    assert shifted.statistic is not None and same.statistic is not None
    assert shifted.statistic > 5 * same.statistic
    # the other way round: a shifted reference, unshifted traffic
    back = EmbeddingDetector().fit(gaussian(1_000, 4, shift=0.5)).compare(gaussian(1_000, 5))
    assert back.drifted
    assert ranked([same, shifted])[0] is shifted and severity(shifted) > 1 > severity(same)


def test_a_change_of_spread_alone_drifts() -> None:
    reference = gaussian(800, 1)
    wider = gaussian(800, 2) * 1.3
    assert EmbeddingDetector().fit(reference).compare(wider).drifted


def test_false_alarms_stay_near_the_threshold() -> None:
    alarms = 0
    for seed in range(40):
        statistic, p_value = mmd_test(
            gaussian(150, 2 * seed), gaussian(150, 2 * seed + 1), permutations=99, seed=seed
        )
        assert statistic >= 0
        alarms += p_value < 0.05
    assert alarms <= 6  # 2 expected; 6 or more has probability 1.4% under the null


def test_results_are_seeded_and_the_sides_capped() -> None:
    reference, current = gaussian(5_000, 1), gaussian(4_000, 2, shift=0.1)
    first = EmbeddingDetector(max_rows=500).fit(reference).compare(current)
    again = EmbeddingDetector(max_rows=500).fit(reference).compare(current)
    assert first == again
    assert first.current_rows == 4_000
    assert len(EmbeddingDetector(max_rows=500).fit(reference).reference_) == 500
    kept = subsample(np.arange(10.0)[:, None], 4, 0)[:, 0]
    assert len(kept) == 4 and list(kept) == sorted(kept)
    # the row count of a whole window, when the caller passes a sample of it
    assert EmbeddingDetector().fit(reference).compare(current[:50], rows=90_000).current_rows == (
        90_000
    )


def test_identical_points_do_not_drift() -> None:
    same = np.ones((50, 4))
    assert mmd_test(same, same.copy()) == (0.0, 1.0)


def test_a_custom_threshold_is_used() -> None:
    result = (
        EmbeddingDetector(threshold=0.001)
        .fit(gaussian(500, 1))
        .compare(gaussian(500, 3, shift=0.5))
    )
    assert result.threshold == 0.001 and not result.drifted  # 1/301 is the smallest p-value


def test_bad_embeddings_are_named() -> None:
    detector = EmbeddingDetector().fit(gaussian(100, 1, dim=8), name="predict")
    with pytest.raises(InvalidInputError, match=r"'predict' has 4 dimensions in the log but 8"):
        detector.compare(gaussian(100, 2, dim=4))
    with pytest.raises(InvalidInputError, match=r"current embeddings of 'predict' hold NaN"):
        detector.compare(np.full((3, 8), np.nan))
    with pytest.raises(InvalidInputError, match=r"reference embeddings of 'vec' have shape \(5,\)"):
        EmbeddingDetector().fit(np.zeros(5), name="vec")
    with pytest.raises(InvalidInputError, match=r"shape \(1, 8\); pass at least 2 rows"):
        detector.compare(np.zeros((1, 8)))
    with pytest.raises(InvalidInputError, match=r"mmd threshold 5 is not a p-value"):
        EmbeddingDetector(threshold=5).fit(gaussian(10, 1))
    with pytest.raises(InvalidInputError, match=r"max_rows=1"):
        EmbeddingDetector(max_rows=1).fit(gaussian(10, 1))
