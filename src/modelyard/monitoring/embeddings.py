"""Drift of an embedding output (rows of ``dim`` floats): a kernel two-sample test.

The test is the maximum mean discrepancy (MMD) with a Gaussian (RBF) kernel
``k(x, y) = exp(-|x - y|^2 / (2 sigma^2))``, ``sigma`` the median distance between the pooled
rows (the median heuristic, so no scale to tune per model), and a permutation p-value: the rows'
reference/current labels are shuffled ``permutations`` times (seeded) and the p-value is the
share of shuffles whose MMD is at least the observed one, ``(1 + #{>=}) / (1 + permutations)``.

Why a p-value and this threshold: the column drifts when the p-value is below 0.05 (``mmd`` in
``DEFAULT_THRESHOLDS``, overridable as ``[monitoring.drift] thresholds = {mmd = 0.01}``), like the
other tests (``ks``, ``chi2``): one false alarm in twenty windows of unchanged traffic, whatever
the model, its dimension or its scale, with nothing learned or tuned per model. Each side is
first cut to a seeded sample of at most ``max_rows`` (1,000) rows, so a window of a million
requests costs what a window of a thousand does (a 2,000 x 2,000 kernel), and the smallest shift
that drifts is the same for an hour as for a day. Evidently's defaults differ: it trains a
domain classifier (drift at ROC AUC > 0.55) by default, and its ``mmd`` method thresholds the MMD
value itself (0.015), which depends on the kernel's scale; a permutation p-value does not, and needs
no classifier fitted per window. ``statistic`` is the (biased) MMD^2.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from modelyard.errors import InvalidInputError
from modelyard.monitoring.types import ColumnDrift

__all__ = ["EmbeddingDetector", "mmd_test", "subsample"]

_Floats = npt.NDArray[np.float64]

MAX_ROWS = 1000
PERMUTATIONS = 300
DEFAULT_THRESHOLD = 0.05


def subsample(rows: npt.NDArray[np.floating], max_rows: int, seed: int) -> _Floats:
    """At most ``max_rows`` of ``rows`` (seeded, order kept), as float64."""
    if len(rows) > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), max_rows, replace=False))
        rows = rows[keep]
    return np.asarray(rows, dtype=np.float64)


def mmd_test(
    reference: _Floats, current: _Floats, *, permutations: int = PERMUTATIONS, seed: int = 0
) -> tuple[float, float]:
    """``(MMD^2, p-value)`` of two samples (rows x dim, both at least 2 rows), as the module
    says. All permutations are one matrix product: the MMD^2 of a labelling ``w`` (``1/n`` for a
    reference row, ``-1/m`` for a current one) is ``w' K w``."""
    n, m = len(reference), len(current)
    pooled = np.concatenate([reference, current])
    squared = np.einsum("ij,ij->i", pooled, pooled)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2.0 * (pooled @ pooled.T), 0.0)
    upper = distances[np.triu_indices(n + m, k=1)]
    median = float(np.median(upper))
    if median <= 0:  # at least half the pairs coincide: scale by the mean distance instead
        median = float(upper.mean())
    if median <= 0:  # every row is the same point: nothing differs
        return 0.0, 1.0
    kernel = np.exp(-distances / median)  # 2 sigma^2 = median squared distance
    weights = np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)])
    observed = float(weights @ kernel @ weights)
    rng = np.random.default_rng(seed)
    shuffled = np.stack([rng.permutation(weights) for _ in range(permutations)], axis=1)
    null = np.einsum("ip,ip->p", shuffled, kernel @ shuffled)
    # a shuffle equal to the observed labelling ties with it up to rounding: count it as >=
    at_least = int(np.count_nonzero(null >= observed - 1e-12 * abs(observed)))
    return max(observed, 0.0), (1 + at_least) / (1 + permutations)


class EmbeddingDetector:
    """Compares current embeddings with a reference fitted once (see the module)."""

    def __init__(
        self,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        max_rows: int = MAX_ROWS,
        permutations: int = PERMUTATIONS,
        seed: int = 0,
    ) -> None:
        self.threshold = threshold
        self.max_rows = max_rows
        self.permutations = permutations
        self.seed = seed

    def fit(self, reference: npt.ArrayLike, *, name: str = "predict") -> EmbeddingDetector:
        if not 0 <= self.threshold <= 1:
            raise InvalidInputError(
                f"The mmd threshold {self.threshold} is not a p-value; use a number in [0, 1] "
                "such as 0.05."
            )
        if self.max_rows < 2 or self.permutations < 1:
            raise InvalidInputError(
                f"Cannot test embeddings with max_rows={self.max_rows}, permutations="
                f"{self.permutations}; use max_rows >= 2 and permutations >= 1."
            )
        rows = _matrix(reference, f"The reference embeddings of {name!r}")
        self.name_ = name
        self.rows_ = len(rows)
        self.reference_ = subsample(rows, self.max_rows, self.seed)
        return self

    def compare(self, current: npt.ArrayLike, *, rows: int | None = None) -> ColumnDrift:
        """The drift of ``current`` (rows x dim, or a sample of a window of ``rows`` rows)."""
        matrix = _matrix(current, f"The current embeddings of {self.name_!r}")
        if matrix.shape[1] != self.reference_.shape[1]:
            raise InvalidInputError(
                f"Output {self.name_!r} has {matrix.shape[1]} dimensions in the log but "
                f"{self.reference_.shape[1]} in the reference; compare with the version that "
                "answered (--reference NAME/VERSION)."
            )
        sample = subsample(matrix, self.max_rows, self.seed + 1)
        statistic, p_value = mmd_test(
            self.reference_, sample, permutations=self.permutations, seed=self.seed
        )
        return ColumnDrift(
            name=self.name_, kind="embedding", method="mmd", score=p_value,
            threshold=self.threshold, drifted=p_value < self.threshold, statistic=statistic,
            reference_rows=self.rows_, current_rows=rows if rows is not None else len(matrix),
        )  # fmt: skip


def _matrix(values: npt.ArrayLike, what: str) -> _Floats:
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim != 2 or len(matrix) < 2:
        raise InvalidInputError(
            f"{what} have shape {matrix.shape}; pass at least 2 rows of a 2-D array (rows x dim)."
        )
    if not np.isfinite(matrix).all():
        raise InvalidInputError(
            f"{what} hold NaN or infinite values; drop those rows before comparing."
        )
    return matrix
