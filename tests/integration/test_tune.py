"""The built-in tune step on real SQLite and PostgreSQL: an Optuna study whose trials are runs
nested under the pipeline run, pruning, and the best trial's model registered; Optuna's tables
kept apart from modelyard's migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from modelyard.errors import InvalidInputError, PipelineDefinitionError, PipelineError
from modelyard.pipelines import RayExecutor, pipeline, run
from modelyard.pipelines._study import study_url
from modelyard.pipelines.artifacts import decode_value
from modelyard.pipelines.builtin import evaluate, load_table, register, split, tune
from modelyard.registry import Registry
from modelyard.store.db import HEAD_REVISION, Database
from tests.conftest import POSTGRES_URL

HGB = "sklearn.ensemble.HistGradientBoostingClassifier"
SPACE = {
    "max_iter": {"kind": "int", "low": 2, "high": 40},
    "learning_rate": {"kind": "float", "low": 0.001, "high": 0.5, "log": True},
}


@pytest.fixture
def table(tmp_path: Path) -> Path:
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=300, n_features=6, random_state=0)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)]).assign(label=y)
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    return path


@pipeline
def search(data: str, n_trials: int = 6, parallel: int = 2) -> None:
    parts = split(load_table(data), target="label")
    model = tune(
        parts.train, "label", HGB, SPACE, fixed={"random_state": 0}, n_trials=n_trials,
        parallel=parallel,
    )  # fmt: skip
    metrics = evaluate(model, parts.test, "label")
    register(model, parts.test, "tuned", target="label", metrics=metrics)


def _trials(registry: Registry, parent: str) -> list[Any]:
    return [
        r for r in registry.list_runs(name=".tune.", page_size=100).items
        if r.tags.get("modelyard.parent_run") == parent
    ]  # fmt: skip


def test_the_best_trial_is_evaluated_and_registered(registry: Registry, table: Path) -> None:
    result = run(search, params={"data": str(table)}, registry=registry)
    trials = _trials(registry, result.id)
    assert len(trials) == 6
    states = sorted(t.tags["optuna.state"] for t in trials)
    assert set(states) <= {"complete", "pruned"} and "complete" in states
    assert result.metrics["tune.trials_complete"] == states.count("complete")
    assert result.metrics["tune.trials_pruned"] == states.count("pruned")
    for trial in trials:
        assert set(trial.params) == {"max_iter", "learning_rate"}
        folds = [k for k in trial.metrics if k.startswith("cv_score_")]
        if trial.tags["optuna.state"] == "pruned":  # stopped before the last fold
            assert len(folds) < 3 and "modelyard.artifact" not in trial.tags
        else:
            assert len(folds) == 3 and "cv_score" in trial.metrics
            registry.artifacts.get(trial.tags["modelyard.artifact"], label="trial model")
    number = str(int(result.metrics["tune.best_trial"]))
    best = next(t for t in trials if t.tags["optuna.trial"] == number)
    assert result.metrics["tune.best_score"] == best.metrics["cv_score"]
    output = result.step("tune").outputs["output"]
    tuned = decode_value(
        registry.artifacts.get(output.sha256, label="tuned"), kind=output.kind,
        format=output.format, meta=output.meta, label="tuned",
    )  # fmt: skip
    assert str(tuned.max_iter) == best.params["max_iter"]
    assert repr(tuned.learning_rate) == best.params["learning_rate"]
    version = registry.get_version("tuned/1")
    assert version.metrics["accuracy"] == result.metrics["evaluate.accuracy"] > 0.7
    # Optuna's tables are not modelyard's: its migrations and `yard db` still see their own head
    database = Database(registry.settings.resolved_database_url, upgrade=False)
    try:
        assert database.current_revision() == HEAD_REVISION
        assert database.upgrade() == HEAD_REVISION
        inspector = sa.inspect(database.engine)
        tables = set(inspector.get_table_names())
        if database.dialect == "postgresql":
            kept_apart = set(inspector.get_table_names(schema="optuna"))
        else:  # a file beside the metadata database
            beside = sa.create_engine(study_url(registry.settings.resolved_database_url))
            kept_apart = set(sa.inspect(beside).get_table_names())
            beside.dispose()
    finally:
        database.close()
    assert "runs" in tables and not tables & {"studies", "trials", "version_info"}
    assert {"studies", "trials"} <= kept_apart


def test_a_failing_trial_is_recorded_and_the_study_goes_on(sqlite_registry: Registry) -> None:
    frame = _frame()
    space = {"max_iter": {"kind": "categorical", "choices": [-1, 5, 10]}}  # -1 fails to fit
    model = _direct(sqlite_registry, frame, space, n_trials=8, pruner="none", study="goes-on")
    runs = sqlite_registry.list_runs(name="goes-on/", page_size=100).items
    failed = [r for r in runs if r.status == "failed"]
    assert failed and all(r.params["max_iter"] == "-1" for r in failed)
    assert "max_iter" in failed[0].tags["modelyard.error"]
    assert len(runs) == 8 and model.max_iter in (5, 10)


def test_when_every_trial_fails_the_step_fails_in_one_line(sqlite_registry: Registry) -> None:
    space = {"max_iter": {"kind": "categorical", "choices": [-1, -2]}}
    with pytest.raises(PipelineError) as exc:
        _direct(sqlite_registry, _frame(), space, n_trials=3, study="all-fail")
    message = str(exc.value)
    assert "No trial of study 'all-fail' completed (3 failed, 0 pruned" in message
    assert "max_iter" in message and "\n" not in message


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"space": {"max_iter": {"kind": "lognormal"}}}, "has kind 'lognormal'; use 'int'"),
        ({"n_trials": 0}, "n_trials must be a whole number of at least 1, got 0"),
        ({"space": {"depth": {"kind": "int", "low": 1, "high": 3}}}, "no parameter(s) ['depth']"),
        ({"space": {"max_iter": {"kind": "int", "low": 9, "high": 3}}}, "low 9 above high 3"),
        ({"scoring": "nope"}, "Scoring 'nope' is unknown"),
        ({"backend": "dask"}, "backend 'dask' is unknown"),
    ],
)
def test_bad_inputs_fail_before_any_trial(
    sqlite_registry: Registry, kwargs: dict[str, Any], expected: str
) -> None:
    with pytest.raises(InvalidInputError) as exc:
        _direct(sqlite_registry, _frame(), **{"space": SPACE, "n_trials": 2, **kwargs})
    assert expected in str(exc.value) and "\n" not in str(exc.value)
    assert sqlite_registry.list_runs().items == ()


def test_a_pipeline_with_a_bad_space_is_refused_before_it_runs(
    sqlite_registry: Registry, table: Path
) -> None:
    @pipeline
    def bad(data: str) -> None:
        tune(load_table(data), "label", HGB, {"max_iter": {"kind": "uniform"}})

    with pytest.raises(InvalidInputError, match="kind 'uniform'"):
        run(bad, params={"data": str(table)}, registry=sqlite_registry)
    assert sqlite_registry.list_runs().items == ()


@pipeline
def search_on_ray(data: str) -> None:
    model = tune(load_table(data), "label", HGB, SPACE, n_trials=2, parallel=2, backend="ray")
    evaluate(model, load_table(data), "label")


@pytest.mark.slow  # the step and two trial workers on Ray each import scikit-learn: about 15 s
def test_trials_on_ray_from_a_step_on_the_ray_executor(
    sqlite_registry: Registry, table: Path, ray_cluster: Any
) -> None:
    result = run(
        search_on_ray, params={"data": str(table)}, registry=sqlite_registry,
        executor=RayExecutor(),
    )  # fmt: skip
    trials = _trials(sqlite_registry, result.id)
    assert len(trials) == 2 and {t.status for t in trials} == {"finished"}
    assert result.metrics["tune.trials_complete"] + result.metrics["tune.trials_pruned"] == 2
    assert result.metrics["evaluate.accuracy"] > 0.7
    assert "2 trials, 2 at a time (ray)" in (result.step("tune").log or "")


def test_trials_asking_more_cpus_than_ray_has_are_refused(
    sqlite_registry: Registry, ray_cluster: Any
) -> None:
    with pytest.raises(PipelineDefinitionError) as exc:
        _direct(sqlite_registry, _frame(), SPACE, n_trials=2, backend="ray",
                trial_resources={"cpus": 64}, study="too-big")  # fmt: skip
    assert "asks for 64 cpus but the Ray cluster has 2" in str(exc.value)
    assert sqlite_registry.list_runs(name="too-big/").items == ()


def test_without_optuna_the_error_names_the_extra(
    sqlite_registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "optuna", None)
    with pytest.raises(ImportError, match=r"pip install 'modelyard\[tune\]'"):
        _direct(sqlite_registry, _frame(), SPACE, n_trials=1)


def _frame() -> pd.DataFrame:
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=150, n_features=4, random_state=1)
    return pd.DataFrame(X, columns=["a", "b", "c", "d"]).assign(label=y)


def _direct(registry: Registry, frame: pd.DataFrame, space: Any, **kwargs: Any) -> Any:
    """tune called as a plain function, on ``registry``."""
    from modelyard import _api

    _api.set_registry(registry)
    try:
        return tune.fn(frame, "label", HGB, space, fixed={"random_state": 0}, **kwargs)
    finally:
        _api.set_registry(None)


def test_studies_need_a_sqlite_file_or_postgresql() -> None:
    from modelyard.errors import ConfigError

    assert (
        study_url("sqlite:////srv/yard/modelyard.db") == "sqlite:////srv/yard/modelyard.optuna.db"
    )
    with pytest.raises(ConfigError, match="not in 'sqlite://'; use one of those"):
        study_url("sqlite://")


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason="needs MODELYARD_TEST_POSTGRES_URL")
def test_a_user_who_cannot_create_the_optuna_schema_is_told_what_to_do() -> None:
    from modelyard.errors import StorageError
    from modelyard.pipelines._study import storage_for

    assert POSTGRES_URL is not None
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    role = "modelyard_tune_reader"
    with admin.connect() as conn:
        conn.execute(sa.text("DROP SCHEMA IF EXISTS optuna CASCADE"))  # as on a new database
        conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
    try:
        url = sa.make_url(POSTGRES_URL).set(username=role)
        with pytest.raises(StorageError) as exc:
            storage_for(url.render_as_string(hide_password=False))
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()
    message = str(exc.value)
    assert message.startswith("Cannot create the schema 'optuna' for Optuna's studies in ")
    assert "permission denied" in message and "grant this user CREATE" in message
