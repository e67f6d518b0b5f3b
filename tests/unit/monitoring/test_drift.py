"""DriftDetector: defaults, overrides, mergeable window profiles and every bad input."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon

from modelyard.core.profile import compute_profile, count_in_bins
from modelyard.errors import InvalidInputError
from modelyard.monitoring.drift import (
    ColumnRule,
    DriftDetector,
    WindowProfile,
    compare,
    merge_profiles,
    severity,
)


def frame(rows: int, seed: int, *, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    levels = np.array(["red", "green", "blue", "grey"])
    return pd.DataFrame(
        {
            "a": rng.normal(size=rows) + shift,
            "b": rng.lognormal(size=rows),
            "n": rng.poisson(3, size=rows),
            "colour": pd.Series(
                levels[rng.choice(4, size=rows, p=[0.4, 0.3, 0.2, 0.1])], dtype="string"
            ),
            "flag": rng.random(rows) < 0.3,
        }
    )


def drifted(result: object) -> list[str]:
    return [c.name for c in result.columns if c.drifted]  # type: ignore[attr-defined]


def test_exact_statistics_flag_the_shifted_column_only() -> None:
    result = compare(frame(20_000, 1), frame(20_000, 2, shift=0.4))
    assert drifted(result) == ["a"]
    methods = {c.name: c.method for c in result.columns}
    assert methods == {
        "a": "wasserstein", "b": "wasserstein", "n": "wasserstein", "colour": "js", "flag": "js",
    }  # fmt: skip
    assert result.share == pytest.approx(1 / 5)
    assert not result.dataset_drift
    a = result.columns[0]
    reference, current = frame(20_000, 1)["a"], frame(20_000, 2, shift=0.4)["a"]
    expected = scipy.stats.wasserstein_distance(reference, current) / np.std(reference)
    assert a.score == pytest.approx(expected, rel=1e-9)


def test_small_current_data_uses_tests_with_p_values() -> None:
    result = compare(frame(5_000, 1), frame(400, 2, shift=1.0))
    methods = {c.name: c.method for c in result.columns}
    assert methods == {"a": "ks", "b": "ks", "n": "ks", "colour": "chi2", "flag": "chi2"}
    a = result.columns[0]
    expected = scipy.stats.ks_2samp(frame(5_000, 1)["a"], frame(400, 2, shift=1.0)["a"])
    assert a.score == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-12)
    assert a.statistic == pytest.approx(expected.statistic, rel=1e-9)
    assert drifted(result) == ["a"]


def test_a_stored_profile_compares_on_its_bins() -> None:
    reference = frame(50_000, 1)
    profile, _ = compute_profile(reference, sample_rows=0)
    current = frame(30_000, 2, shift=0.5)
    result = compare(profile, current)
    assert drifted(result) == ["a"]
    a = next(c for c in result.columns if c.name == "a")
    assert a.method == "psi"
    column = profile.columns[0]
    p = np.asarray(column.bin_counts, dtype=float) / column.count
    counts = count_in_bins(current["a"].to_numpy(), column.bin_edges or ())
    q = counts / counts.sum()
    p, q = np.clip(p, 1e-4, None), np.clip(q, 1e-4, None)
    assert a.score == pytest.approx(float(np.sum((q - p) * np.log(q / p))), rel=1e-9)
    colour = next(c for c in result.columns if c.name == "colour")
    ref_counts = [c.count for c in profile.columns[3].top or ()]
    cur_counts = current["colour"].value_counts()
    values = [str(c.value) for c in profile.columns[3].top or ()]
    expected = jensenshannon(ref_counts, [cur_counts.get(v, 0) for v in values], base=2)
    assert colour.score == pytest.approx(float(expected), rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(split=st.integers(min_value=0, max_value=2_000), seed=st.integers(0, 1_000))
def test_window_profiles_add_up_to_the_profile_of_the_whole(split: int, seed: int) -> None:
    detector = DriftDetector().fit(frame(3_000, 1))
    current = frame(2_000, seed, shift=0.3)
    whole = detector.profile(current)
    parts = merge_profiles(
        [detector.profile(current.iloc[:split]), detector.profile(current.iloc[split:])]
    )
    assert parts == whole
    assert detector.compare(parts) == detector.compare(whole)


def test_window_profile_round_trips_through_json() -> None:
    detector = DriftDetector().fit(frame(2_000, 1))
    profile = detector.profile(frame(1_500, 3))
    assert WindowProfile.from_json(profile.to_json()) == profile


def test_overrides_per_column_and_per_method() -> None:
    result = compare(
        frame(5_000, 1),
        frame(5_000, 2, shift=0.05),
        columns={"a": ColumnRule(method="psi", threshold=0.001), "b": ColumnRule(threshold=0.0)},
        thresholds={"js": 0.5},
    )
    by_name = {c.name: c for c in result.columns}
    assert by_name["a"].method == "psi" and by_name["a"].threshold == 0.001
    assert by_name["a"].drifted
    assert by_name["b"].method == "wasserstein" and by_name["b"].threshold == 0.0
    assert by_name["colour"].threshold == 0.5


def test_dataset_drift_uses_the_share_threshold() -> None:
    result = compare(frame(5_000, 1), frame(5_000, 2, shift=0.5), share_threshold=0.2)
    assert result.drifted == 1 and result.dataset_drift


def test_a_column_that_lost_every_value_drifted() -> None:
    current = frame(2_000, 2)
    current["a"] = np.nan
    column = compare(frame(2_000, 1), current).columns[0]
    # no values: nothing was compared, the column is all null, and that is drift
    assert column.drifted and column.current_rows == 0 and not column.compared
    assert (column.reference_null_share, column.current_null_share) == (0.0, 1.0)
    assert column.null_drifted and column.null_p_value < 1e-12
    assert (column.method, column.score) == ("ks", 0.0)
    current["b"] = np.nan
    lost = compare(frame(2_000, 1), current, columns={"b": ColumnRule(method="wasserstein")})
    assert lost.columns[1].drifted and math.isinf(lost.columns[1].score)


def with_nulls(data: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """``data`` with exactly ``share`` of ``a`` and of ``colour`` set to null, at random rows."""
    data = data.copy()
    rng = np.random.default_rng(seed)
    nulls = round(share * len(data))
    data.loc[rng.permutation(len(data))[:nulls], "a"] = np.nan
    data.loc[rng.permutation(len(data))[:nulls], "colour"] = pd.NA
    return data


@pytest.mark.parametrize("reference_of", ["raw", "profile", "window"])
def test_a_growing_share_of_nulls_is_drift_of_that_column(reference_of: str) -> None:
    reference = with_nulls(frame(4_000, 1), 0.1, seed=5)
    current = with_nulls(frame(2_000, 2), 0.7, seed=6)  # present values: the same distribution
    detector = DriftDetector().fit(
        compute_profile(reference, sample_rows=0)[0] if reference_of != "raw" else reference
    )
    result = detector.compare(detector.profile(current) if reference_of == "window" else current)
    by_name = {c.name: c for c in result.columns}
    for name in ("a", "colour"):
        column = by_name[name]
        assert column.drifted and column.null_drifted and column.compared, name
        assert column.null_p_value < 1e-12
        assert (column.reference_null_share, column.current_null_share) == (0.1, 0.7)
        # the values still present are compared as before (600 rows: a test), and did not drift
        assert column.method in ("ks", "chi2") and column.score >= column.threshold
    for name in ("b", "n", "flag"):
        column = by_name[name]
        assert (column.reference_null_share, column.current_null_share) == (0.0, 0.0)
        assert column.null_p_value == 1.0 and not column.null_drifted
    assert result.drifted == 2
    unchecked = DriftDetector(nulls=False).fit(reference).compare(current).columns[0]
    assert unchecked.current_null_share == 0.7 and not unchecked.null_drifted


def test_a_small_or_noisy_move_of_the_null_share_is_not_drift() -> None:
    reference = with_nulls(frame(4_000, 1), 0.1, seed=5)
    detector = DriftDetector().fit(reference)
    for share in (0.1, 0.115):  # noise, and 1.5 points on 2,000 rows (not significant)
        a = detector.compare(with_nulls(frame(2_000, 2), share, seed=6)).columns[0]
        assert not a.null_drifted and not a.drifted, share
    # significant on 100,000 rows a side, yet under one percentage point: not drift either
    detector = DriftDetector().fit(with_nulls(frame(100_000, 1), 0.1, seed=5))
    a = detector.compare(with_nulls(frame(100_000, 2), 0.108, seed=6)).columns[0]
    assert a.null_p_value < 0.05 and not a.null_drifted and not a.drifted


def test_severity_orders_across_methods() -> None:
    result = compare(frame(5_000, 1), frame(600, 2, shift=1.0))
    ordered = sorted(result.columns, key=lambda c: (c.drifted, severity(c)), reverse=True)
    assert ordered[0].name == "a" and severity(ordered[0]) > 1


def test_histograms_cover_bins_and_categories() -> None:
    result = compare(frame(5_000, 1), frame(5_000, 2))
    a = result.columns[0].histogram
    assert a is not None and len(a.labels) == 20 and sum(a.reference) == pytest.approx(1)
    assert a.labels[0].startswith("[") and a.labels[-1].endswith("]")
    colour = result.columns[3].histogram
    assert colour is not None and colour.labels == ("red", "green", "blue", "grey")


# --- bad input ---------------------------------------------------------------------------------


def test_schema_differences_are_named() -> None:
    current = frame(100, 2).drop(columns=["b"]).assign(extra=1.0)
    with pytest.raises(InvalidInputError, match=r"lacks 'b' and has 'extra' the reference does"):
        compare(frame(100, 1), current)


def test_a_column_of_another_type_is_named() -> None:
    current = frame(100, 2).assign(a="text")
    current["a"] = current["a"].astype("string")
    with pytest.raises(InvalidInputError, match=r"Column 'a' is numeric in the reference but "):
        compare(frame(100, 1), current)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"share_threshold": 0.0}, r"share threshold 0.0 is outside \(0, 1\]"),
        ({"thresholds": {"ks": 2.0}}, r"default threshold of 'ks' is 2.0"),
        ({"thresholds": {"nope": 0.1}}, r"names drift method 'nope'"),
        ({"columns": {"a": ColumnRule(method="nope")}}, r"Column 'a' asks for drift method"),  # type: ignore[arg-type]
        (
            {"columns": {"zz": ColumnRule(threshold=0.1)}},
            r"columns the reference does not have: 'zz'",
        ),
        ({"columns": {"colour": ColumnRule(method="wasserstein")}}, r"'colour' is categorical"),
    ],
)
def test_invalid_rules_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        compare(frame(2_000, 1), frame(2_000, 2), **kwargs)  # type: ignore[arg-type]


def test_ks_needs_raw_rows() -> None:
    profile, _ = compute_profile(frame(2_000, 1), sample_rows=0)
    with pytest.raises(InvalidInputError, match="'ks', which needs raw rows on both sides"):
        compare(profile, frame(500, 2), columns={"a": ColumnRule(method="ks")})


def test_empty_data_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="reference 'reference' has no rows"):
        compare(frame(0, 1), frame(10, 2))
    with pytest.raises(InvalidInputError, match="current data 'current' has no rows"):
        compare(frame(10, 1), frame(0, 2))


def test_a_window_profile_of_another_reference_is_rejected() -> None:
    other = DriftDetector().fit(frame(1_000, 5)).profile(frame(100, 2))
    with pytest.raises(InvalidInputError, match="counted on another reference's bins"):
        DriftDetector().fit(frame(1_000, 1)).compare(other)
    with pytest.raises(InvalidInputError, match="different references"):
        merge_profiles([other, DriftDetector().fit(frame(1_000, 1)).profile(frame(100, 2))])


@given(counts=st.lists(st.integers(min_value=0, max_value=2**40), min_size=1, max_size=40))
def test_histogram_shares_are_each_count_over_the_total(counts: list[int]) -> None:
    from modelyard.monitoring.drift import _shares

    total = sum(counts)
    expected = tuple(float(c) / total for c in counts) if total else (0.0,) * len(counts)
    assert _shares(np.array(counts, dtype=np.int64)) == expected
