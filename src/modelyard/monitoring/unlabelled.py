"""What a deployment's log tells before labels arrive, as the flat metrics that alert rules,
the loop's triggers and the server's gauges read for one window:

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

__all__ = ["UNLABELLED_PARTS", "part_of", "unlabelled_metrics"]

logger = logging.getLogger(__name__)

#: The groups of metrics this module reads, each with one pass over the window.
UNLABELLED_PARTS = ("reconstruction",)


def part_of(metric: str) -> str | None:
    """Which part (of ``UNLABELLED_PARTS``) computes ``metric``; ``None`` for the metrics of
    ``window_metrics``."""
    if metric == "reconstruction_error" or metric.startswith("reconstruction_threshold:"):
        return "reconstruction"
    return None


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
    gives none). A part that cannot be computed (no reference sample, a regressor...) raises
    with ``strict``, else is logged and left out."""
    from modelyard.monitoring.multivariate import reconstruction_error, reconstruction_metrics

    metrics: dict[str, float] = {}
    for part in parts:
        try:
            if part == "reconstruction":
                result = reconstruction_error(
                    registry, root, name, window=window, options=options, now=now
                )
                metrics.update(reconstruction_metrics(result))
        except PredictionLogEmptyError:
            return {}
        except ModelyardError as exc:
            if strict:
                raise
            logger.info("no %s metrics for %s: %s", part, name, exc)
    return metrics
