"""The Grafana dashboard of ``yard observability``: Grafana's JSON model (schemaVersion 39,
Grafana 10.4 and later import it), on a ``${datasource}`` Prometheus variable.

Panels read the metrics ``yard serve`` exports. ``$model`` filters what carries a ``model``
label (a deployment's requests count under the deployment's name, its batching and compute under
its models' names), ``$deployment`` what carries a ``deployment`` label (the drift gauges of a
model served without a deployment carry its name), ``$route`` a deployment's routes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelyard.deploy._alerts import INFERENCE_ROUTES, AlertThresholds

SCHEMA_VERSION = 39
UID = "modelyard-serving"
_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
_INFER = f'route=~"{INFERENCE_ROUTES}"'
_MODEL = 'model=~"$model"'
_DEPLOYMENT = 'deployment=~"$deployment"'
_ROUTE = 'route=~"$route"'
_WINDOW = "$__rate_interval"
_WIDTH = 24


@dataclass
class Panel:
    title: str
    description: str
    #: (PromQL, legend) per target
    targets: list[tuple[str, str]]
    unit: str
    width: int = 8
    #: A red line at this value (the matching alert's threshold), if any.
    threshold: float | None = None
    extra: dict[str, object] = field(default_factory=dict)


def _rate(metric: str, selector: str, by: str) -> str:
    return f"sum by ({by}) (rate({metric}{{{selector}}}[{_WINDOW}]))"


def _quantile(q: float, metric: str, selector: str, by: str) -> str:
    return f"histogram_quantile({q}, {_rate(f'{metric}_bucket', selector, f'{by}, le')})"


def _ratio(errors: str, total: str) -> str:
    """``errors / total``, 0 where ``total`` has traffic and no error series exists yet."""
    return f"({errors} or {total} * 0) / {total}"


def _sections(t: AlertThresholds) -> list[tuple[str, list[Panel]]]:
    infer = f"{_INFER},{_MODEL}"
    requests = "modelyard_requests_total"
    by_model = "model"
    route_sel = f"{_DEPLOYMENT},{_ROUTE}"
    by_route = "deployment, route"
    return [
        ("Traffic", [
            Panel(
                "Request rate",
                "Inference requests answered per second, by model (a deployment counts under its "
                "name) and status.",
                [(_rate(requests, infer, "model, status"), "{{model}} {{status}}")],
                "reqps",
            ),
            Panel(
                "Error ratio",
                "Share of inference requests answered with a server error (5xx; the alert's "
                "red line) and with a client error (4xx: bad input, unknown model, no token).",
                [
                    (_ratio(_rate(requests, f'{infer},status=~"5.."', by_model),
                            _rate(requests, infer, by_model)), "{{model}} 5xx"),
                    (_ratio(_rate(requests, f'{infer},status=~"4.."', by_model),
                            _rate(requests, infer, by_model)), "{{model}} 4xx"),
                ],
                "percentunit", threshold=t.error_ratio,
            ),
            Panel(
                "Latency p50 / p99",
                "Whole request time, receive to last byte sent, from the server's histogram.",
                [
                    (_quantile(0.5, "modelyard_request_seconds", infer, by_model),
                     "{{model}} p50"),
                    (_quantile(0.99, "modelyard_request_seconds", infer, by_model),
                     "{{model}} p99"),
                ],
                "s", threshold=t.p99_ms / 1000,
            ),
        ]),
        ("Batching and models", [
            Panel(
                "Queue wait p50 / p99",
                "Time a request waited for its batch to start.",
                [
                    (_quantile(0.5, "modelyard_queue_wait_seconds", _MODEL, by_model),
                     "{{model}} p50"),
                    (_quantile(0.99, "modelyard_queue_wait_seconds", _MODEL, by_model),
                     "{{model}} p99"),
                ],
                "s", width=6,
            ),
            Panel(
                "Queue depth",
                "Requests waiting for a batch, per server (the alert's line is "
                f"{t.queue_saturation:.0%} of max_queue {t.max_queue}).",
                [(f"max by (instance, model) (modelyard_queue_depth{{{_MODEL}}})",
                  "{{model}} {{instance}}")],
                "short", width=6, threshold=t.queue_depth,
            ),
            Panel(
                "Batch size",
                "Rows per model call: the mean and the 99th percentile.",
                [
                    (f"{_rate('modelyard_batch_rows_sum', _MODEL, by_model)} / "
                     f"{_rate('modelyard_batch_rows_count', _MODEL, by_model)}", "{{model}} mean"),
                    (_quantile(0.99, "modelyard_batch_rows", _MODEL, by_model), "{{model}} p99"),
                ],
                "short", width=6,
            ),
            Panel(
                "Model compute p50 / p99",
                "Model time per batch.",
                [
                    (_quantile(0.5, "modelyard_model_compute_seconds", _MODEL, by_model),
                     "{{model}} p50"),
                    (_quantile(0.99, "modelyard_model_compute_seconds", _MODEL, by_model),
                     "{{model}} p99"),
                ],
                "s", width=6,
            ),
            Panel(
                "CPU used by model",
                "CPU-seconds per second (cores) each model version used: its thread's time on "
                "batches and the event loop's on its requests; 'yard monitor cost' turns it "
                "into CPU-seconds and money per 1,000 predictions.",
                [(_rate("modelyard_model_cpu_seconds_total", _MODEL, "model, version"),
                  "{{model}}/{{version}}")],
                "short", width=12,
            ),
            Panel(
                "Model memory",
                "Resident memory each loaded model version took (its growth while it loaded), "
                "summed over servers.",
                [(f"sum by (model, version) (modelyard_model_memory_bytes{{{_MODEL}}})",
                  "{{model}}/{{version}}")],
                "bytes", width=12,
            ),
            Panel(
                "Model loads",
                "Loads since each server started, by version and result; a failed one is a "
                "version the server could not swap to (it kept serving the one it had).",
                [(f"sum by (model, version, result) (modelyard_model_loads_total{{{_MODEL}}})",
                  "{{model}}/{{version}} {{result}}")],
                "short", width=_WIDTH, extra={"lineInterpolation": "stepAfter"},
            ),
        ]),
        ("Rollout: stable vs candidate", [
            Panel(
                "Route request rate",
                "Requests each route of a deployment answered, by version.",
                [(_rate("modelyard_route_requests_total", route_sel, f"{by_route}, version"),
                  "{{deployment}} {{route}} v{{version}}")],
                "reqps",
            ),
            Panel(
                "Route error ratio",
                "Share of a route's tries that failed, as the rollout controller counts them "
                "(a candidate failure answered by stable counts against the candidate).",
                [(_ratio(_rate("modelyard_route_errors_total", route_sel, by_route),
                         _rate("modelyard_route_seconds_count", route_sel, by_route)),
                  "{{deployment}} {{route}}")],
                "percentunit",
            ),
            Panel(
                "Route latency p99",
                "99th percentile of the time each route's model took for a request.",
                [(_quantile(0.99, "modelyard_route_seconds", route_sel, by_route),
                  "{{deployment}} {{route}}")],
                "s",
            ),
        ]),
        ("Drift and the prediction log", [
            Panel(
                "Drift share",
                "Share of input columns drifted in the monitoring window (refreshed every "
                "monitoring.drift.interval_s by a server logging predictions).",
                [(f"max by (deployment) (modelyard_drift_share{{{_DEPLOYMENT}}})",
                  "{{deployment}}")],
                "percentunit", threshold=t.drift_share,
            ),
            Panel(
                "Drift score per column",
                "Each input and output column's drift score: a p-value for ks and chi2 (small "
                "is drift), a distance or PSI otherwise (large is drift).",
                [
                    (f"max by (deployment, column) (modelyard_drift_score{{{_DEPLOYMENT}}})",
                     "{{deployment}} {{column}}"),
                    (f"max by (deployment, output) "
                     f"(modelyard_output_drift_score{{{_DEPLOYMENT}}})",
                     "{{deployment}} output {{output}}"),
                ],
                "short",
            ),
            Panel(
                "Prediction-log backlog",
                "Rows spooled on local disk waiting for the object store, upload failures and "
                "records dropped because the log's queue was full.",
                [
                    ("sum by (instance) (modelyard_prediction_log_backlog_rows)",
                     "{{instance}} backlog rows"),
                    ("sum by (instance) (rate(modelyard_prediction_log_upload_failures_total"
                     f"[{_WINDOW}]))", "{{instance}} upload failures/s"),
                    ("sum by (instance) (rate(modelyard_prediction_log_dropped_total"
                     f"[{_WINDOW}]))", "{{instance}} dropped/s"),
                ],
                "short", threshold=float(t.log_backlog_rows),
            ),
        ]),
    ]  # fmt: skip


def build_dashboard(thresholds: AlertThresholds) -> dict[str, object]:
    panels: list[dict[str, object]] = []
    ids = iter(range(1, 1000))
    y = 0
    for title, section in _sections(thresholds):
        panels.append({
            "type": "row", "id": next(ids), "title": title, "collapsed": False, "panels": [],
            "gridPos": {"h": 1, "w": _WIDTH, "x": 0, "y": y},
        })  # fmt: skip
        y += 1
        x = 0
        for panel in section:
            if x + panel.width > _WIDTH:
                x, y = 0, y + 8
            panels.append(_panel(panel, next(ids), x=x, y=y))
            x += panel.width
        y += 8
    return {
        "id": None,
        "uid": UID,
        "title": "modelyard serving",
        "description": "Requests, latency, batching, rollouts, drift and the prediction log of "
        "modelyard servers (yard observability).",
        "tags": ["modelyard"],
        "timezone": "",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "links": [],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {"list": _variables()},
        "panels": panels,
    }


def _panel(panel: Panel, panel_id: int, *, x: int, y: int) -> dict[str, object]:
    steps: list[dict[str, object]] = [{"color": "green", "value": None}]
    if panel.threshold is not None:
        steps.append({"color": "red", "value": panel.threshold})
    custom: dict[str, object] = {
        "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
        "spanNulls": False,
        "thresholdsStyle": {"mode": "line" if panel.threshold is not None else "off"},
    }  # fmt: skip
    custom.update(panel.extra)
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": dict(_DATASOURCE),
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {
                "unit": panel.unit,
                "min": 0,
                "custom": custom,
                "thresholds": {"mode": "absolute", "steps": steps},
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": dict(_DATASOURCE),
                "editorMode": "code",
                "expr": expr,
                "legendFormat": legend,
                "range": True,
            }
            for i, (expr, legend) in enumerate(panel.targets)
        ],
    }


def _variables() -> list[dict[str, object]]:
    out: list[dict[str, object]] = [{
        "name": "datasource", "label": "Data source", "type": "datasource",
        "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "regex": "",
        "options": [],
    }]  # fmt: skip
    for name, label, query in (
        ("model", "Model", 'label_values({__name__=~"modelyard_.+"}, model)'),
        ("deployment", "Deployment", 'label_values({__name__=~"modelyard_.+"}, deployment)'),
        ("route", "Route",
         'label_values(modelyard_route_seconds_count{deployment=~"$deployment"}, route)'),
    ):  # fmt: skip
        out.append({
            "name": name, "label": label, "type": "query", "datasource": dict(_DATASOURCE),
            "query": query, "definition": query,
            "refresh": 2, "multi": True, "includeAll": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [], "regex": "", "sort": 1, "hide": 0,
        })  # fmt: skip
    return out
