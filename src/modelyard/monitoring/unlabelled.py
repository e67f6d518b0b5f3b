"""What a deployment's log tells before labels arrive, as the flat metrics that alert rules,
the loop's triggers and the server's gauges read for one window:

- ``estimated:<metric>`` (roc_auc, f1, precision, recall, accuracy): CBPE's estimate for the
  window's predictions of the newest model version (``monitoring.estimated``), with its band
  (``estimated_lower:<metric>``, ``estimated_upper:<metric>``), its thresholds
  (``estimated_threshold_lower:<metric>``, ``estimated_threshold_upper:<metric>``) and
  ``estimated_alert:<metric>`` (1 when the estimate is outside the thresholds), and where the
  window's labels arrived ``estimated_error:<metric>`` (the estimate minus the realised value);
- ``reconstruction_error`` (with ``reconstruction_threshold:lower`` and ``:upper``): multivariate
  drift by PCA reconstruction error (``monitoring.multivariate``).

``window_metrics`` (``monitoring.service``) keeps the metrics every rule round reads (traffic,
drift, realised performance); these are read only where a rule or a gauge asks for them, since
each reads the window's rows.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.errors import ModelyardError, PredictionLogEmptyError

if TYPE_CHECKING:
    from modelyard.monitoring.service import DriftOptions
    from modelyard.registry.client import Registry
    from modelyard.settings import EstimationSettings

__all__ = ["UNLABELLED_PARTS", "estimated_metrics", "part_of", "unlabelled_metrics"]

logger = logging.getLogger(__name__)

#: The groups of metrics this module reads, each with one pass over the window.
UNLABELLED_PARTS = ("estimation", "reconstruction")


def part_of(metric: str) -> str | None:
    """Which part (of ``UNLABELLED_PARTS``) computes ``metric``; ``None`` for the metrics of
    ``window_metrics``."""
    if metric == "reconstruction_error" or metric.startswith("reconstruction_threshold:"):
        return "reconstruction"
    if metric.partition(":")[0] in _ESTIMATED_KINDS:
        return "estimation"
    return None


_ESTIMATED_KINDS = (
    "estimated", "estimated_lower", "estimated_upper", "estimated_threshold_lower",
    "estimated_threshold_upper", "estimated_alert", "estimated_error",
)  # fmt: skip


def estimated_metrics(
    registry: Registry,
    root: str | Path,
    name: str,
    *,
    window: timedelta,
    now: datetime,
    settings: EstimationSettings | None = None,
) -> dict[str, float]:
    """CBPE over the last ``window`` of ``name``'s log as one window (see the module)."""
    from modelyard.monitoring.estimated import estimate_performance

    found = estimate_performance(
        root, name, start=now - window, end=now, chunk=f"{int(window.total_seconds())}s",
        registry=registry, settings=settings, now=now,
    )  # fmt: skip
    latest = found.latest()
    if latest is None:
        return {}
    metrics: dict[str, float] = {}
    for metric, estimate in latest.metrics.items():
        if estimate.value is None:
            continue
        metrics[f"estimated:{metric}"] = estimate.value
        metrics[f"estimated_alert:{metric}"] = float(estimate.alert)
        for key, value in (
            ("estimated_lower", estimate.lower), ("estimated_upper", estimate.upper),
            ("estimated_threshold_lower", estimate.lower_threshold),
            ("estimated_threshold_upper", estimate.upper_threshold),
            ("estimated_error", estimate.error),
        ):  # fmt: skip
            if value is not None:
                metrics[f"{key}:{metric}"] = value
    return metrics


def unlabelled_metrics(
    registry: Registry,
    root: str | Path,
    name: str,
    *,
    window: timedelta,
    now: datetime,
    options: DriftOptions | None = None,
    parts: tuple[str, ...] = UNLABELLED_PARTS,
    strict: bool = False,
) -> dict[str, float]:
    """The metrics of ``parts`` over the last ``window`` of ``name``'s log (an empty window
    gives none). A part that cannot be computed (no reference sample, no labelled reference, a
    regressor...) raises with ``strict``, else is logged and left out."""
    from modelyard.monitoring.multivariate import reconstruction_error, reconstruction_metrics

    metrics: dict[str, float] = {}
    for part in parts:
        try:
            if part == "estimation":
                metrics.update(
                    estimated_metrics(
                        registry, root, name, window=window, now=now,
                        settings=options.estimation if options is not None else None,
                    )
                )  # fmt: skip
            elif part == "reconstruction":
                result = reconstruction_error(
                    registry, root, name, window=window, options=options, now=now
                )
                metrics.update(reconstruction_metrics(result))
        except PredictionLogEmptyError:
            continue  # nothing in the window (for this part's model version): no data
        except ModelyardError as exc:
            if strict:
                raise
            logger.info("no %s metrics for %s: %s", part, name, exc)
    return metrics
