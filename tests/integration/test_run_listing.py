"""Listing runs by kind and name, the versions a run produced, and the pipelines with their
latest runs, on SQLite and PostgreSQL; and ``yard runs list --kind --name``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.errors import InvalidInputError, RunNotFoundError
from modelyard.pipelines.records import list_pipelines
from modelyard.registry import Registry
from tests.integration._tiny_pipeline import TinyPipeline


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[TinyPipeline]:
    project = TinyPipeline(tmp_path / "tiny")
    yield project
    project.close()


def _names(registry: Registry, **filters: object) -> list[str | None]:
    return [r.name for r in registry.list_runs(**filters).items]  # type: ignore[arg-type]


def test_runs_filtered_by_kind_and_name(registry: Registry, tiny: TinyPipeline) -> None:
    with registry.start_run("train-churn", params={"C": 1}) as training:
        training.log_metrics({"auc": 0.9})
    registry.start_run("Churn_100%").end()
    registry.start_run(None).end()
    pipeline = tiny.run(registry)

    assert len(_names(registry)) == 4
    assert _names(registry, kind="pipeline") == ["tiny"]
    assert sorted(map(str, _names(registry, kind="training"))) == [
        "Churn_100%", "None", "train-churn",
    ]  # fmt: skip
    assert sorted(map(str, _names(registry, name="CHURN"))) == ["Churn_100%", "train-churn"]
    assert _names(registry, name="100%") == ["Churn_100%"]  # % is a character, not a wildcard
    assert _names(registry, name="n_1") == ["Churn_100%"]  # so is _
    assert _names(registry, name="h%n") == []
    assert _names(registry, kind="pipeline", name="churn") == []
    assert _names(registry, kind="training", name="tin") == []
    page = registry.list_runs(kind="training", page=2, page_size=2)
    assert (page.total, len(page.items), page.next_page) == (3, 1, None)
    assert registry.list_runs(kind="pipeline").items[0].id == pipeline.id


def test_bad_filters_are_refused_naming_the_value(registry: Registry) -> None:
    with pytest.raises(InvalidInputError, match="Run kind 'model' is unknown; use training or"):
        registry.list_runs(kind="model")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="longer than 256 characters"):
        registry.list_runs(name="x" * 257)


def test_the_versions_a_run_produced(registry: Registry) -> None:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    X = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.2, 0.9]])
    model = LogisticRegression().fit(X, [0, 1, 1, 0])
    with registry.start_run("train") as run:
        registry.register(model, name="churn", data=X, run=run)
        registry.register(model, name="churn", data=X, run=run)
    registry.register(model, name="churn", data=X)
    other = registry.start_run("other")
    assert [v.ref for v in registry.run_versions(run.id)] == ["churn/2", "churn/1"]
    assert registry.run_versions(other.id) == []
    with pytest.raises(RunNotFoundError, match="No run 'nope'"):
        registry.run_versions("nope")


def test_pipelines_with_their_latest_runs(registry: Registry, tiny: TinyPipeline) -> None:
    assert list_pipelines(registry).total == 0
    registry.start_run("tiny").end()  # a training run of the same name is not a pipeline run
    tiny.run(registry)
    latest = tiny.run(registry, fail=True)
    result = list_pipelines(registry)
    assert result.total == 1
    (summary,) = result.items
    assert (summary.name, summary.runs, summary.latest.id) == ("tiny", 2, latest.id)
    assert (summary.latest.status, summary.steps, summary.cached) == ("failed", 4, 2)
    with pytest.raises(InvalidInputError, match="Page 0 of size 50 is out of range"):
        list_pipelines(registry, page=0)


def test_yard_runs_list_kind_and_name(
    sqlite_registry: Registry, tiny: TinyPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from modelyard.cli.main import app

    settings = sqlite_registry.settings
    env = {"MODELYARD_HOME": str(settings.home), "MODELYARD_DATABASE_URL": settings.database_url,
           "MODELYARD_ARTIFACT_ROOT": str(settings.artifact_root)}  # fmt: skip
    sqlite_registry.start_run("train-churn").end()
    pipeline = tiny.run(sqlite_registry)

    def yard(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(app, ["runs", "list", *args], env=env)
        assert result.exit_code == code, result.output
        return result.stdout if code == 0 else result.stderr

    listed = json.loads(yard("--kind", "pipeline", "--json"))
    assert [(i["id"], i["steps"]) for i in listed["items"]] == [(pipeline.id, 4)]
    listed = json.loads(yard("--kind", "training", "--name", "CHURN", "--json"))
    assert [(i["name"], i["steps"]) for i in listed["items"]] == [("train-churn", None)]
    assert "tiny" in yard("--name", "tin") and "train-churn" not in yard("--name", "tin")
    assert "'model' is not one of" in yard("--kind", "model", code=2)
