"""The built-in ``tune`` step: an Optuna study over a scikit-learn style estimator.

``tune(table, target, estimator, space, n_trials=20, ...)`` samples ``n_trials`` configurations
of ``estimator`` (an estimator object, or its ``"module.Class"`` name, with ``fixed`` parameters)
from ``space`` (see ``modelyard.pipelines._space``), scores each by ``cv``-fold cross-validation
(``scoring``: a scikit-learn scorer name, greater is better; the estimator's own ``score`` when
left out) and returns the best configuration's model, fitted on the whole table, so that it
flows on to ``evaluate`` and ``register`` like any trained model.

- Each trial is a run of its own (``yard runs list --name <study>``), nested under the pipeline
  run by its ``modelyard.parent_run`` tag, with the sampled params, each fold's score, and (when
  it completes) its model in the artifact store (``modelyard.artifact`` tag: the sha256).
- Pruning (``pruner="median"``, the default): after each fold the running mean score is
  reported, and Optuna's ``MedianPruner`` stops a trial that is below the median of earlier
  trials at that fold. ``pruner="none"`` runs every fold.
- ``parallel`` trials at once: in threads of the step's process (``backend="local"``; scikit-
  learn's tree ensembles release the GIL while they fit), or as Ray tasks (``backend="ray"``,
  each asking ``trial_resources``, one CPU by default, of the cluster the step runs on; a local
  Ray is started when there is none). Workers share the study through its storage.
- A trial that raises is recorded as failed and the study goes on; when no trial completes the
  step fails with one line naming the study and the last error.
- The study (``study``: its name; default ``<pipeline>.<step>.<run id>``) is kept in Optuna's
  RDB storage beside the metadata database (``modelyard.pipelines._study``); an existing study of
  that name is continued.

Needs the ``tune`` extra (``pip install 'modelyard[tune]'``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidInputError, PipelineError
from modelyard.pipelines import _space, _study
from modelyard.pipelines.context import current_step, log_metrics
from modelyard.pipelines.resources import check_capacity, clean_resources, ray_options
from modelyard.pipelines.steps import step

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["tune"]

BACKENDS = ("local", "ray")
PRUNERS = ("median", "none")


def check_params(params: Mapping[str, Any]) -> None:
    """The constant parameters of a ``tune`` node, checked before the pipeline runs."""
    if "space" in params:
        _space.parse_space(params["space"])
    _check_numbers(**{k: params[k] for k in ("n_trials", "cv", "parallel") if k in params})
    _check_choice("backend", params.get("backend", "local"), BACKENDS)
    _check_choice("pruner", params.get("pruner", "median"), PRUNERS)
    clean_resources(params.get("trial_resources"), owner="The tune step's trials")


@step(check=check_params)
def tune(
    table: pd.DataFrame,
    target: str,
    estimator: Any,
    space: dict[str, Any],
    *,
    fixed: dict[str, Any] | None = None,
    n_trials: int = 20,
    cv: int = 3,
    scoring: str | None = None,
    parallel: int = 1,
    backend: str = "local",
    pruner: str = "median",
    trial_resources: dict[str, float] | None = None,
    seed: int = 0,
    study: str | None = None,
) -> Any:
    """The best of ``n_trials`` configurations of ``estimator`` from ``space``, refitted on all
    rows of ``table``; see the module."""
    check_params({"space": space, "backend": backend, "pruner": pruner,
                  "trial_resources": trial_resources})  # fmt: skip
    _check_numbers(n_trials=n_trials, cv=cv, parallel=parallel)
    if target not in table.columns:
        raise InvalidInputError(
            f"Target column {target!r} is not in the table; its columns are: "
            f"{', '.join(map(str, table.columns))}."
        )
    dimensions = _space.parse_space(space)
    model = _space.resolve_estimator(estimator, fixed or {}, dimensions)
    optuna = _study.import_optuna()
    _study.make_scorer(scoring, model)
    plan = _plan(study, model, dimensions, cv=cv, scoring=scoring, seed=seed, pruner=pruner)
    with _study.open_storage(plan.database_url) as storage:
        optuna.create_study(
            study_name=plan.study, storage=storage, direction="maximize", load_if_exists=True
        )
    X, y = table.drop(columns=[target]), table[target]
    print(f"study {plan.study!r}: {n_trials} trials, {parallel} at a time ({backend})")
    if backend == "ray":
        resources = clean_resources(trial_resources, owner="The tune step's trials")
        _on_ray(plan, X, y, n_trials=n_trials, parallel=parallel, resources=resources)
    else:
        _study.optimize(plan, X, y, n_trials=n_trials, threads=parallel, worker=0)
    return _best_model(plan)


def _plan(
    name: str | None,
    model: Any,
    dimensions: tuple[_space.Dimension, ...],
    *,
    cv: int,
    scoring: str | None,
    seed: int,
    pruner: str,
) -> _study.TrialPlan:
    context = current_step()
    if context is not None:
        database_url, artifact_root = context.database_url, context.artifact_root
        identity, parent = context.identity, context.run_id
        default = f"{context.pipeline}.{context.step}.{context.run_id}"
        trusted: tuple[str, ...] = ()
    else:
        from modelyard._api import get_registry

        registry = get_registry()
        database_url = registry.settings.resolved_database_url
        artifact_root = registry.artifacts.root
        identity, parent, default = registry.identity, None, f"tune.{uuid.uuid4().hex}"
        trusted = tuple(registry.settings.trusted_types)
    if database_url is None:
        from modelyard.settings import Settings

        database_url = Settings().resolved_database_url
    return _study.TrialPlan(
        study=name or default, database_url=database_url, artifact_root=artifact_root,
        identity=identity or "unknown", parent_run=parent, step=context.step if context else "tune",
        estimator=model, space=dimensions, cv=cv, scoring=scoring, seed=seed, pruner=pruner,
        trusted_types=trusted,
    )  # fmt: skip


def _on_ray(
    plan: _study.TrialPlan,
    X: Any,
    y: Any,
    *,
    n_trials: int,
    parallel: int,
    resources: dict[str, float],
) -> None:
    """``parallel`` Ray tasks share the trials; each runs its share one after the other."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "tune(backend='ray') needs Ray; install it with pip install 'modelyard[ray]'."
        ) from exc
    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False, log_to_driver=False)
    try:
        check_capacity(resources, owner="The tune step's trials")
        make_remote: Any = ray.remote  # Ray's stubs type only functions without arguments
        remote = make_remote(_study.optimize).options(max_retries=0, **ray_options(resources))
        shares = [n_trials // parallel + (i < n_trials % parallel) for i in range(parallel)]
        data = ray.put(X), ray.put(y)
        refs = [
            remote.remote(plan, *data, n_trials=share, threads=1, worker=worker)
            for worker, share in enumerate(shares)
            if share
        ]
        ray.get(refs)
    finally:
        if started:
            ray.shutdown()


def _best_model(plan: _study.TrialPlan) -> Any:
    from modelyard.pipelines.artifacts import decode_value
    from modelyard.store.artifacts import ArtifactStore

    optuna = _study.import_optuna()
    with _study.open_storage(plan.database_url) as storage:
        study = optuna.load_study(study_name=plan.study, storage=storage)
        trials = study.get_trials(deepcopy=False)
    states = optuna.trial.TrialState
    kept = (states.COMPLETE, states.PRUNED, states.FAIL)
    counts = {s: sum(t.state == s for t in trials) for s in kept}
    complete = [t for t in trials if t.state == states.COMPLETE and "artifact" in t.user_attrs]
    if not complete:
        raise PipelineError(
            f"No trial of study {plan.study!r} completed ({counts[states.FAIL]} failed, "
            f"{counts[states.PRUNED]} pruned; last error: {_last_error(trials)}); see "
            f"'yard runs list --name {plan.study}'."
        )
    best = max(complete, key=lambda t: t.value if t.value is not None else float("-inf"))
    log_metrics(
        best_score=float(best.value or 0.0), best_trial=best.number,
        trials_complete=counts[states.COMPLETE], trials_pruned=counts[states.PRUNED],
        trials_failed=counts[states.FAIL],
    )  # fmt: skip
    print(f"best trial {best.number}: score {best.value:.6g} with {best.params}")
    artifact = best.user_attrs["artifact"]
    label = f"the model of trial {best.number} of study {plan.study!r}"
    data = ArtifactStore(plan.artifact_root).get(artifact["sha256"], label=label)
    return decode_value(
        data, kind=artifact["kind"], format=artifact["format"], meta=artifact["meta"],
        label=label, trusted_types=plan.trusted_types,
    )  # fmt: skip


def _last_error(trials: list[Any]) -> str:
    errors = [t.user_attrs["error"] for t in trials if "error" in t.user_attrs]
    return str(errors[-1]) if errors else "none recorded"


def _check_numbers(**values: Any) -> None:
    lowest = {"n_trials": 1, "cv": 2, "parallel": 1}
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < lowest[name]:
            raise InvalidInputError(
                f"tune's {name} must be a whole number of at least {lowest[name]}, got {value!r}."
            )


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidInputError(
            f"tune's {name} {value!r} is unknown; use {' or '.join(map(repr, choices))}."
        )
