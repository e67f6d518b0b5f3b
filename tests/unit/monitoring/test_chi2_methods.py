"""The two chi-square drift tests: ``chi2`` (the default for small categorical windows) is
Evidently's goodness-of-fit test of the current counts against the reference's proportions,
``chi2_contingency`` the two-sample test of homogeneity, by name. Checked against scipy on the
counts where the two disagree (reference 212/357, current 47/53)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from scipy import stats

from modelyard.core.profile import compute_profile
from modelyard.monitoring.drift import ColumnRule, compare
from modelyard.monitoring.stats import chi2_goodness_of_fit, chi2_two_sample
from modelyard.settings import Settings
from tests.unit.monitoring.test_stats import close, count_lists, examples

REFERENCE = [212, 357]
CURRENT = [47, 53]


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    reference = pd.DataFrame({"plan": ["basic"] * 212 + ["pro"] * 357})
    current = pd.DataFrame({"plan": ["basic"] * 47 + ["pro"] * 53})
    return reference, current


def test_the_two_tests_on_the_counts_where_they_disagree() -> None:
    expected = np.array(REFERENCE) * sum(CURRENT) / sum(REFERENCE)
    fit = stats.chisquare(CURRENT, f_exp=expected)
    homogeneity = stats.chi2_contingency([REFERENCE, CURRENT], correction=False)
    assert chi2_goodness_of_fit(REFERENCE, CURRENT) == pytest.approx(
        (float(fit.statistic), float(fit.pvalue)), rel=1e-9
    )
    assert chi2_two_sample(REFERENCE, CURRENT) == pytest.approx(
        (float(homogeneity.statistic), float(homogeneity.pvalue)), rel=1e-9
    )
    assert round(float(fit.pvalue), 3) == 0.044 and round(float(homogeneity.pvalue), 3) == 0.065


@pytest.mark.parametrize("reference_kind", ["data", "profile"])
def test_chi2_is_the_default_and_drifts_as_evidently_does(reference_kind: str) -> None:
    reference, current = _frames()
    ref = reference if reference_kind == "data" else compute_profile(reference)[0]
    [column] = compare(ref, current).columns
    assert (column.method, column.drifted) == ("chi2", True)
    assert column.score == pytest.approx(0.0439203097, rel=1e-6)
    [column] = compare(
        ref, current, columns={"plan": ColumnRule(method="chi2_contingency")}
    ).columns
    assert (column.method, column.drifted) == ("chi2_contingency", False)
    assert column.score == pytest.approx(0.0651218490, rel=1e-6)


def test_a_category_the_reference_never_had_drifts() -> None:
    statistic, pvalue = chi2_goodness_of_fit([10, 20, 0], [10, 20, 1])
    assert (statistic, pvalue) == (math.inf, 0.0)
    assert chi2_goodness_of_fit([4, 0, 6], [2, 0, 3]) == (0.0, 1.0)
    assert chi2_goodness_of_fit([4, 0], [9, 0]) == (0.0, 1.0)


@examples
@given(count_lists)
def test_chi2_goodness_of_fit_matches_scipy(pair: tuple[list[int], list[int]]) -> None:
    reference, current = (np.array(side) for side in pair)
    statistic, pvalue = chi2_goodness_of_fit(reference, current)
    present = (reference + current) > 0
    ref, cur = reference[present], current[present]
    if present.sum() < 2:
        assert (statistic, pvalue) == (0.0, 1.0)
    elif np.any((ref == 0) & (cur > 0)):
        assert (statistic, pvalue) == (math.inf, 0.0)
    else:
        expected = stats.chisquare(cur, f_exp=ref * cur.sum() / ref.sum())
        assert close(statistic, float(expected.statistic))
        assert close(pvalue, float(expected.pvalue))


def test_modelyard_toml_takes_the_contingency_test_by_name() -> None:
    settings = Settings.model_validate(
        {"monitoring": {"drift": {"columns": {"plan": {"method": "chi2_contingency"}}}}}
    )
    assert settings.monitoring.drift.columns["plan"].method == "chi2_contingency"
