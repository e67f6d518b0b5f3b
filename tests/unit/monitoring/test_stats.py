"""Drift statistics against scipy and their textbook definitions, on generated samples."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial import distance

from modelyard.monitoring.stats import (
    binned_wasserstein,
    chi2_two_sample,
    js_distance,
    ks_sorted,
    null_share_test,
    psi,
    wasserstein_normalized,
    wasserstein_sorted,
)

Floats = npt.NDArray[np.float64]
KINDS = ("normal", "shifted", "integers", "few_values", "wide")
examples = settings(max_examples=60, deadline=None)


def close(a: float, b: float, tol: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def sample(rng: np.random.Generator, kind: str, size: int) -> Floats:
    """Sorted finite values: continuous, shifted, integer-valued with many ties, or few values."""
    if kind == "normal":
        values = rng.normal(size=size)
    elif kind == "shifted":
        values = rng.normal(0.3, 1.5, size=size)
    elif kind == "integers":
        values = rng.integers(-5, 6, size=size).astype(np.float64)
    elif kind == "few_values":
        values = rng.choice([-1.5, 0.0, 2.25], size=size)
    else:
        values = rng.lognormal(3.0, 2.0, size=size) - 1e3
    return np.sort(values)


@st.composite
def sample_pairs(draw: st.DrawFn, min_size: int = 1, max_size: int = 3000) -> tuple[Floats, Floats]:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kinds = st.sampled_from(KINDS)
    sizes = st.integers(min_size, max_size)
    return sample(rng, draw(kinds), draw(sizes)), sample(rng, draw(kinds), draw(sizes))


small_values = st.lists(
    st.one_of(
        st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
        st.sampled_from([-2.0, 0.0, 0.5, 3.0]),  # ties
    ),
    min_size=1,
    max_size=40,
).map(lambda values: np.sort(np.array(values, dtype=np.float64)))

count_lists = (
    st.integers(1, 30)
    .flatmap(
        lambda k: st.tuples(
            st.lists(st.integers(0, 1000), min_size=k, max_size=k),
            st.lists(st.integers(0, 1000), min_size=k, max_size=k),
        )
    )
    .filter(lambda pair: sum(pair[0]) > 0 and sum(pair[1]) > 0)
)


def scipy_ks(reference: Floats, current: Floats) -> tuple[float, float]:
    """scipy's answer; it warns where its exact sum fails and it falls back to asymptotics."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "ks_2samp: Exact calculation unsuccessful")
        result = stats.ks_2samp(reference, current)
    return float(result.statistic), float(result.pvalue)


def ecdf_gap(a: Floats, b: Floats) -> float:
    """sup |F_a - F_b| by brute force over every value."""
    points = np.concatenate((a, b))
    return max(abs(np.mean(a <= x) - np.mean(b <= x)) for x in points)


# --- Kolmogorov-Smirnov --------------------------------------------------------------------------


@examples
@given(sample_pairs())
def test_ks_matches_scipy_exact_path(pair: tuple[Floats, Floats]) -> None:
    reference, current = pair
    statistic, pvalue = ks_sorted(reference, current)
    expected_statistic, expected_pvalue = scipy_ks(reference, current)
    assert close(statistic, expected_statistic)
    assert close(pvalue, expected_pvalue)


@examples
@given(small_values, small_values)
def test_ks_statistic_is_the_largest_ecdf_gap(reference: Floats, current: Floats) -> None:
    statistic, pvalue = ks_sorted(reference, current)
    # scipy's exact path rounds the statistic to a multiple of 1 / lcm(n, m)
    assert close(statistic, ecdf_gap(reference, current))
    assert 0.0 <= pvalue <= 1.0


@settings(max_examples=30, deadline=None)
@given(sample_pairs(min_size=1, max_size=20_000), st.integers(10_001, 20_000))
def test_ks_matches_scipy_asymptotic_path(pair: tuple[Floats, Floats], big: int) -> None:
    reference, current = pair
    if max(reference.size, current.size) <= 10_000:  # force one side past scipy's exact limit
        rng = np.random.default_rng(big)
        current = np.sort(np.concatenate((current, rng.choice(current, big - current.size))))
    statistic, pvalue = ks_sorted(reference, current)
    expected_statistic, expected_pvalue = scipy_ks(reference, current)
    assert close(statistic, expected_statistic)
    assert close(pvalue, expected_pvalue)
    assert close(statistic, scipy_ks(current, reference)[0])


@pytest.mark.parametrize("kind", ["normal", "integers"])
def test_ks_large_samples_match_scipy(kind: str) -> None:
    rng = np.random.default_rng(7)
    reference, current = sample(rng, kind, 200_000), sample(rng, kind, 150_000)
    statistic, pvalue = ks_sorted(reference, current)
    expected_statistic, expected_pvalue = scipy_ks(reference, current)
    assert 0.01 < pvalue < 0.99  # a p-value that is neither 0 nor 1 can really disagree
    assert close(statistic, expected_statistic)
    assert close(pvalue, expected_pvalue)


def test_ks_large_shifted_samples_match_scipy() -> None:
    rng = np.random.default_rng(8)
    reference = np.sort(rng.normal(size=200_000))
    current = np.sort(rng.normal(0.01, size=150_000))
    statistic, pvalue = ks_sorted(reference, current)
    expected_statistic, expected_pvalue = scipy_ks(reference, current)
    assert pvalue < 0.05
    assert close(statistic, expected_statistic)
    assert close(pvalue, expected_pvalue)


@pytest.mark.parametrize("size", [1, 5, 3000, 20_000])
def test_ks_identical_samples(size: int) -> None:
    values = sample(np.random.default_rng(size), "integers", size)
    assert ks_sorted(values, values.copy()) == (0.0, 1.0)


@pytest.mark.parametrize("size", [5, 7, 14, 37])
def test_ks_where_scipy_falls_back_from_its_exact_sum(size: int) -> None:
    # equal sizes and D = 1/n: scipy's exact sum rounds just above 1 and it warns and returns the
    # asymptotic p-value; ks_sorted returns the same without the warning (warnings are errors here)
    reference, current = np.zeros(size), np.zeros(size)
    current[-1] = 1.0
    with pytest.warns(RuntimeWarning, match="Exact calculation unsuccessful"):
        expected = stats.ks_2samp(reference, current)
    assert ks_sorted(reference, current) == (float(expected.statistic), float(expected.pvalue))


def test_ks_disjoint_samples() -> None:
    statistic, pvalue = ks_sorted(np.arange(50.0), np.arange(100.0, 160.0))
    assert statistic == 1.0
    assert pvalue < 1e-20


# --- Wasserstein ---------------------------------------------------------------------------------


@examples
@given(sample_pairs())
def test_wasserstein_matches_scipy(pair: tuple[Floats, Floats]) -> None:
    reference, current = pair
    assert close(wasserstein_sorted(reference, current), stats.wasserstein_distance(*pair))


@examples
@given(small_values, small_values)
def test_wasserstein_matches_scipy_on_small_samples(reference: Floats, current: Floats) -> None:
    got = wasserstein_sorted(reference, current)
    assert close(got, stats.wasserstein_distance(reference, current))
    assert close(got, wasserstein_sorted(current, reference))


def test_wasserstein_large_samples_match_scipy() -> None:
    rng = np.random.default_rng(9)
    reference, current = sample(rng, "wide", 200_000), sample(rng, "integers", 150_000)
    assert close(
        wasserstein_sorted(reference, current), stats.wasserstein_distance(reference, current)
    )


def test_wasserstein_of_identical_samples_is_zero() -> None:
    values = sample(np.random.default_rng(1), "few_values", 500)
    assert wasserstein_sorted(values, values.copy()) == 0.0


def test_wasserstein_is_the_shift_between_translated_samples() -> None:
    values = sample(np.random.default_rng(2), "normal", 1000)
    assert close(wasserstein_sorted(values, values + 0.25), 0.25)


@examples
@given(sample_pairs())
def test_wasserstein_normalized_divides_by_the_population_std(
    pair: tuple[Floats, Floats],
) -> None:
    reference, current = pair
    std = max(float(np.std(reference)), 0.001)  # Evidently's floor on the scale
    got = wasserstein_normalized(reference, current)
    assert math.isfinite(got)
    assert close(got, stats.wasserstein_distance(reference, current) / std)


def test_wasserstein_normalized_uses_the_given_std() -> None:
    reference, current = np.array([0.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0])
    assert close(wasserstein_normalized(reference, current, reference_std=4.0), 0.25)


def test_wasserstein_normalized_with_a_constant_reference() -> None:
    constant = np.full(10, 3.0)
    assert wasserstein_normalized(constant, np.full(4, 3.0)) == 0.0
    # the scale is floored at 0.001, as Evidently's: a finite score that drifts at 0.1 when the
    # current values stray from the constant by 0.0001 on average
    assert close(wasserstein_normalized(constant, np.array([3.0, 4.0])), 0.5 / 0.001)
    assert close(wasserstein_normalized(np.array([0.0, 1.0]), constant, reference_std=0.0), 2500.0)
    assert close(wasserstein_normalized(constant, np.full(4, 3.00005)), 0.05)
    assert close(wasserstein_normalized(constant * 0, np.array([0.0, 0.0004])), 0.2)


# --- PSI -----------------------------------------------------------------------------------------


def textbook_psi(reference: list[int], current: list[int], eps: float = 1e-4) -> float:
    p = [max(c / sum(reference), eps) for c in reference]
    q = [max(c / sum(current), eps) for c in current]
    return sum((b - a) * math.log(b / a) for a, b in zip(p, q, strict=True))


@examples
@given(count_lists)
def test_psi_matches_its_definition(pair: tuple[list[int], list[int]]) -> None:
    reference, current = pair
    got = psi(reference, current)
    assert close(got, textbook_psi(reference, current))
    assert got >= 0.0


def test_psi_of_identical_shares_is_zero() -> None:
    assert psi([10, 20, 0, 5], [20, 40, 0, 10]) == 0.0


def test_psi_clips_an_empty_reference_bin_at_eps() -> None:
    expected = (0.5 - 1.0) * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert close(psi([10, 0], [5, 5]), expected)
    expected = (0.5 - 1.0) * math.log(0.5) + (0.5 - 1e-3) * math.log(0.5 / 1e-3)
    assert close(psi(np.array([10, 0]), np.array([5.0, 5.0]), eps=1e-3), expected)


# --- Jensen-Shannon ------------------------------------------------------------------------------


@examples
@given(count_lists)
def test_js_matches_scipy(pair: tuple[list[int], list[int]]) -> None:
    reference, current = pair
    p = np.array(reference) / sum(reference)
    q = np.array(current) / sum(current)
    with np.errstate(invalid="ignore"):  # scipy returns NaN for a divergence rounded below 0
        expected = float(distance.jensenshannon(p, q, base=2))
    got = js_distance(reference, current)
    assert close(got, 0.0 if math.isnan(expected) else expected)
    assert 0.0 <= got <= 1.0


def test_js_of_identical_and_disjoint_histograms() -> None:
    assert js_distance([3, 0, 7], [6, 0, 14]) == 0.0
    assert close(js_distance([5, 0], [0, 8]), 1.0)


# --- chi-square ----------------------------------------------------------------------------------


@examples
@given(count_lists)
def test_chi2_matches_scipy(pair: tuple[list[int], list[int]]) -> None:
    reference, current = pair
    statistic, pvalue = chi2_two_sample(reference, current)
    table = np.array([reference, current])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        assert (statistic, pvalue) == (0.0, 1.0)
        return
    expected = stats.chi2_contingency(table, correction=False)
    assert close(statistic, float(expected.statistic))
    assert close(pvalue, float(expected.pvalue))


def test_chi2_of_disjoint_categories() -> None:
    statistic, pvalue = chi2_two_sample([10, 0, 0], [0, 0, 10])
    assert close(statistic, 20.0)
    assert close(pvalue, float(stats.chi2.sf(20.0, 1)))


def test_chi2_of_identical_shares_and_of_one_category() -> None:
    assert chi2_two_sample([4, 0, 6], [8, 0, 12]) == (0.0, 1.0)
    assert chi2_two_sample([4, 0], [9, 0]) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("reference", "current"),
    [((400, 4_000), (1_400, 2_000)), ((7, 100), (3, 90)), ((0, 50), (5, 9))],
)
def test_null_share_test_is_the_two_proportion_z_test(
    reference: tuple[int, int], current: tuple[int, int]
) -> None:
    (n1_null, n1), (n2_null, n2) = reference, current
    statistic, p_value = null_share_test(n1_null, n1, n2_null, n2)
    pooled = (n1_null + n2_null) / (n1 + n2)
    z = (n1_null / n1 - n2_null / n2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    assert close(statistic, z**2) and close(p_value, 2 * stats.norm.sf(abs(z)))


def test_null_share_test_without_rows_or_without_a_difference_is_no_evidence() -> None:
    assert null_share_test(0, 100, 0, 50) == (0.0, 1.0)  # no nulls anywhere
    assert null_share_test(100, 100, 50, 50) == (0.0, 1.0)  # nothing but nulls
    assert null_share_test(10, 100, 0, 0) == (0.0, 1.0)  # no current rows
    with pytest.raises(ValueError, match="current has 5 nulls in 3 rows"):
        null_share_test(1, 10, 5, 3)


# --- binned Wasserstein --------------------------------------------------------------------------


def spread(edges: Floats, counts: npt.NDArray[np.int64]) -> Floats:
    """``counts[i]`` values evenly spread over bin ``i`` (at the midpoints of equal slices)."""
    parts = [
        lo + (np.arange(c) + 0.5) / c * (hi - lo)
        for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)
        if c > 0
    ]
    return np.sort(np.concatenate(parts))


@st.composite
def histograms(draw: st.DrawFn) -> tuple[Floats, list[int], list[int]]:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    bins = draw(st.integers(1, 12))
    edges = np.cumsum(np.concatenate(([rng.normal()], rng.uniform(0.1, 3.0, size=bins))))
    counts = st.lists(st.integers(0, 1000), min_size=bins, max_size=bins).filter(any)
    return edges, draw(counts), draw(counts)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 12))
def test_binned_wasserstein_matches_evenly_spread_samples(seed: int, bins: int) -> None:
    rng = np.random.default_rng(seed)
    edges = np.cumsum(np.concatenate(([rng.normal()], rng.uniform(0.1, 1.0, size=bins))))
    shares = [rng.dirichlet(np.full(bins, 0.7)) for _ in range(2)]
    reference, current = (np.round(s * 500_000).astype(np.int64) for s in shares)
    exact = wasserstein_sorted(spread(edges, reference), spread(edges, current))
    # Evenly spread points stray from uniform mass by at most half a point per bin, which moves
    # the distance by at most (edges[-1] - edges[0]) / (4 * n) per side: about 1e-6 here.
    bound = (edges[-1] - edges[0]) * (1 / (4 * reference.sum()) + 1 / (4 * current.sum()))
    assert abs(binned_wasserstein(edges, reference, current) - exact) <= bound + 1e-12


def test_binned_wasserstein_by_hand() -> None:
    assert close(binned_wasserstein([0.0, 1.0, 2.0], [1, 0], [0, 1]), 1.0)  # a shift by 1
    assert close(binned_wasserstein([0.0, 1.0, 2.0], [1, 1], [2, 0]), 0.5)
    # the CDF difference changes sign inside the middle bin: 0.25 + 0.25 + 0.25
    assert close(binned_wasserstein([0.0, 1.0, 2.0, 3.0], [1, 0, 1], [0, 2, 0]), 0.75)


@examples
@given(histograms())
def test_binned_wasserstein_is_symmetric_and_zero_for_equal_shares(
    case: tuple[Floats, list[int], list[int]],
) -> None:
    edges, reference, current = case
    got = binned_wasserstein(edges, reference, current)
    assert got >= 0.0
    assert close(got, binned_wasserstein(edges, current, reference))
    assert binned_wasserstein(edges, reference, [3 * c for c in reference]) == 0.0


def test_binned_wasserstein_of_a_constant_reference_is_zero() -> None:
    assert binned_wasserstein([4.0], [10], [3]) == 0.0


# --- bad input -----------------------------------------------------------------------------------

ONE = np.array([1.0])
TWO = np.array([1.0, 2.0])
BAD_INPUTS: list[tuple[Callable[..., object], tuple[object, ...], str]] = [
    (ks_sorted, (np.array([]), TWO), "reference is empty"),
    (ks_sorted, (TWO, np.array([])), "current is empty"),
    (ks_sorted, (np.ones((2, 2)), TWO), r"reference has shape \(2, 2\)"),
    (ks_sorted, (np.array([2.0, 1.0]), TWO), "reference is not sorted ascending"),
    (ks_sorted, (TWO, np.array([1.0, np.nan])), "current holds NaN or infinite"),
    (wasserstein_sorted, (TWO, np.array([1.0, np.inf])), "current holds NaN or infinite"),
    (wasserstein_sorted, (np.array([]), TWO), "reference is empty"),
    (wasserstein_sorted, (TWO, np.array([3.0, 2.0, 4.0])), "current is not sorted"),
    (wasserstein_normalized, (np.array([]), TWO), "reference is empty"),
    (psi, ([1, 2], [1, 2, 3]), "reference_counts has 2 bins and current_counts 3"),
    (psi, ([1, 2], [0, 0]), r"current_counts is empty \(its counts sum to 0\)"),
    (psi, ([0, 0], [1, 2]), "reference_counts is empty"),
    (psi, ([], []), "reference_counts is empty"),
    (psi, ([1, -2], [1, 2]), "reference_counts holds negative or non-finite"),
    (psi, ([[1, 2]], [1, 2]), r"reference_counts has shape \(1, 2\)"),
    (js_distance, ([1, 2], [1, np.nan]), "current_counts holds negative or non-finite"),
    (js_distance, ([0, 0], [1, 2]), "reference_counts is empty"),
    (chi2_two_sample, ([1, 2], [0, 0]), "current_counts is empty"),
    (chi2_two_sample, ([1, 2, 3], [1, 2]), "reference_counts has 3 bins"),
    (binned_wasserstein, ([0.0, 1.0], [1, 2], [1, 2]), r"edges has shape \(2,\) for 2 bins"),
    (binned_wasserstein, ([0.0], [1, 2], [1, 2]), "pass 3 edges"),
    (binned_wasserstein, ([0.0, 2.0, 1.0], [1, 2], [1, 2]), "edges must be finite and non-dec"),
    (binned_wasserstein, ([0.0, np.nan, 1.0], [1, 2], [1, 2]), "edges must be finite"),
    (binned_wasserstein, ([0.0, 1.0, 2.0], [1, 2], [0, 0]), "current_counts is empty"),
]


@pytest.mark.parametrize(("function", "args", "message"), BAD_INPUTS)
def test_bad_input_raises_value_error(
    function: Callable[..., object], args: tuple[object, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        function(*args)


@pytest.mark.parametrize("eps", [0.0, -1e-4, math.nan, math.inf])
def test_psi_rejects_a_bad_eps(eps: float) -> None:
    with pytest.raises(ValueError, match=r"eps is .*; pass a small positive share"):
        psi([1, 2], [2, 1], eps=eps)


@pytest.mark.parametrize("std", [-1.0, math.nan, math.inf])
def test_wasserstein_normalized_rejects_a_bad_std(std: float) -> None:
    with pytest.raises(ValueError, match=r"reference_std is .*; pass a finite standard deviation"):
        wasserstein_normalized(TWO, TWO, reference_std=std)


def test_inputs_are_left_unchanged() -> None:
    reference, current = np.array([0.0, 1.0, 1.0, 5.0]), np.array([-1.0, 2.0])
    counts_ref, counts_cur = np.array([3, 0, 2]), np.array([0, 0, 4])
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    saved = [a.copy() for a in (reference, current, counts_ref, counts_cur, edges)]
    ks_sorted(reference, current)
    wasserstein_normalized(reference, current)
    psi(counts_ref, counts_cur)
    js_distance(counts_ref, counts_cur)
    chi2_two_sample(counts_ref, counts_cur)
    binned_wasserstein(edges, counts_ref, counts_cur)
    for before, after in zip(
        saved, (reference, current, counts_ref, counts_cur, edges), strict=True
    ):
        np.testing.assert_array_equal(before, after)


@given(
    statistic=st.one_of(st.floats(min_value=0, max_value=1e6, allow_nan=False), st.just(math.inf)),
    df=st.integers(min_value=1, max_value=500),
)
def test_the_chi2_tail_is_scipys(statistic: float, df: int) -> None:
    from modelyard.monitoring.stats import _chi2_sf

    assert _chi2_sf(statistic, df) == float(stats.chi2.sf(statistic, df))
