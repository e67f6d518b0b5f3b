"""``yard gate``: check a candidate model against thresholds and a baseline on labelled data.

Exit codes: 0 the gate passed, 1 it failed, 2 it could not reach a verdict: a usage error (a bad
option, or data the gate cannot use: a missing file, target, slice or feature column), a model,
version or alias that does not exist, a broken configuration, an unreachable database, an
artifact that fails its checksum. So a CI job reads 1 as "the candidate is worse" and nothing
else. Every error is one line on stderr; an unexpected one (a bug) also prints its traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from modelyard.cli._output import print_json, table

if TYPE_CHECKING:
    from modelyard.pipelines.gate import GateResult

_METRIC_HELP = (
    "METRIC[:threshold=X,min_absolute_change=X,min_relative_change=X,slice=COL=VALUE|COL|*], "
    "repeatable, e.g. roc_auc:threshold=0.8 or r2:min_relative_change=0.01."
)


def gate(
    candidate: str = typer.Option(..., "--candidate", help="The candidate version (REF)."),
    baseline: str | None = typer.Option(
        None, "--baseline", help="The version to beat, e.g. churn@production."
    ),
    data: str = typer.Option(..., "--data", help="Labelled data: a CSV or Parquet file."),
    target: str = typer.Option(..., "--target", help="The label column of --data."),
    metric: list[str] = typer.Option(..., "--metric", help=_METRIC_HELP),
    slice_by: list[str] = typer.Option(
        [], "--slice", help="Also score each value of this column (repeatable)."
    ),
    markdown: Path | None = typer.Option(
        None, "--markdown", help="Write a pull-request comment (Markdown) to this file."
    ),
    json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Load pickled models."),
) -> None:
    """Score --candidate (and --baseline) on --data and check every --metric; exit 0 when the
    gate passes, 1 when it fails, 2 when it cannot run (usage, a missing model, configuration)."""
    from modelyard.cli._registry import open_registry
    from modelyard.errors import ModelyardError
    from modelyard.pipelines import gate as gates

    try:
        thresholds = [gates.parse_metric_option(m) for m in metric]
        if markdown is not None:
            gates.check_markdown_path(markdown)
        registry = open_registry()
        result = gates.gate(
            registry, candidate, baseline=baseline, data=data, target=target,
            thresholds=thresholds, slices=slice_by,
            trust_pickle=trust_pickle or registry.settings.serving.trust_pickle,
        )  # fmt: skip
        if markdown is not None:
            gates.write_markdown(result, markdown)
    except ModelyardError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except Exception as exc:  # the process edge: a bug must not read as a failed gate (exit 1)
        import traceback

        traceback.print_exc()
        typer.echo(f"error: the gate could not run: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(2) from None
    if json:
        print_json(result)
    else:
        _print(result)
    raise typer.Exit(0 if result.passed else 1)


def _print(result: GateResult) -> None:
    from rich.text import Text

    from modelyard.cli._output import console
    from modelyard.pipelines.gate import COLUMNS, result_cells

    verdict = ("PASSED", "bold green") if result.passed else ("FAILED", "bold red")
    against = f" against {result.baseline_version}" if result.baseline_version else ""
    console().print(
        Text.assemble(
            ("Gate ", "bold"), verdict,
            f": {result.candidate_version}{against} on {result.data} "
            f"({result.rows} rows, target {result.target}, {result.task}).",
        )
    )  # fmt: skip
    overall = [result_cells(r) for r in result.results if r.slice_column is None]
    table("all rows", COLUMNS, overall)
    for column in result.slices:
        rows = [
            [r.slice_value, r.rows, *result_cells(r)]
            for r in result.results
            if r.slice_column == column
        ]
        table(f"by {column}", [column, "rows", *COLUMNS], rows)
    for failure in result.failures:
        console().print(f"failed: {failure}")
