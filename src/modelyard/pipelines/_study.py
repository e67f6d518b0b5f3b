"""Optuna studies for the ``tune`` step: their storage beside modelyard's metadata, and the
trials (each one a modelyard run nested under the pipeline run, with its model in the artifact
store).

Storage: Optuna's RDB storage keeps its schema revision in a table named ``alembic_version``,
the name modelyard's migrations use, and refuses a database whose revision it does not know. So
on PostgreSQL the study lives in the same database under a schema of its own (``optuna``,
created when missing, reached through ``search_path``), and on SQLite in a file beside the
metadata database (``modelyard.db`` -> ``modelyard.optuna.db``): Optuna's tables never mix with
modelyard's, and ``yard db`` and the migrations never see them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import ConfigError, StorageError, first_line

if TYPE_CHECKING:
    import optuna

    from modelyard.pipelines._space import Dimension

__all__ = ["OPTUNA_SCHEMA", "TrialPlan", "open_storage", "optimize", "storage_for", "study_url"]

logger = logging.getLogger(__name__)

OPTUNA_SCHEMA = "optuna"
"""The PostgreSQL schema that holds Optuna's tables."""

_INSTALL = "The tune step needs Optuna; install it with pip install 'modelyard[tune]'."


def import_optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:
        raise ImportError(_INSTALL) from exc
    return optuna


def study_url(database_url: str) -> str:
    """Where Optuna keeps studies for the metadata database at ``database_url``."""
    import sqlalchemy as sa

    url = sa.make_url(database_url)
    if url.get_backend_name() == "postgresql":
        return database_url
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database)
        return str(url.set(database=str(path.with_name(f"{path.stem}.optuna{path.suffix}"))))
    raise ConfigError(
        f"The tune step keeps Optuna studies beside a SQLite file or in PostgreSQL, not in "
        f"{url.render_as_string(hide_password=True)!r}; use one of those for the metadata database."
    )


@contextmanager
def open_storage(database_url: str) -> Iterator[Any]:
    """Optuna's RDB storage for the metadata database at ``database_url``, its connections
    closed at the end."""
    storage = storage_for(database_url)
    try:
        yield storage
    finally:
        storage.remove_session()
        storage.engine.dispose()


def storage_for(database_url: str) -> Any:
    """Optuna's RDB storage for the metadata database at ``database_url`` (see the module)."""
    import sqlalchemy as sa

    optuna = import_optuna()
    url = study_url(database_url)
    if sa.make_url(url).get_backend_name() == "postgresql":
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:  # PostgreSQL checks the privilege before existence
                if not sa.inspect(conn).has_schema(OPTUNA_SCHEMA):
                    conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {OPTUNA_SCHEMA}"))
        except sa.exc.DBAPIError as exc:
            reason = first_line(exc.orig) if exc.orig else type(exc).__name__
            raise StorageError(
                f"Cannot create the schema {OPTUNA_SCHEMA!r} for Optuna's studies in "
                f"{engine.url.render_as_string(hide_password=True)} ({reason}); create it there "
                "or grant this user CREATE on the database."
            ) from exc
        finally:
            engine.dispose()
        kwargs: dict[str, Any] = {"connect_args": {"options": f"-csearch_path={OPTUNA_SCHEMA}"}}
    else:
        kwargs = {"connect_args": {"timeout": 60}}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


@dataclass(frozen=True, slots=True)
class TrialPlan:
    """Everything a process running trials needs (plain data: it travels to Ray workers)."""

    study: str
    database_url: str
    artifact_root: str
    identity: str
    parent_run: str | None
    step: str
    estimator: Any
    space: tuple[Dimension, ...]
    cv: int
    scoring: str | None
    seed: int
    pruner: str
    trusted_types: tuple[str, ...] = ()


def make_pruner(name: str) -> Any:
    optuna = import_optuna()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    return optuna.pruners.NopPruner()


def optimize(plan: TrialPlan, X: Any, y: Any, *, n_trials: int, threads: int, worker: int) -> int:
    """Run ``n_trials`` trials of ``plan.study`` (``threads`` at a time); returns how many ran.
    A failing trial is recorded as failed and the study goes on."""
    from modelyard.store.db import Database

    optuna = import_optuna()
    sampler = optuna.samplers.TPESampler(seed=plan.seed + worker)
    db = Database(plan.database_url)
    try:
        with open_storage(plan.database_url) as storage:
            study = optuna.load_study(
                study_name=plan.study, storage=storage, sampler=sampler,
                pruner=make_pruner(plan.pruner),
            )  # fmt: skip
            objective = _Objective(plan, db, X, y)
            study.optimize(objective, n_trials=n_trials, n_jobs=threads, catch=(Exception,))
    finally:
        db.close()
    return n_trials


class _Objective:
    """Cross-validates one sampled configuration, fold by fold (the running mean score is the
    intermediate value the pruner sees), then fits it on all rows and stores that model."""

    def __init__(self, plan: TrialPlan, db: Any, X: Any, y: Any) -> None:
        from sklearn.base import is_classifier
        from sklearn.model_selection import KFold, StratifiedKFold

        self.plan, self.db, self.X, self.y = plan, db, X, y
        splitter = StratifiedKFold if is_classifier(plan.estimator) else KFold
        folds = splitter(n_splits=plan.cv, shuffle=True, random_state=plan.seed)
        self.folds = list(folds.split(X, y))
        self.scorer = make_scorer(plan.scoring, plan.estimator)

    def __call__(self, trial: optuna.Trial) -> float:
        from modelyard.registry.runs import start_run

        plan = self.plan
        params = {d.name: d.suggest(trial) for d in plan.space}
        tags = {
            "modelyard.parent_run": plan.parent_run or "",
            "modelyard.parent_step": plan.step,
            "optuna.study": plan.study,
            "optuna.trial": trial.number,
        }
        run = start_run(
            self.db, name=f"{plan.study}/trial-{trial.number}", user=plan.identity,
            params=params, tags=tags,
        )  # fmt: skip
        trial.set_user_attr("run_id", run.id)
        try:
            score = self._evaluate(trial, run, params)
        except Exception as exc:
            optuna = import_optuna()
            if isinstance(exc, optuna.TrialPruned):
                run.set_tags({"optuna.state": "pruned"})
                run.end("finished")
            else:
                reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                trial.set_user_attr("error", reason)
                run.set_tags({"optuna.state": "failed", "modelyard.error": reason})
                run.end("failed")
            raise
        run.set_tags({"optuna.state": "complete"})
        run.end("finished")
        return score

    def _evaluate(self, trial: optuna.Trial, run: Any, params: dict[str, Any]) -> float:
        import numpy as np
        from sklearn.base import clone

        optuna = import_optuna()
        model = clone(self.plan.estimator).set_params(**params)
        scores: list[float] = []
        for step, (train, test) in enumerate(self.folds):
            fitted = clone(model).fit(_rows(self.X, train), _rows(self.y, train))
            scores.append(float(self.scorer(fitted, _rows(self.X, test), _rows(self.y, test))))
            mean = float(np.mean(scores))
            trial.report(mean, step)
            run.log_metrics({f"cv_score_{step}": scores[-1]})
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after fold {step} (mean score {mean:.6g})")
        model.fit(self.X, self.y)
        digest, encoded = self._store(model, trial.number)
        trial.set_user_attr("artifact", encoded)
        run.set_tags({"modelyard.artifact": digest})
        run.log_metrics({"cv_score": mean})
        return mean

    def _store(self, model: Any, number: int) -> tuple[str, dict[str, Any]]:
        from modelyard.pipelines.artifacts import encode_value
        from modelyard.store.artifacts import ArtifactStore

        label = f"the model of trial {number} of study {self.plan.study!r}"
        encoded = encode_value(model, label=label, trusted_types=self.plan.trusted_types)
        digest, _ = ArtifactStore(self.plan.artifact_root).put(encoded.data)
        record = {"sha256": digest, "kind": encoded.kind, "format": encoded.format}
        return digest, {**record, "meta": encoded.meta}


def make_scorer(scoring: str | None, estimator: Any) -> Any:
    from sklearn.metrics import check_scoring, get_scorer

    from modelyard.errors import InvalidInputError

    if scoring is None:
        return check_scoring(estimator)
    try:
        return get_scorer(scoring)
    except ValueError:
        raise InvalidInputError(
            f"Scoring {scoring!r} is unknown; use a name from sklearn.metrics.get_scorer_names() "
            "(greater is better), or leave it out for the estimator's own score."
        ) from None


def _rows(data: Any, index: Any) -> Any:
    return data.iloc[index] if hasattr(data, "iloc") else data[index]
