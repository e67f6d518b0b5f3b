from __future__ import annotations

import math

import msgspec
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.core.profile import (
    CategoryCount,
    ColumnProfile,
    Profile,
    compute_profile,
    count_in_bins,
    numeric_values,
    profile_from_json,
    profile_to_json,
)
from modelyard.errors import InvalidInputError


def column(profile: Profile, name: str) -> ColumnProfile:
    return next(c for c in profile.columns if c.name == name)


def test_numeric_column_statistics_and_bins() -> None:
    values = np.arange(1, 101, dtype=np.float64)
    frame = pd.DataFrame({"x": np.append(values, [np.nan, np.inf, -np.inf])})

    profile, _ = compute_profile(frame, bins=4)
    x = column(profile, "x")

    assert (x.kind, x.dtype, x.count, x.nulls, x.infinite) == ("numeric", "float64", 100, 1, 2)
    assert (x.min, x.max, x.mean) == (1.0, 100.0, 50.5)
    assert x.std == pytest.approx(float(np.std(values, ddof=1)))
    assert x.bin_edges == (1.0, 25.0, 50.0, 75.0, 100.0)
    assert x.bin_counts == (24, 25, 25, 26)
    assert x.top is None and x.n_unique is None


def test_bins_are_deduplicated_and_the_last_is_closed() -> None:
    frame = pd.DataFrame({"d": [0] * 50 + [1] * 30 + [2] * 20, "c": [7.0] * 100})

    profile, _ = compute_profile(frame, bins=10)

    d, c = column(profile, "d"), column(profile, "c")
    assert d.bin_edges == (0.0, 1.0, 2.0)
    assert d.bin_counts == (50, 50)  # the last bin holds the 1s and the 2s (closed on the right)
    assert (c.bin_edges, c.bin_counts, c.std) == ((7.0,), (100,), 0.0)


def test_small_and_empty_columns() -> None:
    frame = pd.DataFrame({"one": [3.0, np.nan], "none": [np.nan, np.nan]})

    profile, _ = compute_profile(frame)

    one, none = column(profile, "one"), column(profile, "none")
    assert (one.count, one.mean, one.std, one.bin_counts) == (1, 3.0, None, (1,))
    assert (none.count, none.nulls, none.min, none.mean, none.bin_edges) == (0, 2, None, None, None)


def test_categorical_top_values_ties_and_other() -> None:
    words = ["b"] * 3 + ["a"] * 3 + ["c"] * 2 + ["d"] + [None] * 2
    frame = pd.DataFrame({"s": words, "k": pd.Categorical(words, categories=list("dcbaz"))})

    profile, _ = compute_profile(frame, top_k=2)

    for name, dtype in (("s", "string"), ("k", "category")):
        col = column(profile, name)
        assert (col.kind, col.dtype) == ("categorical", dtype)
        assert col.top == (CategoryCount(value="a", count=3), CategoryCount(value="b", count=3))
        assert (col.count, col.nulls, col.other_count, col.n_unique) == (9, 2, 3, 4)
        assert col.bin_edges is None and col.mean is None


def test_top_values_keep_their_types_and_order_numbers_numerically() -> None:
    frame = pd.DataFrame({"k": pd.Categorical([10, 9, 10, 9, 2])})

    profile, _ = compute_profile(frame, top_k=5)

    assert column(profile, "k").top == (
        CategoryCount(value=9, count=2),
        CategoryCount(value=10, count=2),
        CategoryCount(value=2, count=1),
    )


def test_bool_and_datetime_columns() -> None:
    frame = pd.DataFrame(
        {
            "b": pd.array([True, True, False, None], dtype="boolean"),
            "t": pd.to_datetime(["1970-01-01", "1970-01-02", None, "1970-01-03"]),
        }
    )

    profile, _ = compute_profile(frame)

    b, t = column(profile, "b"), column(profile, "t")
    assert (b.kind, b.count, b.nulls, b.mean, b.n_unique) == ("bool", 3, 1, 2 / 3, 2)
    assert b.top == (CategoryCount(value=True, count=2), CategoryCount(value=False, count=1))
    assert (t.kind, t.count, t.nulls) == ("datetime", 3, 1)
    assert (t.min, t.max, t.mean) == (0.0, 172_800.0, 86_400.0)


def test_time_zone_aware_datetimes_are_measured_in_utc() -> None:
    oslo = pd.Series(pd.to_datetime(["1970-01-01T01:00:00"]).tz_localize("Europe/Oslo"))

    assert numeric_values(oslo).tolist() == [0.0]


def test_arrays_get_input_names_and_a_seeded_sample() -> None:
    X = np.arange(30, dtype=np.float64).reshape(10, 3)

    profile, sample = compute_profile(X, sample_rows=4, seed=1)
    again, same = compute_profile(X, sample_rows=4, seed=1)
    _, other = compute_profile(X, sample_rows=4, seed=2)

    assert [c.name for c in profile.columns] == ["input_0", "input_1", "input_2"]
    assert (profile.rows, profile.sample_rows, profile.seed, profile.bins) == (10, 4, 1, 20)
    assert list(sample.columns) == ["input_0", "input_1", "input_2"]
    assert sample.index.tolist() == [0, 1, 2, 3]
    assert sample["input_0"].is_monotonic_increasing  # rows keep their original order
    assert set(sample["input_0"]) <= set(X[:, 0])
    pd.testing.assert_frame_equal(sample, same)
    assert profile == again
    assert not sample.equals(other)


def test_a_small_frame_is_sampled_whole() -> None:
    frame = pd.DataFrame({"a": [1, 2, 3]}, index=[10, 20, 30])

    profile, sample = compute_profile(frame, sample_rows=10)

    assert profile.sample_rows == 3
    assert sample["a"].tolist() == [1, 2, 3]
    assert sample.index.tolist() == [0, 1, 2]


def test_profiles_round_trip_through_json_without_nan_or_numpy_types() -> None:
    frame = pd.DataFrame(
        {
            "x": [1.0, np.nan, np.inf, 1e308, 1.7e308],
            "i": np.array([1, 2, 3, 4, 5], dtype=np.int32),
            "s": ["a", "b", None, "a", "a"],
            "k": pd.Categorical([1.5, 2.5, 1.5, None, 2.5]),
            "b": [True, False, True, True, False],
        }
    )

    profile, _ = compute_profile(frame)
    data = profile_to_json(profile)

    assert b"NaN" not in data and b"Infinity" not in data and b"null" in data
    assert profile_from_json(data) == profile
    assert column(profile, "x").mean is None  # the sum overflowed: no statistic, not inf
    for col in profile.columns:
        for value in msgspec.structs.astuple(col):
            assert not isinstance(value, np.generic)


def test_profile_from_json_rejects_bad_bytes() -> None:
    with pytest.raises(InvalidInputError, match=r"^The profile JSON is invalid \(.*\); recompute"):
        profile_from_json(b'{"rows": "many"}')


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bins": 0}, r"bins=0.*use sample_rows >= 0, bins >= 1 and top_k >= 0"),
        ({"sample_rows": -1}, r"sample_rows=-1"),
        ({"top_k": -1}, r"top_k=-1"),
    ],
)
def test_bad_profile_arguments(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        compute_profile(pd.DataFrame({"a": [1]}), **kwargs)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.zeros(3), r"Cannot profile a 1-D array of shape \(3,\); pass a 2-D array"),
        ([[1, 2]], r"Cannot profile a list; pass a pandas DataFrame or a 2-D numpy array"),
        (pd.DataFrame([[1, 2]], columns=["a", "a"]), r"duplicate column names \['a'\]"),
    ],
)
def test_unusable_profile_inputs(data: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        compute_profile(data)


def test_count_in_bins_clips_to_the_outer_bins_and_skips_non_finite() -> None:
    values = np.array([-5.0, 0.0, 0.5, 1.0, 2.0, 9.0, np.nan, np.inf])

    assert count_in_bins(values, (0.0, 1.0, 2.0)).tolist() == [3, 3]
    assert count_in_bins(values, (3.0,)).tolist() == [6]


finite_floats = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False)
values_lists = st.lists(finite_floats | st.just(math.nan), min_size=1, max_size=200)


@settings(max_examples=150, deadline=None)
@given(values=values_lists, bins=st.integers(min_value=1, max_value=12))
def test_bin_counts_sum_to_count_and_edges_increase(values: list[float], bins: int) -> None:
    frame = pd.DataFrame({"x": values})

    profile, _ = compute_profile(frame, bins=bins)
    x = profile.columns[0]

    finite = [v for v in values if not math.isnan(v)]
    assert x.count == len(finite)
    if not finite:
        return
    assert x.bin_edges is not None and x.bin_counts is not None
    edges = np.array(x.bin_edges)
    assert len(edges) <= bins + 1
    assert np.all(np.diff(edges) > 0)
    assert (edges[0], edges[-1]) == (min(finite), max(finite))
    assert sum(x.bin_counts) == x.count
    assert all(c > 0 for c in x.bin_counts)  # every edge is a value: no empty reference bin
    assert len(x.bin_counts) == max(len(edges) - 1, 1)
    assert count_in_bins(np.array(values), x.bin_edges).tolist() == list(x.bin_counts)
    assert profile_from_json(profile_to_json(profile)) == profile


@settings(max_examples=60, deadline=None)
@given(
    words=st.lists(st.sampled_from(["a", "b", "c", "d", "e"]) | st.none(), max_size=60),
    top_k=st.integers(min_value=0, max_value=6),
)
def test_top_counts_and_other_add_up(words: list[str | None], top_k: int) -> None:
    profile, _ = compute_profile(pd.DataFrame({"w": pd.Series(words, dtype="str")}), top_k=top_k)
    w = profile.columns[0]

    present = [x for x in words if x is not None]
    assert w.top is not None and w.other_count is not None
    assert w.count == len(present)
    assert sum(t.count for t in w.top) + w.other_count == w.count
    assert len(w.top) == min(top_k, len(set(present)))
    expected = sorted((-present.count(v), v) for v in set(present))[:top_k]
    assert [(t.value, t.count) for t in w.top] == [(v, -c) for c, v in expected]
