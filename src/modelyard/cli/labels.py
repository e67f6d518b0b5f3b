"""``yard labels``: ground truth for logged predictions, and the performance it measures."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from modelyard.cli._output import console, print_json, table

if TYPE_CHECKING:
    from collections.abc import Callable

    from modelyard.monitoring.labels import IngestResult
    from modelyard.monitoring.types import Performance

app = typer.Typer(help="Labels: ground truth joined to logged predictions.", no_args_is_help=True)


@app.command("ingest")
def ingest(
    name: str = typer.Argument(..., help="The deployment or model name predictions are logged as."),
    file: Path = typer.Argument(..., help="CSV or Parquet: request_id, label[, row, time]."),
    json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Store labels for NAME's logged predictions (the latest label of a request wins)."""
    from modelyard.cli._registry import load_settings, open_registry
    from modelyard.monitoring.labelrules import logged_rule
    from modelyard.monitoring.labels import ingest_labels
    from modelyard.monitoring.mirror import publish, readable_root, store_named

    settings = load_settings()
    with store_named(settings), ingest_steps(enabled=not json) as on_step:
        root = readable_root(settings, name)
        registry = open_registry()
        try:  # a regressor's labels must be numbers: the logged version's signature says
            rule = logged_rule(root, name, registry)
        finally:
            registry.close()
        result = ingest_labels(root, name, file, on_step=on_step, rule=rule)
        publish(settings, result.path)
    print_ingest(result, "labels", name, json=json)


@app.command("performance")
def performance(
    name: str = typer.Argument(..., help="The deployment or model name."),
    window: str = typer.Option("1h", "--window", help="Predictions of the last 15m, 1h, 7d..."),
    json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Accuracy, F1, ROC AUC... (classifiers) or MAE, RMSE, R2 (regressors) where labels
    joined NAME's predictions of the last --window."""
    from datetime import timedelta

    from modelyard.cli._registry import load_settings, open_registry
    from modelyard.core.durations import parse_duration
    from modelyard.monitoring.mirror import readable_root, store_named
    from modelyard.monitoring.performance import compute_performance

    since = timedelta(seconds=parse_duration(window))
    settings = load_settings()
    registry = open_registry()
    try:
        with store_named(settings):
            result = compute_performance(
                readable_root(settings, name), name, since=since, registry=registry
            )
    finally:
        registry.close()
    if json:
        print_json(result)
        return
    _render(name, window, result)


def _render(name: str, window: str, result: Performance) -> None:
    rows = [[m, f"{v:.4g}", f"{result.counts.get(m, 0):,}"] for m, v in result.metrics.items()]
    out = console()
    out.print(f"{result.task} performance of {name}, predictions of the last {window}")
    if rows:
        table(None, ["metric", "value", "n"], rows)
    else:
        out.print(f"No labels joined these predictions yet; see 'yard labels ingest {name} FILE'.")
    out.print(f"labelled: {result.labelled:,} of {result.predictions:,} predictions")
    out.print(f"labels matching no logged prediction: {result.unmatched_labels:,}")


def print_ingest(result: IngestResult, noun: str, name: str, *, json: bool) -> None:
    """What an ingest of labels or outcomes wrote and how much of it met a logged prediction."""
    if json:
        print_json(result)
        return
    out = console()
    out.print(f"{result.rows:,} {noun} written for {name} ({result.path})")
    out.print(f"matched a logged prediction: {result.matched:,}")
    out.print(f"no logged prediction (yet):  {result.unmatched:,}")


@contextmanager
def ingest_steps(*, enabled: bool, noun: str = "labels") -> Iterator[Callable[[str], None] | None]:
    """A spinner on stderr naming the step (reading, validating, writing...) of a long ingest;
    only on a terminal (elsewhere Rich would leave a blank line)."""
    import sys

    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("starting", total=None)

        def on_step(step: str) -> None:
            progress.update(task, description=f"{step} {noun}")

        yield on_step
