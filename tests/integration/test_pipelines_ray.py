"""The same pipelines on a real local Ray: the same artifacts, byte for byte, as the local
executor; failures recorded the same way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from modelyard.errors import PipelineDefinitionError, StepFailedError
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
    with _loaded(tmp_path / "diamond", DIAMOND) as module, pytest.raises(StepFailedError) as exc:
        run(
            module.diamond, params={"fail": True}, registry=sqlite_registry,
            executor=RayExecutor(),
        )  # fmt: skip
    record = get_pipeline_run(sqlite_registry, exc.value.run_id or "")
    assert record is not None
    assert {s.name: s.status for s in record.steps} == {
        "make": "succeeded", "means": "succeeded", "squares": "succeeded",
        "combine": "failed", "summary": "skipped",
    }  # fmt: skip
    error = record.step("combine").error or ""
    assert 'diamond.py", line' in error and "RuntimeError: cannot combine" in error


@contextmanager
def _loaded(root: Path, source: str) -> Iterator[ModuleType]:
    """``source`` written as ``<root>/<root's name>.py`` and imported."""
    project = Project(root)
    try:
        project.write(f"{root.name}.py", source)
        yield project.load(f"{root.name}.py")
    finally:
        project.close()


RESOURCES = """
from modelyard.pipelines import pipeline, step


@step(resources={"cpus": 2})
def wide() -> dict:
    import ray

    return ray.get_runtime_context().get_assigned_resources()


@step(resources={"cpus": 8})
def huge() -> int:
    return 1


@pipeline
def fits():
    wide()


@pipeline
def too_big():
    huge()
"""


def test_step_resources_are_reserved_on_ray_and_refused_past_the_cluster(
    tmp_path: Path, sqlite_registry: Registry, ray_cluster: Any
) -> None:
    with _loaded(tmp_path / "resources", RESOURCES) as module:
        result = run(module.fits, registry=sqlite_registry, executor=RayExecutor())
        with pytest.raises(PipelineDefinitionError) as exc:
            run(module.too_big, registry=sqlite_registry, executor=RayExecutor())
    output = result.step("wide").outputs["output"]
    assigned = sqlite_registry.artifacts.get(output.sha256, label="assigned")
    assert b'"CPU":2.0' in assigned
    assert str(exc.value) == (
        "Step 'huge' asks for 8 cpus but the Ray cluster has 2; lower its resources or run on "
        "a cluster that has them (--address)."
    )
