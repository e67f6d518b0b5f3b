"""``yard monitor``: the prediction log (drift, performance and reports come later)."""

from __future__ import annotations

from datetime import datetime, timedelta

import typer

from modelyard.cli._output import print_json, table

app = typer.Typer(help="Monitoring: the prediction log.", no_args_is_help=True)


@app.command("log")
def log(
    name: str = typer.Argument(..., help="The deployment or model name."),
    since: str = typer.Option("1h", "--since", help="How far back, e.g. 15m, 1h, 2d."),
    limit: int = typer.Option(20, "--limit", min=1, help="Rows shown, newest first."),
    json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """The latest logged predictions of NAME ('yard serve --log-predictions')."""
    from modelyard.monitoring.query import read_log
    from modelyard.rollout.specs import parse_duration
    from modelyard.settings import Settings

    window = timedelta(seconds=parse_duration(since))
    rows = read_log(Settings().resolved_log_root, name, since=window, limit=limit).to_pylist()
    if json:
        print_json(rows)
        return
    columns = [c for c in rows[0] if c not in ("deployment", "model")]
    shown = [[_cell(row[c]) for c in columns] for row in rows]
    table(f"predictions of {name} (newest first)", columns, shown)


def _cell(value: object) -> object:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in value) + "]"
    return value
