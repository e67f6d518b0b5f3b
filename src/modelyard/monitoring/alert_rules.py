"""Alert rules (``[[monitoring.alerts.rules]]``): what a rule may say, checked before anything
runs. ``validate_rules`` turns the settings' rules into ``ParsedRule``s or raises a one-line
``ConfigError`` naming the rule, the field, the bad value and the fix; ``rule_warnings`` names
what a rule says that is ignored (an unknown key), which ``yard monitor check`` prints and a
server logs at start."""

from __future__ import annotations

import difflib
import math
import operator
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from modelyard.core.durations import parse_duration
from modelyard.errors import ConfigError, InvalidInputError
from modelyard.monitoring.notify import redact
from modelyard.settings import AlertRule

__all__ = [
    "ESTIMATED_METRICS", "OUTCOME_METRICS", "PERFORMANCE_METRICS", "Op", "ParsedRule",
    "rule_warnings", "validate_rules",
]  # fmt: skip

Op = Literal[">", ">=", "<", "<="]
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_SIMPLE_METRICS = (
    "drift_share", "error_rate", "p50_latency_ms", "p99_latency_ms", "rows",
    "reconstruction_error",
)  # fmt: skip
#: The metrics a ``performance:<metric>`` rule may name.
PERFORMANCE_METRICS = (
    "accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "mae", "rmse", "r2",
)  # fmt: skip
#: Business outcomes of the window's predictions (``monitoring.outcomes``).
OUTCOME_METRICS = ("outcome:mean", "outcome:sum", "outcome:count")
_METRIC_FORMS = (
    "drift_share, drift:<column>, null_drift:<column>, output_drift:<name>, error_rate, "
    "p50_latency_ms, "
    "p99_latency_ms, rows, performance:<metric>, estimated:<metric>, reconstruction_error or "
    "outcome:<mean|sum|count>"
)
#: The metrics an ``estimated:<metric>`` rule may name (performance estimated without labels).
ESTIMATED_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
_NAME_MAX = 128  # alert_states.rule and the deployment columns


@dataclass(frozen=True, slots=True)
class ParsedRule:
    """A checked rule: durations in seconds, webhooks as a tuple."""

    name: str
    deployment: str
    metric: str
    op: Op
    threshold: float
    window: str  # as written, e.g. "1h"
    window_s: float
    hold: str
    hold_s: float
    webhooks: tuple[str, ...] = ()
    command: str | None = None

    @property
    def span(self) -> timedelta:
        return timedelta(seconds=self.window_s)

    def holds(self, value: float) -> bool:
        """Whether ``value`` breaches the rule (``metric op threshold``)."""
        return _OPS[self.op](value, self.threshold)


def validate_rules(rules: Sequence[AlertRule], *, webhooks: Sequence[str] = ()) -> list[ParsedRule]:
    """Every rule checked (and the settings-wide ``webhooks``); the first problem raises a
    ``ConfigError`` naming the rule, the field, the bad value and the fix."""
    parsed: list[ParsedRule] = []
    seen: dict[str, int] = {}
    for index, rule in enumerate(rules):
        where = f"Alert rule {rule.name!r} (monitoring.alerts.rules[{index}])"
        if rule.name in seen:
            raise ConfigError(
                f"{where}: the name is already used by rules[{seen[rule.name]}]; give each rule "
                "its own name."
            )
        seen[rule.name] = index
        parsed.append(_parse_rule(rule, where, index))
    for index, url in enumerate(webhooks):
        if not _is_http_url(url):
            raise ConfigError(
                f"Alert webhook monitoring.alerts.webhooks[{index}] {redact(url)!r} is not an "
                "http(s) URL; use e.g. https://hooks.example.com/alerts."
            )
    return parsed


def rule_warnings(rules: Sequence[AlertRule]) -> list[str]:
    """One line per key of a rule that no rule takes (a typo: the rule still runs, with that
    key's default), naming the rule, the key and the key it was probably meant to be."""
    keys = [f.alias or name for name, f in AlertRule.model_fields.items()]
    lines = []
    for index, rule in enumerate(rules):
        for key in rule.model_extra or {}:
            close = difflib.get_close_matches(key, keys, n=1)
            meant = f"did you mean {close[0]!r}? " if close else ""
            lines.append(
                f"Alert rule {rule.name!r} (monitoring.alerts.rules[{index}]): unknown key "
                f"{key!r} is ignored; {meant}a rule takes {', '.join(keys)}."
            )
    return lines


def _parse_rule(rule: AlertRule, where: str, index: int) -> ParsedRule:
    def bad(problem: str) -> ConfigError:
        return ConfigError(f"{where}: {problem}")

    if not rule.name.strip():
        raise ConfigError(
            f"Alert rule monitoring.alerts.rules[{index}]: the name is blank; give the rule a "
            'name, e.g. name = "churn-drift".'
        )
    if len(rule.name) > _NAME_MAX:
        raise bad(f"the name is longer than {_NAME_MAX} characters; use a shorter name.")
    if not rule.deployment.strip() or len(rule.deployment) > _NAME_MAX:
        raise bad(
            f"deployment {rule.deployment[:40]!r} is not a deployment name; use the name the "
            "deployment is served under."
        )
    problem = _metric_problem(rule.metric)
    if problem:
        raise bad(problem)
    if rule.op not in _OPS:
        raise bad(f"op {rule.op!r} is not a comparator; use >, >=, < or <=.")
    if not math.isfinite(rule.threshold):
        raise bad(f"threshold {rule.threshold!r} is not a finite number; use e.g. threshold = 0.3.")
    window_s = _seconds(rule.window)
    if window_s is None:
        raise bad(
            f'window {rule.window!r} is not a duration; use e.g. window = "15m", "1h" or "1d".'
        )
    if window_s <= 0:
        raise bad(f'window {rule.window!r} is empty; use a positive duration such as "1h".')
    hold_s = _seconds(rule.hold)
    if hold_s is None:
        raise bad(
            f'for = {rule.hold!r} is not a duration; use e.g. for = "5m" (or "0s" to fire on the '
            "first breach)."
        )
    for number, url in enumerate(rule.webhooks):
        if not _is_http_url(url):
            raise bad(
                f"webhooks[{number}] {redact(url)!r} is not an http(s) URL; use e.g. "
                "https://hooks.example.com/alerts."
            )
    if rule.command is not None and not rule.command.strip():
        raise bad("command is blank; remove it or give a shell command to run when it fires.")
    return ParsedRule(
        name=rule.name, deployment=rule.deployment, metric=rule.metric, op=rule.op,
        threshold=float(rule.threshold), window=rule.window, window_s=window_s, hold=rule.hold,
        hold_s=hold_s, webhooks=tuple(dict.fromkeys(rule.webhooks)), command=rule.command,
    )  # fmt: skip


#: The metric kinds that name a column or an output (``kind:<name>``): what the name is, and
#: an example.
_NAMED_METRICS = {
    "drift": ("column", "drift:age (a column's drift score)"),
    "null_drift": (
        "column",
        "null_drift:age (the p-value of a change in the column's share of nulls)",
    ),
    "output_drift": ("output", "output_drift:predict"),
}


def _metric_problem(metric: str) -> str | None:
    if metric in _SIMPLE_METRICS or metric in OUTCOME_METRICS:
        return None
    kind, sep, name = metric.partition(":")
    if not sep or kind not in (*_NAMED_METRICS, "performance", "estimated", "outcome"):
        return f"metric {metric!r} is unknown; use {_METRIC_FORMS}."
    if kind in _NAMED_METRICS and not name.strip():
        what, example = _NAMED_METRICS[kind]
        return f"metric {metric!r} names no {what}; use e.g. {example}."
    if kind == "outcome":
        return f"metric {metric!r}: use outcome:mean, outcome:sum or outcome:count."
    if kind == "performance" and name not in PERFORMANCE_METRICS:
        return (
            f"metric {metric!r}: {name!r} is not a performance metric; use one of "
            f"{', '.join(PERFORMANCE_METRICS)}."
        )
    if kind == "estimated" and name not in ESTIMATED_METRICS:
        return (
            f"metric {metric!r}: {name!r} is not an estimated metric; use one of "
            f"{', '.join(ESTIMATED_METRICS)}."
        )
    return None


def _seconds(text: str) -> float | None:
    """Seconds from a duration (``90s``, ``5m``, ``1h30m``...); ``None`` when it does not parse."""
    try:
        return parse_duration(text)
    except InvalidInputError:
        return None


def _is_http_url(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises ValueError when the port is not a port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)
