"""Prometheus metrics of one server, on a registry the server owns (nothing global).

With several workers, ``PROMETHEUS_MULTIPROC_DIR`` is set by ``yard serve`` before any worker
starts; each worker writes its values there and ``/metrics`` adds them up across workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric

#: The bounds of every latency histogram, in seconds (alert thresholds must fall inside).
LATENCY_BUCKETS = (
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


#: ``window_metrics`` / ``unlabelled_metrics`` key kinds -> (gauge attribute, bound label).
_ESTIMATED_GAUGES = {
    "estimated": ("estimated", None),
    "estimated_lower": ("estimated_band", "lower"),
    "estimated_upper": ("estimated_band", "upper"),
    "estimated_threshold_lower": ("estimated_threshold", "lower"),
    "estimated_threshold_upper": ("estimated_threshold", "upper"),
    "estimated_alert": ("estimated_alert", None),
    "estimated_error": ("estimated_error", None),
}
#: The metric label's values (bounded: CBPE's metrics).
_ESTIMATED_METRICS = ("roc_auc", "f1", "precision", "recall", "accuracy")


class ServingMetrics:
    """The server's metrics; label children are cached so a request costs a few dict lookups."""

    def __init__(self) -> None:
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "modelyard_requests",
            "Requests by model, version, route, status (HTTP's, for gRPC too) and protocol.",
            ["model", "version", "route", "status", "protocol"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "modelyard_request_seconds", "Whole request time, receive to last byte sent.",
            ["model", "route", "protocol"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_wait = Histogram(
            "modelyard_queue_wait_seconds", "Time a request waited for its batch to start.",
            ["model"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.compute = Histogram(
            "modelyard_model_compute_seconds", "Model time per batch.",
            ["model"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.tokenize = Histogram(
            "modelyard_tokenize_seconds",
            "Time to tokenize a request's texts (a text model; in its tokenizer thread).",
            ["model"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.feature_fetch = Histogram(
            "modelyard_feature_fetch_seconds",
            "Time of a batch's one online-features call (a version that declares a feature "
            "service; in the model's thread).",
            ["model"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.serialize = Histogram(
            "modelyard_serialize_seconds", "Time to encode an answer.",
            ["model"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_rows = Histogram(
            "modelyard_batch_rows", "Rows per model call.", ["model"], buckets=_ROW_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "modelyard_queue_depth", "Requests waiting for a batch.", ["model"],
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.route_requests = Counter(
            "modelyard_route_requests", "Deployment requests answered, by route and version.",
            ["deployment", "route", "version"], registry=r,
        )  # fmt: skip
        # What each route of a deployment saw, as the rollout controller judges it: every try
        # (a candidate's failure retried on stable counts once on each route), shadow copies too.
        self.route_latency = Histogram(
            "modelyard_route_seconds", "Time a deployment's route took for a request (its model).",
            ["deployment", "route"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.route_errors = Counter(
            "modelyard_route_errors", "Requests that failed on a deployment's route.",
            ["deployment", "route"], registry=r,
        )  # fmt: skip
        # Cost: CPU time per model version (its thread's time on each batch, plus the event
        # loop's time on each of its requests) and the memory each loaded version took.
        self.model_cpu = Counter(
            "modelyard_model_cpu_seconds",
            "CPU time spent on a model version: its thread on batches, the event loop on its "
            "requests (decoding, validation, encoding).",
            ["model", "version"], registry=r,
        )  # fmt: skip
        self.model_memory = Gauge(
            "modelyard_model_memory_bytes",
            "Resident memory a loaded model version took (the growth while it loaded).",
            ["model", "version"], registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.loads = Counter(
            "modelyard_model_loads", "Model loads by result (ok or failed).",
            ["model", "version", "result"], registry=r,
        )  # fmt: skip
        self.log_dropped = Counter(
            "modelyard_prediction_log_dropped", "Predictions the log dropped (queue full).",
            registry=r,
        )  # fmt: skip
        # A log bound for an object store: rows waiting on local disk, uploads that failed.
        self.log_backlog = Gauge(
            "modelyard_prediction_log_backlog_rows",
            "Logged rows spooled on local disk, not yet uploaded to the object store.",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.log_upload_failures = Counter(
            "modelyard_prediction_log_upload_failures",
            "Uploads of the prediction log to the object store that failed (retried).",
            registry=r,
        )  # fmt: skip
        # Monitoring: one worker per machine computes these (a lease) and the newest value wins.
        self.window_rows = Gauge(
            "modelyard_window_rows", "Logged rows in the monitoring window.", ["deployment"],
            registry=r, multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.drift_share = Gauge(
            "modelyard_drift_share", "Share of input columns drifted in the monitoring window.",
            ["deployment"], registry=r, multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.drift_score = Gauge(
            "modelyard_drift_score",
            "A column's drift score (a p-value for ks and chi2, else a distance or PSI).",
            ["deployment", "column"], registry=r, multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.output_drift_score = Gauge(
            "modelyard_output_drift_score", "An output's drift score, as for the inputs.",
            ["deployment", "output"], registry=r, multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.performance = Gauge(
            "modelyard_performance", "Model quality where labels joined predictions.",
            ["deployment", "metric"], registry=r, multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.error_rate = Gauge(
            "modelyard_window_error_rate", "Share of logged requests answered with a 5xx.",
            ["deployment"], registry=r, multiprocess_mode="mostrecent",
        )  # fmt: skip
        # Before labels: multivariate drift (``bound`` is lower or upper: two children at most).
        self.reconstruction_error = Gauge(
            "modelyard_reconstruction_error",
            "Mean PCA reconstruction error of the inputs in the monitoring window.",
            ["deployment"], registry=r, multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.reconstruction_threshold = Gauge(
            "modelyard_reconstruction_threshold",
            "The reconstruction error's alert thresholds (reference chunks' mean +- 3 sd).",
            ["deployment", "bound"], registry=r, multiprocess_mode="mostrecent",
        )  # fmt: skip
        # Before labels: CBPE's estimate per metric (roc_auc, f1, precision, recall, accuracy)
        # with its band and thresholds (``bound`` lower or upper) and its alert flag.
        self.estimated = Gauge(
            "modelyard_estimated_performance",
            "Performance estimated without labels (CBPE) over the monitoring window.",
            ["deployment", "metric"], registry=r, multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.estimated_band = Gauge(
            "modelyard_estimated_performance_band",
            "The estimate's confidence band (estimate +- 3 sampling errors).",
            ["deployment", "metric", "bound"], registry=r, multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.estimated_threshold = Gauge(
            "modelyard_estimated_performance_threshold",
            "The estimate's alert thresholds (reference chunks' mean +- 3 sd).",
            ["deployment", "metric", "bound"], registry=r, multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.estimated_alert = Gauge(
            "modelyard_estimated_performance_alert",
            "1 when the estimate is outside its thresholds, else 0.",
            ["deployment", "metric"], registry=r, multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.outcome = Gauge(
            "modelyard_outcome",
            "Business outcomes of the window's predictions: count, sum and mean.",
            ["deployment", "stat"], registry=r, multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.estimated_error = Gauge(
            "modelyard_estimated_performance_error",
            "The estimate minus the realised value, where the window's labels arrived.",
            ["deployment", "metric"], registry=r, multiprocess_mode="mostrecent",
        )  # fmt: skip
        if self.multiprocess_dir is None:
            ProcessCollector(registry=r)
        self._children: dict[tuple[Any, ...], Any] = {}
        self._tallies: dict[tuple[Any, ...], Tally] = {}
        self._dirty: list[Tally] = []
        self._flush_due = False

    def tally(self, metric: Any, *labels: str) -> Tally:
        """A ``Tally`` of one label set of a counter or histogram: what the request path adds
        to it reaches the metric in bulk (see ``Tally``)."""
        key = (id(metric), *labels)
        found = self._tallies.get(key)
        if found is None:
            found = self._tallies[key] = Tally(self.child(metric, *labels), self)
        return found

    def mark(self, tally: Tally) -> None:
        """``tally`` holds values not yet in its metric: add them within ``FLUSH_S`` (and before
        any rendering)."""
        self._dirty.append(tally)
        if not self._flush_due:
            self._flush_due = True
            try:
                asyncio.get_running_loop().call_later(FLUSH_S, self.flush)
            except RuntimeError:  # no event loop: at once
                self.flush()

    def flush(self) -> None:
        """Add every tally's pending values to its metric."""
        self._flush_due = False
        dirty, self._dirty = self._dirty, []
        for tally in dirty:
            tally.flush()

    def child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = metric.labels(*labels)
            self._children[key] = found
        return found

    def drop(self, metric: Any, *labels: str) -> None:
        """Forget one label set of ``metric`` (a version no longer served)."""
        tally = self._tallies.pop((id(metric), *labels), None)
        if tally is not None:
            tally.flush()
        self._children.pop((id(metric), *labels), None)
        with contextlib.suppress(KeyError):
            metric.remove(*labels)

    def observe_route(self, deployment: str, route: str, seconds: float, error: bool) -> None:
        """One try on a deployment's route; its error counter exists (at 0) from the first."""
        self.child(self.route_latency, deployment, route).observe(seconds)
        errors = self.child(self.route_errors, deployment, route)
        if error:
            errors.inc()

    def set_window(self, deployment: str, values: dict[str, float]) -> None:
        """Export one deployment's monitoring metrics (``window_metrics``'s keys)."""
        for key, value in values.items():
            kind, _, name = key.partition(":")
            if kind == "rows":
                self.window_rows.labels(deployment).set(value)
            elif kind == "drift_share":
                self.drift_share.labels(deployment).set(value)
            elif kind == "error_rate":
                self.error_rate.labels(deployment).set(value)
            elif kind == "drift":
                self.drift_score.labels(deployment, name).set(value)
            elif kind == "output_drift":
                self.output_drift_score.labels(deployment, name).set(value)
            elif kind == "performance":
                self.performance.labels(deployment, name).set(value)
            elif kind in _ESTIMATED_GAUGES and name in _ESTIMATED_METRICS:
                gauge, bound = _ESTIMATED_GAUGES[kind]
                labels = (deployment, name, bound) if bound else (deployment, name)
                getattr(self, gauge).labels(*labels).set(value)
            elif kind == "reconstruction_error":
                self.reconstruction_error.labels(deployment).set(value)
            elif kind == "reconstruction_threshold" and name in ("lower", "upper"):
                self.reconstruction_threshold.labels(deployment, name).set(value)
            elif kind == "outcome":
                self.outcome.labels(deployment, name).set(value)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self._merged()), CONTENT_TYPE_LATEST

    def families(self) -> Iterable[Metric]:
        """Every metric's samples as ``/metrics`` shows them (all workers' added up)."""
        return self._merged().collect()

    def _merged(self) -> CollectorRegistry:
        self.flush()
        if self.multiprocess_dir is None:
            return self.registry
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]  # untyped upstream
        return merged


#: How long a ``Tally`` may hold values before they reach their metric (and the other workers'
#: ``/metrics``; a worker's own ``/metrics`` adds them at once).
FLUSH_S = 0.05


class Tally:
    """One label set of a counter or histogram, added to on the event loop in plain Python and
    brought to the metric in bulk: ``prometheus_client``'s ``observe`` takes about 1.3 us and
    ``inc`` about 1 us (a lock, and a walk over the buckets), five of them per prediction, while
    a list append takes 0.06 us. A flush adds each bucket's count and the sum once, through the
    same value objects ``observe`` uses (so multiprocess mode works alike); a metric without
    them (another prometheus_client) takes the values one at a time."""

    __slots__ = ("_amount", "_bulk", "_child", "_metrics", "_values")

    def __init__(self, child: Any, metrics: ServingMetrics) -> None:
        self._child = child
        self._metrics = metrics
        self._values: list[float] = []
        self._amount = 0.0
        self._bulk = all(hasattr(child, a) for a in ("_upper_bounds", "_buckets", "_sum"))

    def observe(self, value: float) -> None:
        values = self._values
        values.append(value)
        if len(values) == 1 and not self._amount:
            self._metrics.mark(self)

    def inc(self, amount: float = 1.0) -> None:
        fresh = not self._values and not self._amount
        self._amount += amount
        if fresh:
            self._metrics.mark(self)

    def flush(self) -> None:
        child = self._child
        if self._amount:
            amount, self._amount = self._amount, 0.0
            child.inc(amount)
        if not self._values:
            return
        values, self._values = self._values, []
        if not self._bulk or len(values) < 4:
            for value in values:
                child.observe(value)
            return
        import numpy as np

        # bucket i counts values <= its bound (prometheus keeps them apart, adds them up on
        # exposition): the first bound at or above the value
        where = np.searchsorted(np.asarray(child._upper_bounds), values, side="left")
        for i, count in enumerate(np.bincount(where, minlength=len(child._buckets)).tolist()):
            if count:
                child._buckets[i].inc(count)
        child._sum.inc(float(sum(values)))
