"""``yard runs``: training runs."""

from __future__ import annotations

import typer

from modelyard.cli._output import kv, print_json, table, when
from modelyard.cli._registry import open_registry

app = typer.Typer(help="Training runs.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print JSON for scripts.")


@app.command("list")
def list_runs(
    page: int = typer.Option(1, min=1),
    page_size: int = typer.Option(50, min=1, max=1000),
    json: bool = JSON,
) -> None:
    """List runs, newest first."""
    result = open_registry().list_runs(page=page, page_size=page_size)
    if json:
        print_json({"items": result.items, "page": page, "total": result.total})
        return
    table(
        f"runs (page {page}, {result.total} in all)",
        ["id", "name", "status", "started", "ended", "metrics"],
        [(r.id, r.name, r.status, when(r.start_time), when(r.end_time), kv(r.metrics))
         for r in result.items],
    )  # fmt: skip


@app.command()
def show(run_id: str, json: bool = JSON) -> None:
    """Show one run."""
    run = open_registry().get_run(run_id)
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
