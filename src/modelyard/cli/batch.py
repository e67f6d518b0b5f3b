"""``yard batch-score``: score Parquet files with a registered model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer

from modelyard.cli._output import console, print_json, table

if TYPE_CHECKING:
    from modelyard.pipelines.batch import BatchSummary, Engine
    from modelyard.registry.loaded import Runtime


def batch_score(
    ref: str = typer.Argument(..., help="NAME/VERSION or NAME@ALIAS."),
    input: str = typer.Option(
        ..., "--input", help="Parquet input: a quoted glob ('data/*.parquet'), a folder or a file."
    ),
    output: str = typer.Option(
        ..., "--output", help="Folder for part-NNNNN.parquet and rejected.parquet."
    ),
    engine: str = typer.Option("local", help="local, or ray (one worker per CPU)."),
    address: str | None = typer.Option(None, help="Ray cluster address (default: a local Ray)."),
    cpus: int | None = typer.Option(None, "--cpus", min=1, help="Ray workers (default: all)."),
    batch_size: int = typer.Option(65_536, "--batch-size", min=1, help="Rows per model call."),
    runtime: str | None = typer.Option(
        None, help="auto|native|onnx|quantized (auto: ONNX when present, a text model's int8 twin)."
    ),
    key: list[str] = typer.Option(
        [], "--key", help="Input column to carry to the output; repeatable (default: the others)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace results in --output."),
    trust_pickle: bool = typer.Option(
        False, "--trust-pickle", help="Load a model registered as a pickle."
    ),
    json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Score Parquet files with a model: the server's validation, rejected rows to a side file."""
    from modelyard.cli._registry import open_registry
    from modelyard.pipelines.batch import batch_score as run

    if engine not in ("local", "ray"):
        raise typer.BadParameter("use local or ray", param_hint="--engine")
    if runtime not in (None, "auto", "native", "onnx", "quantized"):
        raise typer.BadParameter("use auto, native, onnx or quantized", param_hint="--runtime")
    registry = open_registry()
    serving = registry.settings.serving
    try:
        with _progress() as advance:
            summary = run(
                registry, ref, input, output, engine=cast("Engine", engine),
                batch_size=batch_size, runtime=cast("Runtime", runtime or serving.runtime),
                key_columns=key or None, trust_pickle=trust_pickle or serving.trust_pickle,
                overwrite=overwrite, address=address, num_cpus=cpus, progress=advance,
            )  # fmt: skip
    finally:
        registry.close()
    if json:
        print_json(summary)
        return
    _show(summary)


def _show(summary: BatchSummary) -> None:
    rows: list[list[object]] = [
        ["model", f"{summary.ref} ({summary.runtime}, run by {summary.kernel})"],
        ["engine", f"{summary.engine} ({summary.workers} worker{'s' * (summary.workers > 1)})"],
        ["input files", len(summary.inputs)],
        ["rows", f"{summary.rows:,}"],
        ["scored", f"{summary.scored:,}"],
        ["rejected", f"{summary.rejected:,}"],
        ["rows/s", f"{summary.rows_per_s:,.0f} (after {summary.startup_s:.1f} s start-up)"],
        ["seconds", f"{summary.seconds:.1f}"],
        ["output", str(Path(summary.outputs[0]).parent) if summary.outputs else "-"],
        ["rejects", summary.rejects_file],
    ]
    table("batch scoring", ["", ""], rows)
    if summary.reasons:
        reasons = [[f"{n:,}", reason] for reason, n in summary.reasons]
        table("most common reject reasons", ["rows", "reason"], reasons)
    if summary.rejected:
        console().print(
            f"{summary.rejected:,} rejected rows are in {summary.rejects_file}", style="dim"
        )


@contextmanager
def _progress() -> Iterator[Callable[[int, int], None]]:
    """A Rich progress bar of rows scored on standard error (quiet when it is not a terminal)."""
    import sys

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("Scoring"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
        TimeElapsedColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty(),
    )  # fmt: skip
    task = progress.add_task("Scoring", total=None)
    with progress:
        yield lambda done, total: progress.update(task, completed=done, total=total)
