"""Pipelines: cached steps, executors (local, Ray), quality gates and batch scoring.

::

    from modelyard.pipelines import log_metrics, pipeline, step
    from modelyard.pipelines.builtin import load_table, split

    @step
    def train(table: pd.DataFrame, C: float = 1.0) -> LogisticRegression: ...

    @pipeline
    def churn(data: str = "churn.csv", C: float = 1.0) -> None:
        parts = split(load_table(data), target="churned")
        model = train(parts.train, C=C)
        evaluate(model, parts.test)

Run it with ``yard run pipeline.py --param C=0.5`` or ``modelyard.pipelines.run(churn)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelyard.pipelines.context import StepContext, current_step, log_metrics
from modelyard.pipelines.graph import Node, Pipeline
from modelyard.pipelines.steps import Step, step
from modelyard.pipelines.tracing import OutputHandle, PipelineDef, pipeline

if TYPE_CHECKING:
    from modelyard.pipelines.engine import PipelineEvent, run
    from modelyard.pipelines.executors import Executor, LocalExecutor, RayExecutor
    from modelyard.pipelines.records import ArtifactRecord, PipelineRun, StepRecord, load_artifact

__all__ = [
    "ArtifactRecord",
    "Executor",
    "LocalExecutor",
    "Node",
    "OutputHandle",
    "Pipeline",
    "PipelineDef",
    "PipelineEvent",
    "PipelineRun",
    "RayExecutor",
    "Step",
    "StepContext",
    "StepRecord",
    "current_step",
    "load_artifact",
    "log_metrics",
    "pipeline",
    "run",
    "step",
]

# Defining steps and pipelines imports neither SQLAlchemy nor the registry; running them does.
_LAZY = {
    "PipelineEvent": "engine",
    "run": "engine",
    "Executor": "executors",
    "LocalExecutor": "executors",
    "RayExecutor": "executors",
    "ArtifactRecord": "records",
    "PipelineRun": "records",
    "StepRecord": "records",
    "load_artifact": "records",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"modelyard.pipelines.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'modelyard.pipelines' has no attribute {name!r}")
