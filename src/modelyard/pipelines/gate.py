"""Quality gates: is a candidate model version good enough, on its own and against a baseline?

``gate`` scores a candidate and an optional baseline version on the same labelled data, overall
and per slice, and checks each ``MetricThreshold``; ``render_markdown`` turns the result into a
pull-request comment. ``yard gate`` is the command line, ``gate_step`` the pipeline-step form.

Thresholds mean what MLflow's ``MetricThreshold`` means (``threshold``, ``min_absolute_change``,
``min_relative_change``, ``greater_is_better``), with one difference: the relative change is taken
against ``|baseline|``. MLflow divides by the raw baseline, so an improvement over a negative
baseline (R², a log-likelihood) comes out negative and fails: R² from -0.5 to -0.2 is
(-0.2 + 0.5) / -0.5 = -60 % for MLflow and +60 % here.

With ``c`` the candidate's value, ``b`` the baseline's and ``Δ = c - b``, a metric passes when
every bound it is given holds:

=========================  =================  =================
bound                      greater is better  lower is better
=========================  =================  =================
``threshold=t``            c ≥ t              c ≤ t
``min_absolute_change=a``  Δ ≥ a              Δ ≤ -a
``min_relative_change=r``  Δ / |b| ≥ r        Δ / |b| ≤ -r
=========================  =================  =================

- A zero baseline has no relative change: the relative bound holds when the candidate is better
  (or equal, with ``r ≤ 0``), as if the change were +∞, 0 or -∞. That is MLflow's fallback.
- ``a`` and ``r`` may be negative: a tolerated regression (``min_relative_change=-0.01``: at most
  1 % worse than the baseline). Values equal to a bound within a relative 1e-9 meet it.
- ``greater_is_better`` is known for every metric (``METRICS``): greater for accuracy, precision,
  recall, f1, roc_auc and r2; lower for log_loss, brier, mae, mse, rmse and mape. Giving the
  opposite is an error.
- Change bounds need a baseline; without one only ``threshold`` applies.

Slices: ``slices`` names columns; every gate metric is reported on all rows and on each value of
each slice column (rows whose slice value is missing are in no slice). A threshold applies to all
rows, or with ``slice=COL=VALUE`` to that slice, ``slice=COL`` to every value of COL and
``slice=*`` to all rows and every slice. A value that cannot be computed (a single class for
roc_auc, one row for r2: see ``_metrics``) fails a bound on all rows or on a named slice, and is
reported "n/a" and skipped where a bound covers every value of a column.

Data: a DataFrame or a CSV/Parquet file with the target column (no missing labels). Each model
gets the columns of its signature; a tensor signature (a model trained on an array) gets the
other columns in file order, without the slice columns when those are not features. Input
problems are ``ValidationError``s, raised before a model is loaded except the two only a loaded
model reveals (a regressor's non-numeric target, values its signature refuses); ``yard gate``
maps them to exit 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from modelyard.errors import (
    GateFailedError,
    InvalidInputError,
    InvalidSpecError,
)
from modelyard.pipelines._gate_data import (
    check_target,
    features_for,
    listed,
    read_labelled,
    slice_columns,
)
from modelyard.pipelines._gate_report import (
    COLUMNS,
    check_markdown_path,
    render_markdown,
    requirement,
    result_cells,
    write_markdown,
)
from modelyard.pipelines._metrics import (
    METRICS,
    Check,
    Mask,
    Outputs,
    Task,
    check_bounds,
    score,
    supported,
)

if TYPE_CHECKING:
    import pandas as pd

    from modelyard.core.types import ModelVersion
    from modelyard.registry import Registry
    from modelyard.registry.loaded import LoadedModel

_BOUNDS = ("threshold", "min_absolute_change", "min_relative_change")
_KEYS = (*_BOUNDS, "greater_is_better", "slice")

__all__ = [
    "COLUMNS",
    "Check",
    "GateResult",
    "MetricResult",
    "MetricThreshold",
    "check_markdown_path",
    "gate",
    "gate_step",
    "parse_metric_option",
    "render_markdown",
    "requirement",
    "result_cells",
    "write_markdown",
]


class MetricThreshold(msgspec.Struct, frozen=True, kw_only=True):
    """The bounds one metric must meet (see the module docstring). ``slice``: ``None`` for all
    rows, ``"COL=VALUE"``, ``"COL"`` (every value) or ``"*"`` (all rows and every slice)."""

    metric: str
    threshold: float | None = None
    min_absolute_change: float | None = None
    min_relative_change: float | None = None
    greater_is_better: bool | None = None
    slice: str | None = None

    @property
    def needs_baseline(self) -> bool:
        return self.min_absolute_change is not None or self.min_relative_change is not None


class MetricResult(msgspec.Struct, frozen=True, kw_only=True):
    """One metric on all rows (``slice_column is None``) or on the rows where ``slice_column``
    is ``slice_value`` (as text). ``passed`` is ``None`` when no bound applies; ``note`` says why
    a value is missing."""

    metric: str
    slice_column: str | None
    slice_value: str | None
    rows: int
    greater_is_better: bool
    candidate: float | None
    baseline: float | None
    delta: float | None
    relative_delta: float | None
    checks: tuple[Check, ...]
    passed: bool | None
    note: str | None = None


class GateResult(msgspec.Struct, frozen=True, kw_only=True):
    """A gate's verdict: the refs as given and as resolved, the data, every metric on all rows
    and on each slice (all rows first), and one line per failed check."""

    passed: bool
    task: str
    candidate: str
    candidate_version: str
    baseline: str | None
    baseline_version: str | None
    data: str
    target: str
    rows: int
    slices: tuple[str, ...]
    results: tuple[MetricResult, ...]
    failures: tuple[str, ...]


# -- parsing -----------------------------------------------------------------------------------


def parse_metric_option(text: str) -> MetricThreshold:
    """``"roc_auc:threshold=0.8,min_relative_change=0.01[,slice=region=eu]"`` as a threshold."""
    name, _, rest = text.partition(":")
    name = name.strip()
    if not name or not name.isidentifier():
        raise InvalidSpecError(
            f"--metric {text!r} does not start with a metric name; write it as "
            "METRIC[:threshold=X,min_absolute_change=X,min_relative_change=X,slice=COL=VALUE]."
        )
    values: dict[str, Any] = {}
    for item in rest.split(",") if rest.strip() else ():
        key, sep, value = (part.strip() for part in item.partition("="))
        if key not in _KEYS:
            raise InvalidSpecError(
                f"--metric {text!r} has an unknown option {key!r}; use {', '.join(_KEYS)}."
            )
        if not sep or not value:
            raise InvalidSpecError(f"--metric {text!r}: {key} needs a value, e.g. {key}=0.8.")
        if key in values:
            raise InvalidSpecError(f"--metric {text!r} gives {key} twice; give it once.")
        values[key] = _option_value(text, key, value)
    return MetricThreshold(metric=name, **values)


def _option_value(text: str, key: str, value: str) -> object:
    if key == "slice":
        return value
    if key == "greater_is_better":
        if value.lower() not in ("true", "false"):
            raise InvalidSpecError(f"--metric {text!r}: greater_is_better is true or false.")
        return value.lower() == "true"
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise InvalidSpecError(f"--metric {text!r}: {key}={value!r} is not a finite number.")
    return number


# -- the gate ----------------------------------------------------------------------------------


def gate(
    registry: Registry,
    candidate: str,
    *,
    baseline: str | None,
    data: pd.DataFrame | str | Path,
    target: str,
    thresholds: Sequence[MetricThreshold],
    slices: Sequence[str] = (),
    trust_pickle: bool = False,
) -> GateResult:
    """Score ``candidate`` (and ``baseline``) on ``data`` against ``target`` and check
    ``thresholds``. Everything the user gave is validated before a model is loaded: unknown or
    unsupported metrics, change bounds without a baseline, the file, the target, slice and
    feature columns (``ValidationError`` subclasses, one sentence each)."""
    if not thresholds:
        raise InvalidSpecError("No gate metric given; pass --metric METRIC:threshold=X.")
    for t in thresholds:
        _check_threshold(t, has_baseline=baseline is not None)
    versions = [registry.get_version(candidate)]
    if baseline is not None:
        versions.append(registry.get_version(baseline))
    task = _common_task(versions)
    if task is not None:
        _check_metrics(thresholds, task, versions)
    frame = read_labelled(data)
    check_target(frame, target)
    named = [t.slice.partition("=")[0] for t in thresholds if t.slice and t.slice != "*"]
    columns = slice_columns(frame, slices, named)
    features = [features_for(frame, v, target=target, slices=columns) for v in versions]
    models = [registry.load(v.ref, trust_pickle=trust_pickle) for v in versions]
    task = _common_task(versions, models) or task  # known once loaded, signature or not
    assert task is not None
    _check_metrics(thresholds, task, versions, models)  # again, against the loaded models
    proba = any(METRICS[t.metric].needs_proba for t in thresholds)
    pairs = zip(models, features, strict=True)
    outputs = [_outputs(m, x, frame[target], task, proba) for m, x in pairs]
    scopes = _scopes(frame, columns, thresholds)
    results = tuple(_evaluate(thresholds, outputs, scopes))
    failures = tuple(_failures(results))
    return GateResult(
        passed=not failures,
        task=_describe_task(task, models[0]),
        candidate=candidate,
        candidate_version=versions[0].ref,
        baseline=baseline,
        baseline_version=versions[1].ref if baseline is not None else None,
        data=str(data) if isinstance(data, str | Path) else "DataFrame",
        target=target,
        rows=len(frame),
        slices=tuple(columns),
        results=results,
        failures=failures,
    )


def gate_step(
    registry: Registry,
    *,
    candidate: str,
    baseline: str | None = None,
    data: pd.DataFrame | str | Path,
    target: str,
    thresholds: Sequence[MetricThreshold | str],
    slices: Sequence[str] = (),
    markdown: str | Path | None = None,
    fail_on_breach: bool = True,
    trust_pickle: bool = False,
) -> GateResult:
    """``gate`` as a pipeline step: thresholds may be ``--metric`` strings, the Markdown report
    is written (atomically) when ``markdown`` is given, and a failed gate raises
    ``GateFailedError`` when ``fail_on_breach``."""
    parsed = [parse_metric_option(t) if isinstance(t, str) else t for t in thresholds]
    if markdown is not None:
        check_markdown_path(markdown)
    result = gate(
        registry, candidate, baseline=baseline, data=data, target=target, thresholds=parsed,
        slices=slices, trust_pickle=trust_pickle,
    )  # fmt: skip
    if markdown is not None:
        write_markdown(result, markdown)
    if fail_on_breach and not result.passed:
        shown = "; ".join(result.failures[:3]) + ("; ..." if len(result.failures) > 3 else "")
        against = f" against {result.baseline_version}" if result.baseline_version else ""
        raise GateFailedError(
            f"Gate failed for {result.candidate_version}{against}: {len(result.failures)} "
            f"check(s) failed ({shown}); see the gate report."
        )
    return result


# -- validation --------------------------------------------------------------------------------


def _check_threshold(t: MetricThreshold, *, has_baseline: bool) -> None:
    for key in _BOUNDS:
        value = getattr(t, key)
        if value is not None and not math.isfinite(value):
            raise InvalidSpecError(f"Metric {t.metric!r}: {key}={value} is not a finite number.")
    if t.needs_baseline and not has_baseline:
        key = "min_absolute_change" if t.min_absolute_change is not None else "min_relative_change"
        raise InvalidSpecError(
            f"Metric {t.metric!r} has {key}={getattr(t, key):g} but there is no baseline; pass "
            "--baseline REF or keep only threshold=."
        )
    if t.slice is not None and (not t.slice or t.slice.startswith("=")):
        raise InvalidSpecError(
            f"Metric {t.metric!r} has slice={t.slice!r}; use slice=COL=VALUE, slice=COL or slice=*."
        )


def _task_of(version: ModelVersion, model: LoadedModel | None) -> Task | None:
    if version.signature is not None:
        return "classification" if version.signature.classes is not None else "regression"
    if model is None:
        return None
    return "classification" if model.classes is not None else "regression"


def _common_task(
    versions: Sequence[ModelVersion], models: Sequence[LoadedModel] | None = None
) -> Task | None:
    tasks = [_task_of(v, models[i] if models else None) for i, v in enumerate(versions)]
    if None in tasks:
        return None
    if len(set(tasks)) > 1:
        raise InvalidSpecError(
            f"Candidate {versions[0].ref} is a {_noun(tasks[0])} but baseline {versions[1].ref} "
            f"is a {_noun(tasks[1])}; gate models of one task."
        )
    return tasks[0]


def _noun(task: Task | None) -> str:
    return "classifier" if task == "classification" else "regressor"


def _check_metrics(
    thresholds: Sequence[MetricThreshold],
    task: Task,
    versions: Sequence[ModelVersion],
    models: Sequence[LoadedModel] | None = None,
) -> None:
    names = ", ".join(supported(task))
    for t in thresholds:
        spec = METRICS.get(t.metric)
        if spec is None:
            raise InvalidSpecError(
                f"Unknown gate metric {t.metric!r}; {task} models support {names}."
            )
        if spec.task != task:
            raise InvalidSpecError(
                f"Metric {t.metric!r} is a {spec.task} metric but {versions[0].ref} is a "
                f"{_noun(task)}; use one of {names}."
            )
        if t.greater_is_better is not None and t.greater_is_better != spec.greater_is_better:
            better = "greater" if spec.greater_is_better else "lower"
            raise InvalidSpecError(
                f"Metric {t.metric!r} is better when {better}; drop greater_is_better="
                f"{str(t.greater_is_better).lower()}."
            )
        for i, version in enumerate(versions):
            _check_model_supports(spec.name, version, models[i] if models else None)


def _check_model_supports(metric: str, version: ModelVersion, model: LoadedModel | None) -> None:
    spec = METRICS[metric]
    signature = version.signature
    classes = signature.classes if signature is not None else None
    if model is not None and model.classes is not None:
        classes = tuple(model.classes)
    if spec.binary_only and classes is not None and len(classes) != 2:
        raise InvalidSpecError(
            f"Metric {metric!r} needs a binary classifier but {version.ref} has "
            f"{len(classes)} classes; use log_loss instead."
        )
    if spec.needs_proba:
        if model is not None:
            from modelyard.registry.loaded import LoadedClassifier

            has_proba = isinstance(model, LoadedClassifier)
        elif signature is not None:
            has_proba = any(o.name == "predict_proba" for o in signature.outputs)
        else:
            return  # checked again once loaded
        if not has_proba:
            raise InvalidSpecError(
                f"Metric {metric!r} needs predicted probabilities but {version.ref} has no "
                "predict_proba; use accuracy, precision, recall or f1."
            )


# -- scoring -----------------------------------------------------------------------------------


def _outputs(
    model: LoadedModel, X: pd.DataFrame, truth: pd.Series, task: Task, proba: bool
) -> Outputs:
    import numpy as np
    import pandas as pd

    from modelyard.pipelines._metrics import classification_outputs, regression_outputs
    from modelyard.registry.loaded import LoadedClassifier

    ref = model.version.ref
    predicted = np.asarray(model.predict(X))
    if predicted.ndim > 1 and predicted.shape[1] != 1:
        raise InvalidSpecError(
            f"{ref} predicts {predicted.shape[1]} outputs per row; gates score one output."
        )
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(truth):
            raise InvalidInputError(
                f"The target column {truth.name!r} is not numeric ({truth.dtype}) but {ref} is "
                "a regressor; pass its numeric label column."
            )
        return regression_outputs(truth.to_numpy(dtype=np.float64), predicted.reshape(-1))
    classes = model.classes
    if classes is None and model.signature is not None and model.signature.classes is not None:
        classes = list(model.signature.classes)
    scores = None
    if proba:
        assert isinstance(model, LoadedClassifier)  # checked by _check_model_supports
        scores = np.asarray(model.predict_proba(X))
    return classification_outputs(truth.tolist(), predicted.reshape(-1), scores, classes or [])


def _describe_task(task: Task, model: LoadedModel) -> str:
    if task == "regression":
        return "regression"
    count = len(model.classes or ())
    return "binary classification" if count == 2 else f"classification ({count} classes)"


@dataclass(frozen=True, slots=True)
class _Scope:
    column: str | None
    value: Any
    text: str | None
    rows: Mask


def _scopes(
    frame: pd.DataFrame, columns: Sequence[str], thresholds: Sequence[MetricThreshold]
) -> list[_Scope]:
    import numpy as np

    scopes = [_Scope(None, None, None, np.ones(len(frame), dtype=np.bool_))]
    for column in columns:
        series = frame[column]
        values = list(series.dropna().unique())
        try:
            values.sort()
        except TypeError:
            values.sort(key=str)
        for value in values:
            plain = value.item() if hasattr(value, "item") else value
            mask = (series == value).to_numpy(dtype=np.bool_, na_value=False)
            scopes.append(_Scope(column, plain, str(plain), mask))
    for t in thresholds:
        column, sep, text = (t.slice or "").partition("=")
        if sep and not any(_applies(t, s) == "strict" for s in scopes):
            shown = listed([s.text for s in scopes if s.column == column])
            raise InvalidInputError(
                f"Metric {t.metric!r} names slice {t.slice!r} but column {column!r} has no "
                f"value {text!r} (its values: {shown}); check the slice."
            )
    return scopes


def _applies(t: MetricThreshold, scope: _Scope) -> Literal["strict", "lenient"] | None:
    """Whether a threshold covers a scope: ``strict`` when a missing value fails it."""
    if scope.column is None:
        return "strict" if t.slice in (None, "*") else None
    if t.slice == "*":
        return "lenient"
    if t.slice is None:
        return None
    column, sep, text = t.slice.partition("=")
    if column != scope.column:
        return None
    if not sep:
        return "lenient"
    return "strict" if _same_value(text, scope.value) else None


def _same_value(text: str, value: Any) -> bool:
    if text == str(value):
        return True
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(text) == float(value)
        except ValueError:
            return False
    return isinstance(value, bool) and text.lower() == str(value).lower()


def _evaluate(
    thresholds: Sequence[MetricThreshold], outputs: Sequence[Outputs], scopes: Sequence[_Scope]
) -> list[MetricResult]:
    metrics = list(dict.fromkeys(t.metric for t in thresholds))
    results = []
    for scope in scopes:
        for metric in metrics:
            applying = [(t, _applies(t, scope)) for t in thresholds if t.metric == metric]
            bound = [(t, how) for t, how in applying if how is not None]
            results.append(_metric_result(metric, scope, outputs, bound))
    return results


def _metric_result(
    metric: str,
    scope: _Scope,
    outputs: Sequence[Outputs],
    bound: Sequence[tuple[MetricThreshold, str | None]],
) -> MetricResult:
    better = METRICS[metric].greater_is_better
    candidate, why = score(metric, outputs[0], scope.rows)
    base, base_why = score(metric, outputs[1], scope.rows) if len(outputs) > 1 else (None, None)
    delta = candidate - base if candidate is not None and base is not None else None
    relative = delta / abs(base) if delta is not None and base else None
    note = why or base_why
    checks: list[Check] = []
    for t, how in bound:
        if note is not None and how == "lenient":
            continue  # a slice too small for the metric, under a bound on every slice
        checks.extend(
            check_bounds(
                better, (candidate, why), (base, base_why), threshold=t.threshold,
                min_absolute_change=t.min_absolute_change,
                min_relative_change=t.min_relative_change,
            )
        )  # fmt: skip
    return MetricResult(
        metric=metric, slice_column=scope.column, slice_value=scope.text,
        rows=int(scope.rows.sum()), greater_is_better=better,
        candidate=candidate, baseline=base, delta=delta, relative_delta=relative,
        checks=tuple(checks), passed=all(c.passed for c in checks) if checks else None,
        note=note,
    )  # fmt: skip


def _failures(results: Sequence[MetricResult]) -> list[str]:
    return [
        f"{r.metric} on {_where(r)}: {c.reason}" for r in results for c in r.checks if not c.passed
    ]


def _where(r: MetricResult) -> str:
    return "all rows" if r.slice_column is None else f"{r.slice_column}={r.slice_value}"
