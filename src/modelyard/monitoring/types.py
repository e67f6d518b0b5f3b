"""What monitoring computes: drift per column and per dataset, performance per window, and the
series a report draws. Plain msgspec structs, so they go to JSON (``--json``, the report, alerts)
unchanged."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import msgspec

if TYPE_CHECKING:  # estimated imports this module; the struct is only encoded
    from modelyard.monitoring.estimated import EstimatedPerformance
    from modelyard.settings import CostSettings

__all__ = [
    "ColumnDrift",
    "DriftMethod",
    "DriftResult",
    "Histogram",
    "Performance",
    "Reconstruction",
    "ReconstructionWindow",
    "ReportData",
    "WindowPoint",
]

#: ``psi``, ``js`` (Jensen-Shannon distance, log base 2), ``wasserstein`` (divided by the
#: reference standard deviation), ``ks`` (two-sample Kolmogorov-Smirnov p-value), ``chi2``
#: (chi-square goodness-of-fit p-value of the current counts against the reference's
#: proportions, Evidently's ``chisquare``) and ``chi2_contingency`` (chi-square p-value of the
#: two-sample contingency table, which also allows for the reference's own sampling noise), and
#: for embedding outputs only ``mmd`` (the kernel two-sample test's permutation p-value,
#: ``modelyard.monitoring.embeddings``).
DriftMethod = Literal["psi", "js", "wasserstein", "ks", "chi2", "chi2_contingency", "mmd"]


class Histogram(msgspec.Struct, frozen=True, kw_only=True):
    """Reference and current shares over the same bins (numeric: ``[a, b)`` intervals on the
    reference's edges) or categories (the reference's top values, then ``other``)."""

    labels: tuple[str, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...]


class ColumnDrift(msgspec.Struct, frozen=True, kw_only=True):
    """One column's drift: ``score`` by ``method`` against ``threshold``.

    For ``ks``, ``chi2``, ``chi2_contingency`` and ``mmd`` the score is the p-value and the
    column drifts when it is *below* the threshold; for the distances it drifts when the score is
    *at or above* it.
    ``statistic`` is the test statistic behind a p-value (``None`` for the distances).

    Missing values are checked apart from the values' distribution: ``reference_null_share``
    and ``current_null_share`` are the shares of null rows (NaN, None, NA; infinities are not
    null), ``null_p_value`` the two-proportion test of them (``monitoring.drift``) and
    ``null_drifted`` whether they moved significantly; ``drifted`` is true when either the
    values or the null share drifted. ``compared`` is false when one side has no values at all
    (``current_rows`` or ``reference_rows`` 0, e.g. a column that is all null now): the
    distributions were not compared, and ``score`` holds the method's most drifted value.
    """

    name: str
    kind: str  # numeric, categorical, bool, datetime; embedding (an output of rows x dim)
    method: DriftMethod
    score: float
    threshold: float
    drifted: bool
    statistic: float | None = None
    reference_rows: int = 0
    current_rows: int = 0
    histogram: Histogram | None = None
    compared: bool = True
    reference_null_share: float = 0.0
    current_null_share: float = 0.0
    null_p_value: float = 1.0
    null_drifted: bool = False


class DriftResult(msgspec.Struct, frozen=True, kw_only=True):
    """Drift of a dataset: ``share`` of drifted ``columns``; the dataset drifts when the share is
    at or above ``threshold``. ``outputs`` holds the drift of the model's outputs."""

    reference: str  # what was compared, for people: "churn/3 (stored profile)", "ref.parquet"
    current: str
    reference_rows: int
    current_rows: int
    columns: tuple[ColumnDrift, ...]
    drifted: int
    share: float
    threshold: float
    dataset_drift: bool
    outputs: tuple[ColumnDrift, ...] = ()
    #: What was left out and why, one line each, naming what to pass to get it.
    notes: tuple[str, ...] = ()


class Performance(msgspec.Struct, frozen=True, kw_only=True):
    """Model quality where labels joined predictions: ``metrics`` by name (accuracy, f1, roc_auc,
    ... or mae, rmse, r2), each computed on ``counts[name]`` rows; ``labelled`` rows of the
    window's ``predictions`` have a label; ``unmatched_labels`` counts labels whose request id
    matches no logged prediction at all (not silently dropped)."""

    task: Literal["classification", "regression"]
    metrics: dict[str, float]
    counts: dict[str, int]
    labelled: int
    predictions: int
    unmatched_labels: int


class WindowPoint(msgspec.Struct, frozen=True, kw_only=True):
    """One window of a series (hourly or daily): volume, latency, errors, drift, performance."""

    start: str  # ISO 8601, UTC
    end: str
    rows: int
    requests: int
    p50_latency_ms: float | None = None
    p99_latency_ms: float | None = None
    error_rate: float | None = None
    drift_share: float | None = None
    scores: dict[str, float] = msgspec.field(default_factory=dict)
    performance: dict[str, float] = msgspec.field(default_factory=dict)


class ReconstructionWindow(msgspec.Struct, frozen=True, kw_only=True):
    """One window's PCA reconstruction error (``monitoring.multivariate``): the mean over its
    ``rows``, its sampling error, and ``alert`` when it is outside the thresholds; ``error`` is
    ``None`` for a window without rows."""

    start: str | None  # ISO 8601, UTC
    end: str | None
    rows: int
    error: float | None
    sampling_error: float | None
    alert: bool


class Reconstruction(msgspec.Struct, frozen=True, kw_only=True):
    """Multivariate drift of a deployment's inputs by PCA reconstruction error: the reference,
    the ``columns`` used, the PCA's ``components`` (explaining ``variance`` of the reference),
    the reference's error and the thresholds, and the error of each of ``windows``."""

    reference: str
    reference_rows: int
    columns: tuple[str, ...]
    components: int
    variance: float
    reference_error: float
    lower_threshold: float
    upper_threshold: float
    windows: tuple[ReconstructionWindow, ...]


class Prices(msgspec.Struct, frozen=True, kw_only=True):
    """What one CPU-hour and one GB-hour of memory cost (``monitoring.cost`` settings)."""

    cpu_hour: float
    gb_hour: float
    currency: str = "USD"

    @classmethod
    def of(cls, settings: CostSettings) -> Prices:
        return cls(
            cpu_hour=settings.cpu_hour_price,
            gb_hour=settings.gb_hour_price,
            currency=settings.currency,
        )

    @classmethod
    def defaults(cls) -> Prices:
        from modelyard.settings import CostSettings

        return cls.of(CostSettings())


class ModelCost(msgspec.Struct, frozen=True, kw_only=True):
    """One model version's serving cost over a window of its log."""

    model: str
    version: str
    #: Rows answered (a request of 10 rows is 10 predictions).
    predictions: int
    requests: int
    cpu_s: float
    #: The resident memory the version took (the largest logged; 0 where not measured).
    memory_bytes: int
    #: Hours between its first and last logged request in the window (at least a second).
    served_h: float
    cpu_s_per_1k: float
    gb_h_per_1k: float
    #: CPU and memory at the prices, for the window and per 1,000 predictions.
    cost: float
    cost_per_1k: float


class CostReport(msgspec.Struct, frozen=True, kw_only=True):
    """``yard monitor cost``: each version's cost over a window; ``measured`` is false for a
    log written before the server measured cost (every figure then 0)."""

    name: str
    start: str  # ISO 8601, UTC
    end: str
    prices: Prices
    measured: bool
    models: tuple[ModelCost, ...] = ()


class ReportData(msgspec.Struct, frozen=True, kw_only=True):
    """Everything ``yard monitor report`` draws."""

    name: str
    generated_at: str  # ISO 8601, UTC
    window: str  # "24h"
    drift: DriftResult
    series: tuple[WindowPoint, ...] = ()
    performance: Performance | None = None
    #: Multivariate drift per window (``None`` when it could not be fitted: too few inputs...).
    reconstruction: Reconstruction | None = None
    #: Performance estimated without labels per window, with the realised values where labels
    #: arrived (``None`` when it cannot be estimated: no probabilities, too few labels...).
    estimated: EstimatedPerformance | None = None
    #: Each version's serving cost over the window (``None``: not computed).
    cost: CostReport | None = None
