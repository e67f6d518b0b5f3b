"""Built-in steps around models (exported by ``modelyard.pipelines.builtin``).

- ``validate(table, reference)``: the table passes the constraints inferred from a reference
  table: the same columns and types the server enforces (the reference's signature), numeric
  ranges, allowed categories and null rates. Returns the table, so later steps depend on it; a
  breach fails the step listing each problem.
- ``evaluate(model, table, target, slices=())``: metrics of a fitted model on a labelled table
  (accuracy, precision, recall, f1, roc_auc, log_loss for classifiers; mae, rmse, r2 for
  regressors), per slice as ``metric[column=value]``; logged as the step's metrics.
- ``register(model, table, name, target, metrics=None, alias=None)``: a new version of ``name``
  (signature, profile and lineage from ``table``); returns ``"name/N"``. A cache hit returns the
  version the cached run registered, so a rerun registers nothing twice.
- ``gate(candidate, data, target, metrics, baseline=None, markdown=None)``: ``yard gate`` as a
  step; returns the candidate when it passes, so ``deploy_canary(gate(...), ...)`` waits for it;
  a failed gate fails the step (``GateFailedError``) and the steps after it do not run.
- ``deploy_canary(candidate, deployment, weight=10)``: starts ``candidate`` as the canary of an
  existing deployment (or creates the deployment with it as stable; nothing when it is already
  the stable version); returns the deployment.

Steps that read or write the registry use the run's registry (``current_step().registry()``), or
the default one when called outside a pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidInputError
from modelyard.pipelines.context import current_step, log_metrics
from modelyard.pipelines.steps import step

if TYPE_CHECKING:
    import pandas as pd

    from modelyard.registry import Registry

__all__ = ["deploy_canary", "evaluate", "gate", "register", "validate"]

#: A column's null share may exceed the reference's by this much before validation fails.
NULL_RATE_SLACK = 0.05
_CLASSIFICATION = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
_REGRESSION = ("mae", "rmse", "r2")


@contextmanager
def _registry() -> Iterator[Registry]:
    context = current_step()
    if context is None:
        from modelyard._api import get_registry

        yield get_registry()
        return
    registry = context.registry()
    try:
        yield registry
    finally:
        registry.close()


@step
def validate(table: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """``table`` if it meets the constraints of ``reference``, else ``InvalidInputError``."""
    problems = constraint_problems(table, reference)
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise InvalidInputError(
            f"The table breaks {len(problems)} constraint(s) of its reference: {shown}. Fix the "
            "data or update the reference."
        )
    return table


def constraint_problems(table: pd.DataFrame, reference: pd.DataFrame) -> list[str]:
    """Every way ``table`` breaks the constraints inferred from ``reference``."""
    from modelyard.core.profile import column_kind, numeric_values
    from modelyard.core.signature import column_dtype

    problems = []
    missing = [str(c) for c in reference.columns if c not in table.columns]
    extra = [str(c) for c in table.columns if c not in reference.columns]
    if missing:
        problems.append(f"missing columns {', '.join(map(repr, missing))}")
    if extra:
        problems.append(f"unexpected columns {', '.join(map(repr, extra))}")
    for name in (c for c in reference.columns if c in table.columns):
        expected, found = column_dtype(reference[name]), column_dtype(table[name])
        kind, found_kind = column_kind(expected), column_kind(found)
        if kind != found_kind and not (kind == "numeric" and found_kind == "bool"):
            problems.append(f"{name!r} is {found} where the reference has {expected}")
            continue
        reference_nulls = float(reference[name].isna().mean()) if len(reference) else 0.0
        nulls = float(table[name].isna().mean()) if len(table) else 0.0
        if nulls > reference_nulls + NULL_RATE_SLACK:
            problems.append(
                f"{name!r} is {nulls:.1%} null where the reference is {reference_nulls:.1%}"
            )
        if kind in ("numeric", "datetime"):
            ref_values, values = numeric_values(reference[name]), numeric_values(table[name])
            low, high = _bounds(ref_values), _bounds(values)
            if low is not None and high is not None and (high[0] < low[0] or high[1] > low[1]):
                problems.append(
                    f"{name!r} spans [{high[0]:.6g}, {high[1]:.6g}] outside the reference's "
                    f"[{low[0]:.6g}, {low[1]:.6g}]"
                )
        elif kind == "categorical":
            allowed = set(reference[name].dropna().astype(str))
            unknown = sorted(set(table[name].dropna().astype(str)) - allowed)
            if unknown:
                problems.append(
                    f"{name!r} has categories the reference lacks: "
                    f"{', '.join(map(repr, unknown[:5]))}"
                )
    return problems


def _bounds(values: Any) -> tuple[float, float] | None:
    import numpy as np

    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else None


@step
def evaluate(
    model: Any, table: pd.DataFrame, target: str, slices: Sequence[str] = ()
) -> dict[str, float]:
    """Metrics of ``model`` on ``table`` (overall, and per value of each slice column)."""
    import numpy as np

    from modelyard.pipelines import _metrics

    for column in (target, *slices):
        if column not in table.columns:
            raise InvalidInputError(
                f"Column {column!r} is not in the evaluation table; its columns are: "
                f"{', '.join(map(str, table.columns))}."
            )
    X = table.drop(columns=[target, *[s for s in slices if s != target]])
    truth = table[target].to_numpy()
    predicted = np.asarray(model.predict(X))
    classes = getattr(model, "classes_", None)
    if classes is not None:
        proba = model.predict_proba(X) if hasattr(model, "predict_proba") else None
        outputs = _metrics.classification_outputs(list(truth), predicted, proba, list(classes))
        names = [
            m for m in _CLASSIFICATION if proba is not None or m not in ("roc_auc", "log_loss")
        ]
    else:
        outputs = _metrics.regression_outputs(truth, predicted)
        names = list(_REGRESSION)
    masks = [("", np.ones(len(table), dtype=bool))]
    for column in slices:
        for value in sorted(table[column].dropna().unique().tolist(), key=str):
            masks.append((f"[{column}={value}]", (table[column] == value).to_numpy()))
    metrics: dict[str, float] = {}
    for suffix, rows in masks:
        for name in names:
            value, _ = _metrics.score(name, outputs, rows)
            if value is not None and math.isfinite(value):
                metrics[f"{name}{suffix}"] = float(value)
    log_metrics(metrics)
    return metrics


@step
def register(
    model: Any,
    table: pd.DataFrame,
    name: str,
    *,
    target: str | None = None,
    metrics: dict[str, float] | None = None,
    alias: str | None = None,
    convert: str | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Register ``model`` as the next version of ``name``; returns ``"name/N"``. ``convert="onnx"``
    keeps an ONNX twin (checked against the model) for the server and batch scoring. ``tags``
    go on the version (``feast_training_data``'s ``tags`` declare its Feast feature service)."""
    X = table.drop(columns=[target]) if target is not None else table
    y = table[target] if target is not None else None
    context = current_step()
    tags = dict(tags or {})
    if context:
        tags.update(pipeline=context.pipeline, pipeline_run=context.run_id)
    with _registry() as registry:
        version = registry.register(
            model, name=name, data=X, target=y, metrics=dict(metrics or {}), tags=tags,
            run=context.run_id if context else None,
            convert=convert,  # type: ignore[arg-type]  # checked by the registry
        )  # fmt: skip
        if alias is not None:
            registry.set_alias(version.ref, alias, reason="registered by a pipeline")
    return version.ref


@step
def gate(
    candidate: str,
    data: pd.DataFrame,
    target: str,
    *,
    metrics: Sequence[str],
    baseline: str | None = None,
    markdown: str | None = None,
) -> str:
    """The quality gate (``yard gate``) as a step: returns ``candidate`` when it passes (feed it
    to ``deploy_canary``, which then waits for the gate), fails the step when it does not."""
    from modelyard.pipelines.gate import gate_step

    with _registry() as registry:
        result = gate_step(
            registry, candidate=candidate, baseline=baseline, data=data, target=target,
            thresholds=list(metrics), markdown=markdown, fail_on_breach=True,
        )  # fmt: skip
    log_metrics(
        {
            m.metric + (f"[{m.slice_column}={m.slice_value}]" if m.slice_column else ""): (
                m.candidate
            )
            for m in result.results
            if m.candidate is not None
        }
    )
    return result.candidate_version


@step(cache=False)
def deploy_canary(candidate: str, deployment: str, weight: float = 10.0) -> str:
    """Start ``candidate`` as the canary of ``deployment`` (created with it as stable if new)."""
    from modelyard.errors import DeploymentNotFoundError
    from modelyard.rollout import deploy, get_deployment, start_candidate

    with _registry() as registry:
        try:
            current = get_deployment(registry.db, deployment)
        except DeploymentNotFoundError:
            deploy(registry, deployment, model_ref=candidate, reason="deployed by a pipeline")
            return deployment
        version = registry.get_version(candidate)
        if (current.stable_model, current.stable_version) != (version.name, version.version):
            start_candidate(registry, deployment, ref=version.ref, mode="canary", weight=weight)
    return deployment
