"""The same pipelines on a real local Ray: the same artifacts, byte for byte, as the local
executor; failures recorded the same way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import StepFailedError
from modelyard.pipelines import LocalExecutor, RayExecutor, run
from modelyard.pipelines.records import get_pipeline_run
from modelyard.registry import Registry
from tests.integration._pipelines import DIAMOND, STEPS, ChurnProject
from tests.unit.pipelines._project import Project


@pytest.fixture
def churn(tmp_path: Path) -> Iterator[ChurnProject]:
    project = ChurnProject(tmp_path / "project")
    yield project
    project.close()


def test_ray_gives_the_same_artifacts_as_the_local_executor(
    churn: ChurnProject, sqlite_registry: Registry, ray_cluster: Any
) -> None:
    pipeline = churn.load()
    params = {"data": str(churn.data)}
    local = run(pipeline, params=params, registry=sqlite_registry, executor=LocalExecutor(1))
    on_ray = run(
        pipeline, params=params, registry=sqlite_registry, executor=RayExecutor(), no_cache=True
    )
    assert {s.status for s in on_ray.steps} == {"succeeded"}
    assert on_ray.tags["modelyard.executor"] == "ray"
    compared = 0
    for name in STEPS:
        for output, artifact in on_ray.step(name).outputs.items():
            assert artifact.sha256 == local.step(name).outputs[output].sha256, (name, output)
            compared += 1
    assert compared == 8  # tables, the sklearn model, JSON and an array
    assert "preparing 300 rows" in (on_ray.step("prepare").log or "")
    assert "INFO churn: training with C=1.0" in (on_ray.step("train").log or "")
    assert on_ray.metrics == local.metrics


def test_a_failing_step_on_ray_is_recorded_with_its_traceback(
    tmp_path: Path, sqlite_registry: Registry, ray_cluster: Any
) -> None:
    project = Project(tmp_path / "diamond")
    try:
        project.write("diamond.py", DIAMOND)
        definition = project.load("diamond.py").diamond
        with pytest.raises(StepFailedError) as exc:
            run(definition, params={"fail": True}, registry=sqlite_registry, executor=RayExecutor())
    finally:
        project.close()
    record = get_pipeline_run(sqlite_registry, exc.value.run_id or "")
    assert record is not None
    assert {s.name: s.status for s in record.steps} == {
        "make": "succeeded", "means": "succeeded", "squares": "succeeded",
        "combine": "failed", "summary": "skipped",
    }  # fmt: skip
    error = record.step("combine").error or ""
    assert 'diamond.py", line' in error and "RuntimeError: cannot combine" in error
