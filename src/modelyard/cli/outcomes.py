"""``yard outcomes``: business outcomes of logged predictions, and their sums and means."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from modelyard.cli._output import console, print_json, table
from modelyard.cli.labels import ingest_steps, print_ingest

if TYPE_CHECKING:
    from modelyard.monitoring.outcomes import OutcomeGroup, OutcomeSummary

app = typer.Typer(
    help="Business outcomes: a number per request, joined to logged predictions.",
    no_args_is_help=True,
)
JSON = typer.Option(False, "--json", help="Print JSON for scripts.")


@app.command("ingest")
def ingest(
    file: Path = typer.Argument(..., help="CSV or Parquet: request id, value[, row, time]."),
    deployment: str = typer.Option(..., "--deployment", help="The name predictions log under."),
    id_column: str = typer.Option("request_id", "--id-column", help="The request id column."),
    value_column: str = typer.Option("value", "--value-column", help="The outcome column."),
    time_column: str = typer.Option("time", "--time-column", help="When it happened (optional)."),
    row_column: str = typer.Option("row", "--row-column", help="Row of a multi-row request."),
    json: bool = JSON,
) -> None:
    """Store outcomes for a deployment's logged predictions (the latest value of a request
    wins)."""
    from modelyard.cli._registry import load_settings
    from modelyard.monitoring.mirror import publish, readable_root, store_named
    from modelyard.monitoring.outcomes import OutcomeColumns, ingest_outcomes

    columns = OutcomeColumns(
        request_id=id_column, value=value_column, time=time_column, row=row_column
    )
    settings = load_settings()
    with store_named(settings), ingest_steps(enabled=not json, noun="outcomes") as on_step:
        root = readable_root(settings, deployment)
        result = ingest_outcomes(root, deployment, file, columns=columns, on_step=on_step)
        publish(settings, result.path)
    print_ingest(result, "outcomes", deployment, json=json)


@app.command("show")
def show(
    deployment: str = typer.Argument(..., help="The deployment or model name."),
    since: str = typer.Option("1h", "--since", help="Predictions of the last 15m, 1h, 7d..."),
    json: bool = JSON,
) -> None:
    """Count, sum, mean and standard error of the outcomes of DEPLOYMENT's predictions of the
    last --since, per model, version and route."""
    from datetime import timedelta

    from modelyard.cli._registry import load_settings
    from modelyard.core.durations import parse_duration
    from modelyard.monitoring.mirror import readable_root, store_named
    from modelyard.monitoring.outcomes import summarize_outcomes

    window = timedelta(seconds=parse_duration(since))
    settings = load_settings()
    with store_named(settings):
        root = readable_root(settings, deployment)
        result = summarize_outcomes(root, deployment, since=window)
    if json:
        print_json(result)
        return
    _render(deployment, since, result)


def _render(name: str, since: str, result: OutcomeSummary) -> None:
    out = console()
    out.print(f"outcomes of {name}'s predictions of the last {since}")
    if result.total is None:
        out.print(f"No outcomes joined these predictions yet; see 'yard outcomes ingest FILE "
                  f"--deployment {name}'.")  # fmt: skip
    else:
        rows = [_row(g) for g in [*result.groups, result.total]]
        rows[-1][:3] = ["all", "", ""]
        table(None, ["model", "version", "route", "n", "sum", "mean", "stderr"], rows)
    joined = result.total.count if result.total is not None else 0
    out.print(f"with an outcome: {joined:,} of {result.predictions:,} predictions")


def _row(group: OutcomeGroup) -> list[str]:
    stderr = "-" if group.stderr is None else f"{group.stderr:.4g}"
    return [
        group.model, group.version, group.route, f"{group.count:,}", f"{group.sum:.6g}",
        f"{group.mean:.6g}", stderr,
    ]  # fmt: skip
