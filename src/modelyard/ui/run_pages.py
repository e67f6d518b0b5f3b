"""Runs and pipelines: the list of runs (training and pipeline, filtered by kind and name), one
run (a training run's params, metrics and the versions it produced; a pipeline run's steps as a
graph with cache hits and their reasons, inputs, artifacts), a step's log, and the pipelines with
their latest runs. The same service functions as ``yard runs``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.core.sizes import format_size
from modelyard.errors import InvalidInputError, NotFoundError, RunNotFoundError
from modelyard.registry.runs import RUN_KINDS
from modelyard.ui._base import (
    ROOT,
    blocking,
    fragment,
    page,
    page_number,
    query_text,
    render,
    state,
    url,
)
from modelyard.ui.graph import GraphNode, dag_svg, status_class

if TYPE_CHECKING:
    from modelyard.core.types import ModelVersion, Page, Run
    from modelyard.pipelines.records import PipelineRun, StepRecord
    from modelyard.registry import Registry
    from modelyard.registry.runs import RunKind

PAGE_SIZE = 50
MAX_ID_CHARS = 64
MAX_LOG_CHARS = 32_768
"""A step log page shows at most this many characters: the end of the log, where a failure is."""


@page
async def runs_page(request: Request) -> Response:
    kind = _kind(request)
    name = query_text(request, "name")
    number = page_number(request)
    runs, steps = await blocking(_list_runs, state(request).registry, kind, name, number)
    return render(
        request,
        "runs/list.html",
        {"runs": runs, "steps": steps, "kind": kind or "", "name": name or "",
         "duration": duration, "query": {"kind": kind, "name": name}},
    )  # fmt: skip


def _kind(request: Request) -> RunKind | None:
    text = request.query_params.get("kind") or None
    if text is None:
        return None
    if text not in RUN_KINDS:
        raise InvalidInputError(
            f"Run kind {text[:40]!r} is unknown; choose training or pipeline (or leave it out)."
        )
    return cast("RunKind", text)


def _list_runs(
    registry: Registry, kind: RunKind | None, name: str | None, number: int
) -> tuple[Page, dict[str, tuple[int, int]]]:
    from modelyard.pipelines.records import count_steps

    result = registry.list_runs(kind=kind, name=name, page=number, page_size=PAGE_SIZE)
    return result, count_steps(registry, [r.id for r in result.items])


@page
async def pipelines_page(request: Request) -> Response:
    from modelyard.pipelines.records import list_pipelines

    number = page_number(request)
    result = await blocking(
        list_pipelines, state(request).registry, page=number, page_size=PAGE_SIZE
    )
    return render(request, "runs/pipelines.html", {"pipelines": result, "duration": duration})


@dataclass(frozen=True)
class Shown:
    """What a run's page shows: the run, its pipeline record (a pipeline run), its versions."""

    run: Run
    pipeline: PipelineRun | None
    versions: list[ModelVersion]


@page
async def run_page(request: Request) -> Response:
    run_id = _run_id(request)
    shown = await blocking(_load, state(request).registry, run_id)
    if shown.pipeline is None:
        return render(
            request, "runs/run.html", {"run": shown.run, "versions": shown.versions,
                                       "duration": duration},
        )  # fmt: skip
    return render(request, "runs/pipeline_run.html", _steps_context(shown, shown.pipeline))


@page
async def steps_fragment(request: Request) -> Response:
    """A pipeline run's graph and step table, refreshed on its page while it runs."""
    run_id = _run_id(request)
    shown = await blocking(_load, state(request).registry, run_id)
    if shown.pipeline is None:
        raise NotFoundError(f"Run {run_id!r} is a training run and has no steps.")
    return fragment(request, "runs/_steps.html", _steps_context(shown, shown.pipeline))


def _steps_context(shown: Shown, record: PipelineRun) -> dict[str, Any]:
    graph = dag_svg(
        [_graph_node(s) for s in record.steps],
        href=lambda name: f"#step-{name}",
        title=f"The steps of pipeline run {record.id}",
    )
    return {"run": shown.run, "record": record, "versions": shown.versions, "graph": graph,
            "duration": duration, "seconds": seconds, "size": format_size,
            "status_class": status_class, "error_tail": error_tail}  # fmt: skip


def _load(registry: Registry, run_id: str) -> Shown:
    from modelyard.pipelines.records import get_pipeline_run

    try:
        run = registry.get_run(run_id)
    except RunNotFoundError:
        raise RunNotFoundError(f"No run {run_id!r}; see the runs at {url('runs')}.") from None
    return Shown(run, get_pipeline_run(registry, run_id), registry.run_versions(run_id))


def _graph_node(step: StepRecord) -> GraphNode:
    detail = seconds(step.duration_s) if step.status == "succeeded" else ""
    return GraphNode(
        step.name, step.upstream, step.status, note=step.cache_note or "", detail=detail
    )


@page
async def step_log_page(request: Request) -> Response:
    run_id = _run_id(request)
    name = str(request.path_params["step"])
    if len(name) > MAX_ID_CHARS:
        raise InvalidInputError(f"The step name is longer than {MAX_ID_CHARS} characters.")
    shown = await blocking(_load, state(request).registry, run_id)
    if shown.pipeline is None:
        raise NotFoundError(
            f"Run {run_id!r} is a training run and has no steps; see {url('runs/' + run_id)}."
        )
    step = next((s for s in shown.pipeline.steps if s.name == name), None)
    if step is None:
        raise NotFoundError(
            f"Run {run_id!r} has no step {name!r}; its steps are: "
            f"{', '.join(s.name for s in shown.pipeline.steps)}."
        )
    log = step.log or ""
    return render(
        request,
        "runs/step_log.html",
        {"run": shown.run, "step": step, "log": log[-MAX_LOG_CHARS:],
         "cut": len(log) > MAX_LOG_CHARS, "length": len(log), "limit": MAX_LOG_CHARS},
    )  # fmt: skip


def _run_id(request: Request) -> str:
    run_id = str(request.path_params["run_id"])
    if len(run_id) > MAX_ID_CHARS:
        raise InvalidInputError(
            f"A run id has at most {MAX_ID_CHARS} characters; see the runs at {url('runs')}."
        )
    return run_id


# -- formatting -------------------------------------------------------------------------------


def seconds(value: float | None) -> str:
    """``0.42 s``, ``12.3 s``, ``4 min 3 s``, ``2 h 5 min``; empty when unknown."""
    if value is None:
        return ""
    if value < 10:
        return f"{value:.2f} s"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60)} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60)} min"


def duration(start: datetime, end: datetime | None) -> str:
    return "" if end is None else seconds((end - start).total_seconds())


def error_tail(text: str | None, lines: int = 20) -> str:
    return "\n".join((text or "").rstrip().splitlines()[-lines:])


ROUTES = [
    Route(f"{ROOT}/runs", runs_page),
    Route(f"{ROOT}/runs/{{run_id}}", run_page),
    Route(f"{ROOT}/runs/{{run_id}}/steps", steps_fragment),
    Route(f"{ROOT}/runs/{{run_id}}/steps/{{step}}/log", step_log_page),
    Route(f"{ROOT}/pipelines", pipelines_page),
]
