"""The Prometheus alerting rules of ``yard observability``, written against the metrics
``yard serve`` exports (``modelyard.serving.metrics``) and the prediction log's backlog metrics.

Every rule aggregates by ``namespace`` and ``job`` (a label that is absent is simply empty), so
one rule file serves plain Prometheus and the Prometheus Operator alike, and several replicas of
one service add up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from modelyard.errors import InvalidInputError
from modelyard.serving.metrics import LATENCY_BUCKETS

#: The routes that answer predictions (REST v2 and gRPC, MLflow's, TF Serving's, Vertex AI's).
INFERENCE_ROUTES = "v2_infer|invocations|tf_predict|vertex_predict"
#: The labels every rule keeps, beside its own.
_BY = "namespace, job"
#: What a counter that may appear only at its first increment (a new label set) is compared over.
_RECENT = "15m"


@dataclass(frozen=True)
class AlertThresholds:
    """When the alerts fire. The defaults match ``yard serve``'s own defaults (``max_queue``,
    the drift share threshold) and are documented in the bundle's RUNBOOK.md."""

    #: Share of inference requests answered with a 5xx, per model or deployment, over 5 minutes.
    error_ratio: float = 0.05
    #: 99th percentile of the whole request time, in milliseconds, over 5 minutes.
    p99_ms: float = 500.0
    #: Share of the batching queue in use (``queue_depth / max_queue``).
    queue_saturation: float = 0.8
    #: The queue limit of one server process (``serving.max_queue``), per model.
    max_queue: int = 1024
    #: Share of input columns drifted (``monitoring.drift.share_threshold``).
    drift_share: float = 0.5
    #: Prediction-log rows waiting for the object store, per server.
    log_backlog_rows: int = 10_000

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInputError(f"Threshold {field.name} must be a number, not {value!r}.")
            if not math.isfinite(value):
                raise InvalidInputError(f"Threshold {field.name} must be finite, not {value}.")
        _share("error_ratio", self.error_ratio, "--error-ratio 0.05", upper_open=True)
        _share("queue_saturation", self.queue_saturation, "--queue-saturation 0.8")
        _share("drift_share", self.drift_share, "--drift-share 0.5")
        low, high = LATENCY_BUCKETS[0] * 1000, LATENCY_BUCKETS[-1] * 1000
        if not low <= self.p99_ms < high:
            raise InvalidInputError(
                f"Threshold p99_ms={self.p99_ms:g} is outside what the server's latency buckets "
                f"can show ({low:g} ms to below {high:g} ms); give e.g. --p99-ms 500."
            )
        for name, example in (("max_queue", "1024"), ("log_backlog_rows", "10000")):
            value = getattr(self, name)
            if value != int(value) or value < 1:
                raise InvalidInputError(
                    f"Threshold {name}={value!r} must be a whole number of at least 1; give e.g. "
                    f"--{name.replace('_', '-')} {example}."
                )

    @property
    def queue_depth(self) -> float:
        """The queue depth at which the saturation alert fires."""
        return self.max_queue * self.queue_saturation


def _share(name: str, value: float, example: str, *, upper_open: bool = False) -> None:
    if not (0 < value < 1 if upper_open else 0 < value <= 1):
        bound = "below 1" if upper_open else "at most 1"
        raise InvalidInputError(
            f"Threshold {name}={value:g} must be a share above 0 and {bound}; give e.g. {example}."
        )


@dataclass(frozen=True)
class Alert:
    """One alerting rule, and the name of the RUNBOOK.md section that answers it."""

    name: str
    expr: str
    hold: str
    severity: str
    summary: str
    description: str

    @property
    def anchor(self) -> str:
        """The section's anchor as GitHub and most Markdown renderers make it."""
        return self.name.lower()

    def rule(self, runbook_url: str) -> dict[str, object]:
        out: dict[str, object] = {"alert": self.name, "expr": self.expr}
        if self.hold != "0s":
            out["for"] = self.hold
        out["labels"] = {"severity": self.severity}
        out["annotations"] = {
            "summary": self.summary,
            "description": self.description,
            "runbook_url": f"{runbook_url}#{self.anchor}",
        }
        return out


def _rate(selector: str, by: str) -> str:
    return f"sum by ({_BY}, {by}) (rate({selector}[5m]))"


def _appeared_or_increased(selector: str, by: str) -> str:
    """Counts that went up in the last ``_RECENT``, including a series whose first sample was
    already above 0 (prometheus_client creates a label set at its first increment, which
    ``increase`` alone never sees)."""
    recent = f"{selector} unless {selector} offset {_RECENT}"
    return (
        f"sum by ({_BY}, {by}) (increase({selector}[{_RECENT}])) > 0\n"
        f"or\nsum by ({_BY}, {by}) ({recent}) > 0"
    )


def serving_alerts(t: AlertThresholds) -> list[Alert]:
    infer = f'route=~"{INFERENCE_ROUTES}"'
    requests = f"modelyard_requests_total{{{infer}}}"
    errors = f'modelyard_requests_total{{{infer},status=~"5.."}}'
    return [
        Alert(
            name="ModelyardErrorRatioHigh",
            expr=(f"{_rate(errors, 'model')}\n/\n{_rate(requests, 'model')}\n> {t.error_ratio:g}"),
            hold="5m",
            severity="critical",
            summary="{{ $labels.model }} answers {{ $value | humanizePercentage }} of its "
            "predictions with a server error.",
            description=(
                "Over the last 5 minutes {{ $value | humanizePercentage }} of the inference "
                "requests to {{ $labels.model }} (job {{ $labels.job }}) got a 5xx answer; the "
                f"threshold is {t.error_ratio:.4g} ({t.error_ratio * 100:.4g}%)."
            ),
        ),
        Alert(
            name="ModelyardLatencyP99High",
            expr=(
                "histogram_quantile(0.99,\n"
                f"  {_rate(f'modelyard_request_seconds_bucket{{{infer}}}', 'model, le')}\n"
                f") > {t.p99_ms / 1000:g}"
            ),
            hold="10m",
            severity="warning",
            summary="{{ $labels.model }} answers its slowest 1% of predictions in more than "
            f"{t.p99_ms:g} ms.",
            description=(
                "The 99th percentile of the inference request time of {{ $labels.model }} "
                "(job {{ $labels.job }}) has been {{ $value | humanize }}s over 5 minutes for "
                f"10 minutes; the threshold is {t.p99_ms:g} ms."
            ),
        ),
        Alert(
            name="ModelyardQueueSaturated",
            expr=(f"max by ({_BY}, instance, model) (modelyard_queue_depth)\n>= {t.queue_depth:g}"),
            hold="2m",
            severity="warning",
            summary="{{ $labels.model }}'s batching queue on {{ $labels.instance }} is "
            f"{t.queue_saturation * 100:.4g}% full or more.",
            description=(
                "{{ $value | humanize }} requests wait for a batch of {{ $labels.model }} on "
                f"{{{{ $labels.instance }}}}; past {t.max_queue} (serving.max_queue) the server "
                "refuses new ones with 503. The alert fires at "
                f"{t.queue_depth:g} ({t.queue_saturation * 100:.4g}%)."
            ),
        ),
        Alert(
            name="ModelyardModelLoadFailed",
            expr=_appeared_or_increased(
                'modelyard_model_loads_total{result="failed"}', "model, version"
            ),
            hold="0s",
            severity="warning",
            summary="Version {{ $labels.version }} of {{ $labels.model }} failed to load.",
            description=(
                "A server of job {{ $labels.job }} could not load version {{ $labels.version }} "
                f"of {{{{ $labels.model }}}} in the last {_RECENT}; it keeps serving the version "
                "it had."
            ),
        ),
    ]


def monitoring_alerts(t: AlertThresholds) -> list[Alert]:
    return [
        Alert(
            name="ModelyardDriftShareHigh",
            expr=f"max by ({_BY}, deployment) (modelyard_drift_share)\n>= {t.drift_share:g}",
            hold="10m",
            severity="warning",
            summary="{{ $value | humanizePercentage }} of {{ $labels.deployment }}'s input "
            "columns drifted.",
            description=(
                "In the monitoring window of {{ $labels.deployment }} (job {{ $labels.job }}) "
                "{{ $value | humanizePercentage }} of the input columns drifted from the "
                f"reference data; the threshold is {t.drift_share * 100:.4g}%."
            ),
        ),
        Alert(
            name="ModelyardPredictionLogBacklog",
            expr=(
                f"sum by ({_BY}, instance) (modelyard_prediction_log_backlog_rows)\n"
                f"> {t.log_backlog_rows}"
            ),
            hold="10m",
            severity="warning",
            summary="{{ $labels.instance }} holds {{ $value | humanize }} prediction-log rows "
            "it could not upload.",
            description=(
                "The prediction log of {{ $labels.instance }} (job {{ $labels.job }}) has kept "
                f"more than {t.log_backlog_rows} rows spooled on local disk for 10 minutes: "
                "the object store is slow or failing."
            ),
        ),
        Alert(
            name="ModelyardPredictionLogUploadsFailing",
            expr=(f"{_rate('modelyard_prediction_log_upload_failures_total', 'instance')}\n> 0"),
            hold="10m",
            severity="warning",
            summary="{{ $labels.instance }} keeps failing to upload its prediction log.",
            description=(
                "Uploads of the prediction log from {{ $labels.instance }} (job {{ $labels.job }})"
                " have failed for 10 minutes; rows wait on local disk and are retried."
            ),
        ),
        Alert(
            name="ModelyardPredictionsDropped",
            expr=_appeared_or_increased("modelyard_prediction_log_dropped_total", "instance"),
            hold="0s",
            severity="warning",
            summary="{{ $labels.instance }} dropped predictions from its log.",
            description=(
                "The prediction log of {{ $labels.instance }} (job {{ $labels.job }}) was full "
                f"in the last {_RECENT} and dropped records: drift and performance miss them."
            ),
        ),
    ]


def alert_groups(t: AlertThresholds) -> list[tuple[str, list[Alert]]]:
    return [
        ("modelyard-serving", serving_alerts(t)),
        ("modelyard-monitoring", monitoring_alerts(t)),
    ]
