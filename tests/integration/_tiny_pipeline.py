"""A pipeline of four quick steps (JSON values only, no pandas) for tests that need pipeline runs
in the registry: a fresh run, an all-cached re-run, a run with a changed parameter, a failed run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelyard.errors import StepFailedError
from modelyard.pipelines import LocalExecutor, run
from modelyard.pipelines.records import PipelineRun, get_pipeline_run
from modelyard.registry import Registry
from tests.unit.pipelines._project import Project

TINY = """
from modelyard.pipelines import log_metrics, pipeline, step


@step
def make(n: int = 5) -> list:
    return list(range(n))


@step
def shout(values: list) -> str:
    print("<script>window.pwned = 1</script> and more")
    return "x" * len(values)


@step
def total(values: list, fail: bool = False) -> dict:
    if fail:
        raise RuntimeError("cannot total")
    log_metrics(total=float(sum(values)))
    return {"sum": sum(values)}


@step
def report(text: str, result: dict) -> str:
    return f"{text} {result['sum']}"


@pipeline
def tiny(n: int = 5, fail: bool = False):
    values = make(n)
    report(shout(values), total(values, fail=fail))
"""

STEPS = ["make", "shout", "total", "report"]
EDGES = {("make", "shout"), ("make", "total"), ("shout", "report"), ("total", "report")}


class TinyPipeline:
    """The ``tiny`` pipeline written under ``root``; ``run(**params)`` records one run."""

    def __init__(self, root: Path) -> None:
        self.project = Project(root)
        self.project.write("tiny.py", TINY)

    def run(self, registry: Registry, **params: Any) -> PipelineRun:
        """The run's record, failed or not."""
        definition = self.project.load("tiny.py").tiny
        try:
            return run(
                definition, params=params, registry=registry, executor=LocalExecutor(workers=1)
            )
        except StepFailedError as exc:
            assert exc.run_id is not None
            record = get_pipeline_run(registry, exc.run_id)
            assert record is not None
            return record

    def close(self) -> None:
        self.project.close()
