"""``promtool test rules`` cases for the bundle's alerts, made for the thresholds it was made with.

Each alert gets input series for a target that should fire and one that should not (just past
and well short of its threshold), evaluated before its ``for`` has passed (pending: nothing) and
after; the expected annotations are rendered here from the same templates, so a template that
names a label the expression drops shows up as a failed test.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from modelyard.deploy._alerts import Alert, AlertThresholds, alert_groups
from modelyard.serving.metrics import LATENCY_BUCKETS

_JOB = "modelyard"
_QUANTILE = 0.99
_PER_MINUTE = 1000.0
_TEMPLATE = re.compile(r"{{\s*(.*?)\s*}}")

Labels = dict[str, str]
Firing = list[tuple[Labels, float | None]]
#: A test's input series and its checks: (eval time, what fires then).
Case = tuple[list[dict[str, str]], list[tuple[str, Firing]]]


def rule_tests(
    thresholds: AlertThresholds, *, rules_file: str, runbook_url: str
) -> dict[str, object]:
    """The whole test file; ``rule_files`` names ``rules_file`` (beside it)."""
    makers: dict[str, Callable[[AlertThresholds], Case]] = {
        "ModelyardErrorRatioHigh": _error_ratio,
        "ModelyardLatencyP99High": _latency,
        "ModelyardQueueSaturated": _queue,
        "ModelyardModelLoadFailed": _load_failed,
        "ModelyardDriftShareHigh": _drift,
        "ModelyardPredictionLogBacklog": _backlog,
        "ModelyardPredictionLogUploadsFailing": _uploads,
        "ModelyardPredictionsDropped": _dropped,
    }
    tests = []
    for _, alerts in alert_groups(thresholds):
        for alert in alerts:
            series, checks = makers[alert.name](thresholds)
            evals = [_check(alert, at, firing, runbook_url) for at, firing in checks]
            tests.append({
                "name": alert.name, "interval": "1m", "input_series": series,
                "alert_rule_test": evals,
            })  # fmt: skip
    return {"rule_files": [rules_file], "evaluation_interval": "1m", "tests": tests}


def _series(name: str, labels: Labels, values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def _check(
    alert: Alert, at: str, firing: list[tuple[Labels, float | None]], runbook_url: str
) -> dict[str, object]:
    """An ``alert_rule_test``: at ``at`` exactly ``firing`` fire (their labels, ``$value``)."""
    expected = []
    for labels, value in firing:
        annotations = {
            "summary": render(alert.summary, labels, value),
            "description": render(alert.description, labels, value),
            "runbook_url": f"{runbook_url}#{alert.anchor}",
        }
        expected.append(
            {"exp_labels": labels | {"severity": alert.severity}, "exp_annotations": annotations}
        )
    return {"eval_time": at, "alertname": alert.name, "exp_alerts": expected}


def _num(value: float) -> str:
    return repr(float(value))


def _error_ratio(t: AlertThresholds) -> Case:
    bad_share, good_share = min(1.0, 2 * t.error_ratio), t.error_ratio / 2
    series = []
    for model, share in (("bad", bad_share), ("good", good_share)):
        base = {"job": _JOB, "model": model, "protocol": "http", "route": "v2_infer"}
        errors = share * _PER_MINUTE
        series.append(_series("modelyard_requests_total", base | {"status": "200"},
                              f"0+{_num(_PER_MINUTE - errors)}x40"))  # fmt: skip
        series.append(_series("modelyard_requests_total", base | {"status": "500"},
                              f"0+{_num(errors)}x40"))  # fmt: skip
    # a client's mistakes (4xx) and a probe's 503 are not the model's server errors
    good = {"job": _JOB, "model": "good", "protocol": "http"}
    series.append(_series("modelyard_requests_total", good | {"route": "v2_infer",
                          "status": "422"}, f"0+{_num(10 * _PER_MINUTE)}x40"))  # fmt: skip
    series.append(_series("modelyard_requests_total", good | {"route": "ready",
                          "status": "503"}, f"0+{_num(10 * _PER_MINUTE)}x40"))  # fmt: skip
    labels = {"job": _JOB, "model": "bad"}
    return series, [
        ("3m", []),  # pending: for 5m
        ("10m", [(labels, bad_share)]),
    ]


def _latency(t: AlertThresholds) -> Case:
    """All of a model's requests in one bucket: the slow one's starts at or past the threshold,
    the fast one's ends at or below it."""
    bounds = list(LATENCY_BUCKETS)
    limit_s = t.p99_ms / 1000
    slow = next(i for i, b in enumerate(bounds) if b >= limit_s) + 1  # the bucket above it
    fast = max(i for i, b in enumerate(bounds) if b <= limit_s)
    series = []
    for model, bucket in (("slow", slow), ("fast", fast)):
        for i, bound in enumerate([*bounds, math.inf]):
            labels = {"job": _JOB, "le": "+Inf" if bound == math.inf else repr(bound),
                      "model": model, "protocol": "http", "route": "v2_infer"}  # fmt: skip
            step = _PER_MINUTE if i >= bucket else 0.0
            series.append(_series("modelyard_request_seconds_bucket", labels,
                                  f"0+{_num(step)}x40"))  # fmt: skip
    if slow < len(bounds):
        lower, upper = bounds[slow - 1], bounds[slow]
        value = lower + (upper - lower) * _QUANTILE
    else:  # the +Inf bucket: Prometheus answers the largest finite bound
        value = bounds[-1]
    labels = {"job": _JOB, "model": "slow"}
    return series, [
        ("5m", []),  # pending: for 10m
        ("15m", [(labels, value)]),
    ]


def _queue(t: AlertThresholds) -> Case:
    full, calm = math.ceil(t.queue_depth), math.floor(t.queue_depth / 2)
    base = {"instance": "replica-a:8000", "job": _JOB}
    series = [
        _series("modelyard_queue_depth", base | {"model": "busy"}, f"{full}x20"),
        _series("modelyard_queue_depth", base | {"model": "calm"}, f"{calm}x20"),
    ]
    return series, [
        ("1m", []),  # pending: for 2m
        ("5m", [(base | {"model": "busy"}, float(full))]),
    ]


def _load_failed(t: AlertThresholds) -> Case:
    """``new`` fails its first load at 20m (the series appears at 1); ``again`` fails a second
    time at 30m; ``fine`` only loads. Before 15m every series is new to the rule (it compares
    with 15 minutes ago), so the checks start after."""
    base = {"job": _JOB, "result": "failed"}
    new = {"job": _JOB, "model": "churn", "version": "2"}
    again = {"job": _JOB, "model": "fraud", "version": "7"}
    series = [
        _series(
            "modelyard_model_loads_total", base | {"model": "churn", "version": "2"}, "_x19 1x40"
        ),
        _series(
            "modelyard_model_loads_total", base | {"model": "fraud", "version": "7"}, "1x29 2x30"
        ),
        _series(
            "modelyard_model_loads_total",
            {"job": _JOB, "model": "fine", "result": "ok", "version": "1"},
            "1x60",
        ),
    ]
    return series, [
        ("17m", []),
        ("21m", [(new, None)]),
        ("31m", [(new, None), (again, None)]),
        ("40m", [(again, None)]),
        ("50m", []),
    ]


def _drift(t: AlertThresholds) -> Case:
    base = {"instance": "replica-a:8000", "job": _JOB}
    series = [
        _series(
            "modelyard_drift_share", base | {"deployment": "drifted"}, f"{_num(t.drift_share)}x30"
        ),
        _series(
            "modelyard_drift_share",
            base | {"deployment": "steady"},
            f"{_num(t.drift_share / 2)}x30",
        ),
    ]
    labels = {"deployment": "drifted", "job": _JOB}
    return series, [
        ("5m", []),  # pending: for 10m
        ("15m", [(labels, t.drift_share)]),
    ]


def _backlog(t: AlertThresholds) -> Case:
    behind = {"instance": "replica-a:8000", "job": _JOB}
    series = [
        _series("modelyard_prediction_log_backlog_rows", behind, f"{t.log_backlog_rows + 1}x30"),
        _series(
            "modelyard_prediction_log_backlog_rows",
            behind | {"instance": "replica-b:8000"},
            f"{t.log_backlog_rows // 2}x30",
        ),
    ]
    return series, [
        ("5m", []),  # pending: for 10m
        ("15m", [(behind, float(t.log_backlog_rows + 1))]),
    ]


def _uploads(t: AlertThresholds) -> Case:
    failing = {"instance": "replica-a:8000", "job": _JOB}
    series = [
        _series("modelyard_prediction_log_upload_failures_total", failing, "0+1x40"),
        _series("modelyard_prediction_log_upload_failures_total",
                failing | {"instance": "replica-b:8000"}, "0x40"),
    ]  # fmt: skip
    return series, [
        ("5m", []),  # pending: for 10m
        ("15m", [(failing, None)]),
    ]


def _dropped(t: AlertThresholds) -> Case:
    full = {"instance": "replica-a:8000", "job": _JOB}
    series = [
        _series("modelyard_prediction_log_dropped_total", full, "0x10 5x30"),
        _series("modelyard_prediction_log_dropped_total",
                full | {"instance": "replica-b:8000"}, "0x40"),
    ]  # fmt: skip
    return series, [
        ("5m", []),
        ("12m", [(full, None)]),
        ("35m", []),  # the drop is older than 15 minutes
    ]


def render(template: str, labels: Labels, value: float | None) -> str:
    """An annotation as Prometheus renders it, for the few template forms the rules use:
    ``$labels.NAME`` and ``$value`` piped to ``humanize`` or ``humanizePercentage``."""

    def one(match: re.Match[str]) -> str:
        expr = match.group(1)
        if expr.startswith("$labels."):
            return labels.get(expr.removeprefix("$labels."), "")
        if value is None:
            raise ValueError(f"{template!r} needs the alert's value")
        if expr == "$value | humanize":
            return humanize(value)
        if expr == "$value | humanizePercentage":
            return f"{_go_g(value * 100)}%"
        raise ValueError(f"no rendering here for {{{{ {expr} }}}} in {template!r}")

    return _TEMPLATE.sub(one, template)


def humanize(value: float) -> str:
    """Prometheus' ``humanize``: 4 significant digits with an SI prefix (``995m``, ``10k``)."""
    if value == 0 or not math.isfinite(value):
        return _go_g(value)
    prefix = ""
    if abs(value) >= 1:
        for p in "kMGTPEZY":
            if abs(value) < 1000:
                break
            prefix, value = p, value / 1000
    else:
        for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
            if abs(value) >= 1:
                break
            prefix, value = p, value * 1000
    return f"{_go_g(value)}{prefix}"


def _go_g(value: float) -> str:
    """Go's ``%.4g`` (Python's matches it for finite numbers)."""
    return f"{value:.4g}"
