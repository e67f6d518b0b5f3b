"""``yard runs``: training runs and pipeline runs."""

from __future__ import annotations

from enum import StrEnum

import msgspec
import typer

from modelyard.cli._output import kv, print_json, table, when
from modelyard.cli._registry import open_registry

app = typer.Typer(help="Training runs and pipeline runs.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print JSON for scripts.")


class Kind(StrEnum):
    training = "training"
    pipeline = "pipeline"


@app.command("list")
def list_runs(
    kind: Kind | None = typer.Option(None, "--kind", help="Only training or pipeline runs."),
    name: str | None = typer.Option(None, "--name", help="Only runs whose name contains this."),
    page: int = typer.Option(1, min=1),
    page_size: int = typer.Option(50, min=1, max=1000),
    json: bool = JSON,
) -> None:
    """List runs (training runs and pipeline runs), newest first."""
    from modelyard.pipelines.records import count_steps

    registry = open_registry()
    result = registry.list_runs(
        kind=None if kind is None else kind.value, name=name, page=page, page_size=page_size
    )
    steps = count_steps(registry, [r.id for r in result.items])
    if json:
        items = [
            {**msgspec.to_builtins(r), "steps": steps[r.id][0] if r.id in steps else None}
            for r in result.items
        ]
        print_json({"items": items, "page": page, "total": result.total})
        return
    table(
        f"runs (page {page}, {result.total} in all)",
        ["id", "name", "status", "steps", "started", "ended", "metrics"],
        [(r.id, r.name, r.status, _steps(steps.get(r.id)), when(r.start_time),
          when(r.end_time), kv(r.metrics))
         for r in result.items],
    )  # fmt: skip


def _steps(counts: tuple[int, int] | None) -> str | None:
    """``5 (3 cached)`` for a pipeline run, nothing for a training run."""
    return None if counts is None else f"{counts[0]} ({counts[1]} cached)"


@app.command()
def show(
    run_id: str,
    json: bool = JSON,
    log: str | None = typer.Option(None, "--log", metavar="STEP", help="Print a step's log."),
) -> None:
    """Show one run; for a pipeline run, its steps, cache hits, inputs and artifacts."""
    from modelyard.cli.pipelines import render_run
    from modelyard.pipelines.records import get_pipeline_run

    registry = open_registry()
    pipeline_run = get_pipeline_run(registry, run_id)
    if pipeline_run is not None:
        if json:
            print_json(pipeline_run)
        else:
            render_run(pipeline_run, log_step=log)
        return
    run = registry.get_run(run_id)
    if json:
        print_json(run)
        return
    table(
        f"run {run.id}",
        ["field", "value"],
        [
            ("name", run.name), ("status", run.status), ("user", run.user),
            ("started", when(run.start_time)), ("ended", when(run.end_time)),
            ("params", kv(run.params)), ("metrics", kv(run.metrics)), ("tags", kv(run.tags)),
        ],
    )  # fmt: skip
