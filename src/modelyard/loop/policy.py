"""A loop's policy (``[loops.NAME]``) checked before anything runs: ``check_policies`` turns the
settings' loops into ``LoopPlan``s or raises a one-line ``ConfigError`` naming the key
(``loops.churn.gate.holdout``), the bad value and the fix."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from modelyard.core.durations import parse_duration
from modelyard.errors import ConfigError, InvalidInputError, ModelyardError
from modelyard.monitoring.alert_rules import ParsedRule, validate_rules
from modelyard.pipelines.gate import MetricThreshold
from modelyard.rollout.specs import candidate_values, to_policy
from modelyard.rollout.types import Policy
from modelyard.settings import AlertRule, LoopPolicy, Settings

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["LoopPlan", "check_policies", "check_policy"]


@dataclass(frozen=True, slots=True)
class LoopPlan:
    """One deployment's checked policy: durations in seconds, the metric trigger as an alert
    rule (read like one), thresholds and the rollout policy as their records."""

    deployment: str
    require_approval: bool
    cooldown_s: float
    alerts: tuple[str, ...]
    metric_rule: ParsedRule | None
    drift_rule: ParsedRule | None
    max_age_s: float | None
    pipeline: str
    params: Mapping[str, Any]
    data_param: str
    training_data: Path | None
    labelled_window_s: float | None
    target: str
    holdout: float
    thresholds: tuple[MetricThreshold, ...]
    mode: str
    steps: tuple[float, ...]
    bake_s: float
    policy: Policy


def check_policies(settings: Settings) -> dict[str, LoopPlan]:
    """Every ``[loops.NAME]`` checked; the first problem raises ``ConfigError``."""
    return {name: check_policy(name, loop, settings) for name, loop in settings.loops.items()}


def check_policy(name: str, loop: LoopPolicy, settings: Settings) -> LoopPlan:
    """``[loops.NAME]`` checked: durations, the trigger's alert names and metric forms, the
    pipeline and data files, the holdout, the gate thresholds and the rollout."""
    key = f"loops.{name}"

    def bad(field: str, problem: str) -> ConfigError:
        return ConfigError(f"Loop setting {key}.{field} {problem}")

    cooldown_s = _duration(loop.cooldown, bad, "cooldown", 'cooldown = "1h"')
    triggers = _triggers(name, loop, settings, bad)
    training_data, window_s = _train(loop, bad)
    gate = loop.gate
    if not math.isfinite(gate.holdout) or not 0 < gate.holdout < 1:
        raise bad(
            "gate.holdout",
            f"= {gate.holdout!r} is outside (0, 1); give the share of the labelled window kept "
            "out of training for the gate, e.g. holdout = 0.3.",
        )
    thresholds = _thresholds(gate.thresholds, bad)
    rollout = _rollout(loop, bad)
    train = loop.train
    return LoopPlan(
        deployment=name, require_approval=loop.require_approval, cooldown_s=cooldown_s,
        **triggers, pipeline=train.pipeline, params=dict(train.params),
        data_param=train.data_param, training_data=training_data, labelled_window_s=window_s,
        target=train.target, holdout=float(gate.holdout), thresholds=thresholds, **rollout,
    )  # fmt: skip


def _triggers(name: str, loop: LoopPolicy, settings: Settings, bad: Any) -> dict[str, Any]:
    key = f"loops.{name}"
    trigger = loop.trigger
    rules = {r.name for r in settings.monitoring.alerts.rules}
    for index, alert in enumerate(trigger.alerts):
        if alert not in rules:
            known = ", ".join(sorted(rules)) or "none"
            raise bad(
                f"trigger.alerts[{index}]",
                f"= {alert!r} names no alert rule (rules: {known}); use the name of a "
                "[[monitoring.alerts.rules]] rule or add one.",
            )
    if (trigger.metric is None) != (trigger.below is None):
        given = "metric" if trigger.metric is not None else "below"
        missing = "below" if given == "metric" else "metric"
        raise bad(
            f"trigger.{given}",
            f"is given without trigger.{missing}; give both (e.g. metric = "
            '"performance:accuracy" and below = 0.85) or neither.',
        )
    metric_rule = None
    if trigger.metric is not None and trigger.below is not None:
        if not math.isfinite(trigger.below):
            raise bad("trigger.below", f"= {trigger.below!r} is not a finite number; use 0.85.")
        metric_rule = _rule(
            key, name, metric=trigger.metric, op="<", threshold=trigger.below,
            window=trigger.window,
        )  # fmt: skip
    drift_rule = None
    if trigger.drift_share is not None:
        if not 0 < trigger.drift_share <= 1:
            raise bad(
                "trigger.drift_share",
                f"= {trigger.drift_share!r} is outside (0, 1]; use the share of drifting "
                "columns, e.g. 0.5.",
            )
        drift_rule = _rule(
            key, name, metric="drift_share", op=">=", threshold=trigger.drift_share,
            window=settings.monitoring.drift.window,
        )  # fmt: skip
    max_age_s = None
    if trigger.max_age is not None:
        max_age_s = _duration(trigger.max_age, bad, "trigger.max_age", 'max_age = "30d"')
    return {
        "alerts": tuple(trigger.alerts), "metric_rule": metric_rule, "drift_rule": drift_rule,
        "max_age_s": max_age_s,
    }  # fmt: skip


def _train(loop: LoopPolicy, bad: Any) -> tuple[Path | None, float | None]:
    train = loop.train
    _check_pipeline(train.pipeline, bad)
    if not train.data_param.isidentifier():
        raise bad(
            "train.data_param",
            f"= {train.data_param!r} is not a parameter name; name the pipeline parameter that "
            'takes the training table\'s path, e.g. data_param = "data".',
        )
    _check_params(train.pipeline, {**train.params, train.data_param: "train.parquet"}, bad)
    training_data = None
    if train.training_data is not None:
        training_data = Path(train.training_data)
        if not training_data.is_file():
            raise bad(
                "train.training_data",
                f"= {train.training_data!r}: no such file; give a CSV or Parquet file (relative "
                "to the working directory) or remove the key.",
            )
        if training_data.suffix.lower() not in (".csv", ".parquet", ".pq"):
            raise bad(
                "train.training_data",
                f"= {train.training_data!r} is not a .csv or .parquet file; convert it.",
            )
    window_s = None
    if train.labelled_window is not None:
        window_s = _duration(
            train.labelled_window, bad, "train.labelled_window", 'labelled_window = "7d"'
        )
    if training_data is None and not window_s:
        raise bad(
            "train",
            "has nothing to train on; give training_data (a file) and/or labelled_window "
            '(e.g. "7d" of logged predictions with labels).',
        )
    if not train.target.strip():
        raise bad("train.target", 'is blank; name the label column, e.g. target = "target".')
    return training_data, window_s


def _rollout(loop: LoopPolicy, bad: Any) -> dict[str, Any]:
    rollout = loop.rollout
    if rollout.mode == "ab":
        raise bad(
            "rollout.mode",
            '= \'ab\' needs a sticky key the loop does not set; use mode = "canary" or "shadow".',
        )
    try:
        checked = candidate_values(
            mode=rollout.mode, weight=None, sticky_header=None, sticky_field=None, sample=1.0,
            steps=rollout.steps if rollout.mode != "shadow" else None, bake_s=rollout.bake,
            policy=rollout.policy,
        )  # fmt: skip
    except ModelyardError as exc:
        field = _rollout_field(str(exc))
        raise bad(f"rollout.{field}", f"is invalid: {exc}") from None
    return {
        "mode": checked["mode"], "steps": tuple(checked["steps"]), "bake_s": checked["bake_s"],
        "policy": to_policy(rollout.policy),
    }  # fmt: skip


def _duration(text: str, bad: Any, field: str, example: str) -> float:
    try:
        return parse_duration(text)
    except InvalidInputError:
        raise bad(field, f"= {text!r} is not a duration; use e.g. {example}.") from None


def _rule(
    key: str, name: str, *, metric: str, op: str, threshold: float, window: str
) -> ParsedRule:
    """The trigger as an alert rule, checked by the alert rules' own checks (so every metric
    form an alert rule accepts is accepted here)."""
    rule = AlertRule(
        name=f"loop:{name}", deployment=name, metric=metric, op=op,
        threshold=threshold, window=window,
    )  # fmt: skip
    try:
        return validate_rules([rule])[0]
    except ConfigError as exc:
        _, _, problem = str(exc).partition("): ")
        field = "window" if problem.startswith("window") else "metric"
        if metric == "drift_share" and field == "window":
            raise ConfigError(
                f"Loop setting monitoring.drift.window (the drift trigger of {key}): {problem}"
            ) from None
        raise ConfigError(f"Loop setting {key}.trigger.{field}: {problem}") from None


def _check_pipeline(target: str, bad: Any) -> None:
    from modelyard.pipelines.loader import split_target

    path, _ = split_target(target)
    if path.suffix != ".py":
        raise bad(
            "train.pipeline",
            f"= {target!r} is not a Python file; give the pipeline as FILE.py or FILE.py:NAME.",
        )
    if not path.is_file():
        raise bad(
            "train.pipeline",
            f"= {target!r}: no such file; give the pipeline file (FILE.py or FILE.py:NAME) "
            "relative to the working directory.",
        )


def _check_params(target: str, params: dict[str, Any], bad: Any) -> None:
    """The pipeline loads (its file is imported, as 'yard run' does) and takes ``params``."""
    from modelyard.pipelines.loader import load_pipeline
    from modelyard.pipelines.tracing import PipelineDef

    try:
        found = load_pipeline(target)
        if not isinstance(found, PipelineDef):
            raise bad(
                "train.pipeline",
                f"= {target!r} is a built Pipeline, which takes no parameters; define it with "
                "@pipeline so that it takes the training table's path.",
            )
        found.resolve_params(params)
    except ModelyardError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise bad("train.pipeline", f"= {target!r}: {exc}") from None


def _thresholds(values: list[dict[str, Any]], bad: Any) -> tuple[MetricThreshold, ...]:
    from modelyard.pipelines._metrics import METRICS

    if not values:
        raise bad(
            "gate.thresholds",
            'is empty; give at least one, e.g. [{ metric = "accuracy", min_absolute_change = 0 }].',
        )
    out = []
    for index, value in enumerate(values):
        unknown = sorted(set(value) - set(MetricThreshold.__struct_fields__))
        try:
            if unknown:
                raise msgspec.ValidationError(f"unknown key {unknown[0]!r}")
            threshold = msgspec.convert(value, MetricThreshold, strict=False)
        except msgspec.ValidationError as exc:
            raise bad(
                f"gate.thresholds[{index}]",
                f"is invalid ({exc}); use the keys of yard gate's --metric: metric, threshold, "
                "min_absolute_change, min_relative_change, greater_is_better, slice.",
            ) from None
        if threshold.metric not in METRICS:
            raise bad(
                f"gate.thresholds[{index}].metric",
                f"= {threshold.metric!r} is not a gate metric; use one of "
                f"{', '.join(sorted(METRICS))}.",
            )
        out.append(threshold)
    return tuple(out)


def _rollout_field(message: str) -> str:
    lowered = message.lower()
    for word, field in (("policy", "policy"), ("mode", "mode"), ("duration", "bake")):
        if word in lowered:
            return field
    return "steps"
