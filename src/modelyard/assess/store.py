"""What the registry and the metadata store know about the assessed model: its version
(signature, input example, profile, lineage, metrics), alias history, deployments and their
events, alert rules and incidents, prediction logs and labels, retraining loops, pipeline runs'
steps and attestations. Reads only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from modelyard.assess.attest import Attestation, list_attestations
from modelyard.errors import AliasNotFoundError, VersionNotFoundError
from modelyard.store.schema import run_steps, runs

if TYPE_CHECKING:
    from modelyard.core.types import AliasEvent, ModelVersion
    from modelyard.registry import Registry
    from modelyard.registry.checks import VersionCheck
    from modelyard.rollout.types import Deployment, DeploymentEvent
    from modelyard.settings import AlertRule, LoopPolicy, Settings

__all__ = ["StepSeen", "StoreFacts", "label_delay", "logged", "read_store"]

_RUNS_READ = 200


@dataclass(frozen=True, slots=True)
class StepSeen:
    """A pipeline step recorded in a run: ``function`` is ``module:qualname``."""

    run_id: str
    pipeline: str | None
    name: str
    function: str
    #: Metrics per slice were logged (``metric[column=value]``: a gate or evaluate with slices).
    sliced: bool = False


@dataclass(frozen=True, slots=True)
class StoreFacts:
    database: str
    artifact_root: str
    models: tuple[str, ...]
    model: str | None
    version: ModelVersion | None
    alias_events: tuple[AliasEvent, ...]
    checks: tuple[VersionCheck, ...]
    deployments: tuple[Deployment, ...]
    deployment: Deployment | None
    deployment_events: tuple[DeploymentEvent, ...]
    rules: tuple[AlertRule, ...]  # every configured rule
    log_on: bool
    drop_columns: tuple[str, ...]
    hash_columns: tuple[str, ...]
    predictions: bool
    labels: bool
    firing: tuple[str, ...]  # rules of the deployment firing now
    #: Median seconds from a prediction to its label, and how many labelled predictions.
    label_delay: tuple[float | None, int]
    loops: dict[str, LoopPolicy]
    steps: tuple[StepSeen, ...]
    attestations: tuple[Attestation, ...]

    def deployment_rules(self) -> tuple[AlertRule, ...]:
        if self.deployment is None:
            return ()
        return tuple(r for r in self.rules if r.deployment == self.deployment.name)

    def loop(self) -> LoopPolicy | None:
        return None if self.deployment is None else self.loops.get(self.deployment.name)


def read_store(
    registry: Registry,
    settings: Settings,
    *,
    model: str | None = None,
    deployment: str | None = None,
) -> StoreFacts:
    """The facts for ``model`` and ``deployment`` (each checked when given: an unknown name
    raises ``ModelNotFoundError`` / ``DeploymentNotFoundError``); when not given, the model of
    the first deployment, else the most recently changed model, and a deployment serving it."""
    from modelyard.rollout.queries import get_deployment, history, list_deployments

    db = registry.db
    chosen_deployment = get_deployment(db, deployment) if deployment is not None else None
    if model is not None:
        registry.get_model(model)
    all_deployments = tuple(list_deployments(db))
    names = tuple(m.name for m in registry.list_models(page_size=1000).items)
    if model is None:
        if chosen_deployment is not None:
            model = chosen_deployment.stable_model
        elif all_deployments:
            model = all_deployments[0].stable_model
        elif names:
            model = names[0]
    if chosen_deployment is None and model is not None:
        chosen_deployment = next(
            (d for d in all_deployments if model in (d.stable_model, d.candidate_model)), None
        )
    version = _version(registry, model, chosen_deployment)
    root = settings.resolved_log_root
    served = chosen_deployment.name if chosen_deployment is not None else None
    return StoreFacts(
        database=db.display_url,
        artifact_root=settings.resolved_artifact_root,
        models=names,
        model=model,
        version=version,
        alias_events=tuple(registry.history(model, limit=200)) if model else (),
        checks=tuple(registry.checks(version.ref, limit=5)) if version else (),
        deployments=all_deployments,
        deployment=chosen_deployment,
        deployment_events=tuple(history(db, served, limit=200)) if served else (),
        rules=tuple(settings.monitoring.alerts.rules),
        log_on=settings.monitoring.log,
        drop_columns=tuple(settings.monitoring.drop_columns),
        hash_columns=tuple(settings.monitoring.hash_columns),
        predictions=_has(root, f"deployment={served}", "*/*.parquet") if served else False,
        labels=_labelled(root, served) if served else False,
        firing=_firing(registry, served),
        label_delay=label_delay(root, served) if served and _labelled(root, served) else (None, 0),
        loops=dict(settings.loops),
        steps=_steps(registry),
        attestations=tuple(list_attestations(db, model=model)),
    )


def _version(
    registry: Registry, model: str | None, deployment: Deployment | None
) -> ModelVersion | None:
    if model is None:
        return None
    if deployment is not None and deployment.stable_model == model:
        return registry.get_version(deployment.stable_ref)
    try:
        return registry.get_version(f"{model}@production")
    except (AliasNotFoundError, VersionNotFoundError):
        pass
    try:
        return registry.get_version(model)
    except VersionNotFoundError:
        return None


def _has(root: str, folder: str, pattern: str) -> bool:
    return logged(root, folder, pattern) is True


def logged(root: str, folder: str, pattern: str = "*/*.parquet") -> bool | None:
    """Whether ``folder`` of the prediction log root holds files matching ``pattern`` (for the
    log of a deployment: ``deployment=NAME``); ``None`` for object storage, which is not listed
    here (it would need credentials and time)."""
    if "://" in root and not root.startswith("file://"):
        return None
    base = Path(root.removeprefix("file://")) / folder
    return base.is_dir() and any(base.glob(pattern))


def _labelled(root: str, deployment: str) -> bool:
    return _has(root, f"labels/deployment={deployment}", "*.parquet")


def label_delay(root: str, deployment: str) -> tuple[float | None, int]:
    """The median time from a logged prediction to its label (the label's ``time``: when the
    outcome was observed, or its ingest), in seconds, over every labelled prediction of
    ``deployment``; and their count. ``(None, 0)`` when no label matches a prediction."""
    import duckdb

    from modelyard.monitoring.labels import latest_labels_sql, prediction_files_sql

    predictions = prediction_files_sql(root, deployment)
    query = (
        "SELECT median(epoch(l.time) - epoch(p.time)), count(*) "
        f"FROM ({latest_labels_sql(root, deployment)}) l "
        f"JOIN read_parquet({predictions}, union_by_name = true) p "
        'ON l.request_id = p.request_id AND l."row" = p."row"'
    )
    try:
        with duckdb.connect() as conn:
            median, count = conn.execute(query).fetchone() or (None, 0)
    except duckdb.Error:  # no prediction file yet, or files of an older layout
        return None, 0
    return (float(median) if median is not None else None), int(count)


def _firing(registry: Registry, deployment: str | None) -> tuple[str, ...]:
    if deployment is None:
        return ()
    from modelyard.monitoring.alerts import alert_history

    incidents = alert_history(registry.db, deployment=deployment, firing=True, limit=50)
    return tuple(sorted({i.rule for i in incidents}))


def _steps(registry: Registry) -> tuple[StepSeen, ...]:
    """The steps of the latest runs (at most ``_RUNS_READ``), one entry per pipeline and step
    function."""
    latest = sa.select(runs.c.id).order_by(runs.c.start_time.desc()).limit(_RUNS_READ).subquery()
    query = (
        sa.select(
            run_steps.c.run_id,
            runs.c.name,
            run_steps.c.name,
            run_steps.c.function,
            run_steps.c.metrics,
        )
        .join(runs, runs.c.id == run_steps.c.run_id)
        .where(run_steps.c.run_id.in_(sa.select(latest.c.id)))
        .order_by(runs.c.start_time.desc())
    )
    seen: dict[tuple[str | None, str], StepSeen] = {}
    with registry.db.read() as conn:
        for run_id, pipeline, name, function, metrics in conn.execute(query):
            sliced = any("[" in key for key in metrics or {})
            seen.setdefault(
                (pipeline, function), StepSeen(run_id, pipeline, name, function, sliced)
            )
    return tuple(seen.values())
