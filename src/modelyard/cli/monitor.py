"""``yard monitor``: the prediction log, drift, alerts and the HTML report."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from modelyard.cli._output import print_json, table
from modelyard.cli._registry import load_settings
from modelyard.core.sizes import format_size

if TYPE_CHECKING:
    from modelyard.monitoring.alerts import Incident
    from modelyard.monitoring.types import DriftResult

app = typer.Typer(
    help="Monitoring: the prediction log, drift, alerts and reports.", no_args_is_help=True
)


@app.command("log")
def log(
    name: str = typer.Argument(..., help="The deployment or model name."),
    since: str = typer.Option("1h", "--since", help="How far back, e.g. 15m, 1h, 2d."),
    limit: int = typer.Option(20, "--limit", min=1, help="Rows shown, newest first."),
    json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
    log_version: int | None = typer.Option(
        None, "--log-version", min=0, help="A Delta log as of this table version."
    ),
) -> None:
    """The latest logged predictions of NAME ('yard serve --log-predictions')."""
    from modelyard.core.durations import parse_duration
    from modelyard.monitoring.mirror import readable_root, store_named
    from modelyard.monitoring.query import read_log

    window = timedelta(seconds=parse_duration(since))
    settings = load_settings()
    with store_named(settings):
        root = readable_root(settings, name)
        rows = read_log(root, name, since=window, limit=limit, version=log_version).to_pylist()
    if json:
        print_json(rows)
        return
    from modelyard.cli._output import console
    from modelyard.core.listing import listed

    columns = [c for c in rows[0] if c not in ("deployment", "model")]
    cells = {c: [str(_cell(row[c])) for row in rows] for c in columns}
    kept, left_out = _fitting(columns, cells, console().width)
    title = f"predictions of {name} (newest first)"
    table(title, kept, [[cells[c][i] for c in kept] for i in range(len(rows))])
    if left_out:
        inputs = sum(c.startswith("in_") for c in columns)
        print(  # one line, not wrapped at the table's width
            f"{len(left_out)} of {inputs} input columns not shown: {listed(left_out, limit=8)}; "
            "use --json for every column."
        )


def _fitting(
    columns: list[str], cells: dict[str, list[str]], width: int
) -> tuple[list[str], list[str]]:
    """The columns of a log table that fit ``width`` characters whole (each header on one line):
    the log's own columns and the outputs always, then the inputs in order while they fit; and
    the inputs left out."""

    def needs(column: str) -> int:  # the widest cell, one space each side, one border
        return max(len(column), *(len(v) for v in cells[column])) + 3

    inputs = [c for c in columns if c.startswith("in_")]
    used = 1 + sum(needs(c) for c in columns if c not in inputs)
    chosen = set()
    for column in inputs:
        used += needs(column)
        if used > width:
            break
        chosen.add(column)
    kept = [c for c in columns if c not in inputs or c in chosen]
    return kept, [c for c in inputs if c not in chosen]


@app.command("drift")
def drift(
    name: str = typer.Argument(..., help="The deployment or model name (its prediction log)."),
    window: str | None = typer.Option(
        None, "--window", help="How far back, e.g. 15m, 1h, 1d (default 1h)."
    ),
    last: int | None = typer.Option(None, "--last", min=1, help="The newest N rows instead."),
    reference: str | None = typer.Option(
        None,
        "--reference",
        help="NAME/VERSION (its stored profile) or a CSV/Parquet file; "
        "default: the version that answered most rows.",
    ),
    current: str | None = typer.Option(
        None, "--current", help="A CSV/Parquet file to compare instead of the log."
    ),
    json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Drift of NAME's inputs and outputs in a window of its prediction log."""
    from modelyard.cli._registry import open_registry
    from modelyard.core.durations import parse_duration
    from modelyard.errors import InvalidInputError
    from modelyard.monitoring.mirror import readable_root, store_named
    from modelyard.monitoring.service import DriftOptions, deployment_drift

    if window is not None and last is not None:
        raise InvalidInputError(
            "--window and --last both choose the rows to compare; pass one of them "
            f"(--last {last} alone for the newest {last} rows)."
        )
    if current is not None and (window is not None or last is not None):
        given = "--window" if window is not None else "--last"
        raise InvalidInputError(
            f"--current {current} is the rows to compare, so {given} would be ignored; pass "
            "one of them."
        )
    settings = load_settings()
    span = timedelta(seconds=parse_duration(window or "1h"))
    with store_named(settings), _progress("Scanning") as advance:
        result = deployment_drift(
            open_registry(), readable_root(settings, name), name, window=span, last=last,
            reference=reference, current=current,
            options=DriftOptions.from_settings(settings), progress=advance,
        )  # fmt: skip
    if json:
        print_json(result)
        return
    _drift_tables(result)


@app.command("report")
def report(
    name: str = typer.Argument(..., help="The deployment or model name (its prediction log)."),
    window: str = typer.Option("24h", "--window", help="How far back, e.g. 6h, 24h, 7d."),
    output: Path = typer.Option(Path("report.html"), "--output", "-o", help="The HTML file."),
    reference: str | None = typer.Option(
        None, "--reference", help="NAME/VERSION or a CSV/Parquet file (as for 'drift')."
    ),
) -> None:
    """Write one self-contained HTML report: drift, histograms, traffic and performance."""
    from modelyard.cli._registry import open_registry
    from modelyard.core.durations import parse_duration
    from modelyard.monitoring.mirror import readable_root, store_named
    from modelyard.monitoring.report import write_report
    from modelyard.monitoring.service import DriftOptions, build_report
    from modelyard.monitoring.types import Prices

    settings = load_settings()
    span = timedelta(seconds=parse_duration(window))
    with store_named(settings), _progress("Scanning") as advance:
        data = build_report(
            open_registry(), readable_root(settings, name), name, window=span,
            reference=reference,
            options=DriftOptions.from_settings(settings), progress=advance,
            prices=Prices.of(settings.monitoring.cost),
        )  # fmt: skip
    path = write_report(data, output)
    drift = data.drift
    print(
        f"Wrote {path} ({format_size(path.stat().st_size)}): {drift.drifted} of "
        f"{len(drift.columns)} columns drifted, {len(data.series)} points over {data.window}."
    )
    if data.estimated is not None:
        found = [w for w in data.estimated.windows if w.rows]
        alerting = [w for w in found if any(m.alert for m in w.metrics.values())]
        print(f"Estimated performance: {len(alerting)} of {len(found)} windows alert.")
    if data.reconstruction is not None:
        found_ = [w for w in data.reconstruction.windows if w.rows]
        print(
            f"Reconstruction error: {sum(w.alert for w in found_)} of {len(found_)} windows "
            "past its thresholds."
        )


@app.command("reconstruction")
def reconstruction(
    name: str = typer.Argument(..., help="The deployment or model name (its prediction log)."),
    window: str = typer.Option("1h", "--window", help="How far back, e.g. 15m, 1h, 1d."),
    every: str | None = typer.Option(
        None, "--every", help="One row per hour or day of the window: 1h or 1d."
    ),
    reference: str | None = typer.Option(
        None, "--reference", help="NAME/VERSION (its stored sample) or a CSV/Parquet file."
    ),
    json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Multivariate drift of NAME's inputs: PCA reconstruction error per window.

    Each window's error against the reference's thresholds: drift that no single column shows,
    such as a changed correlation."""
    from modelyard.cli._registry import open_registry
    from modelyard.monitoring.mirror import readable_root, store_named
    from modelyard.monitoring.multivariate import reconstruction_error
    from modelyard.monitoring.service import DriftOptions

    settings = load_settings()
    span, step = _span(window), _every(every)
    with store_named(settings):
        result = reconstruction_error(
            open_registry(), readable_root(settings, name), name, window=span, every=step,
            reference=reference, options=DriftOptions.from_settings(settings),
        )  # fmt: skip
    if json:
        print_json(result)
        return
    from modelyard.cli._output import console

    out = console()
    out.print(
        f"Reconstruction error of {name}'s inputs, last {window}; reference {result.reference}: "
        f"{result.reference_rows:,} rows, {len(result.columns)} columns."
    )
    out.print(
        f"{result.components} PCA components explain {result.variance:.0%} of its variance; "
        f"its error {result.reference_error:.4g}, thresholds {result.lower_threshold:.4g} to "
        f"{result.upper_threshold:.4g}."
    )
    rows = [
        [_window_label(w.start, w.end), f"{w.rows:,}",
         "-" if w.error is None else f"{w.error:.4g}",
         "-" if w.sampling_error is None else f"±{3 * w.sampling_error:.2g}",
         "ALERT" if w.alert else ("no rows" if w.error is None else "ok")]
        for w in result.windows
    ]  # fmt: skip
    table("reconstruction error", ["window", "rows", "error", "band", "alert"], rows)


@app.command("estimate")
def estimate(
    name: str = typer.Argument(..., help="The deployment or model name (its prediction log)."),
    window: str = typer.Option("24h", "--window", help="How far back, e.g. 6h, 24h, 7d."),
    chunk: str | None = typer.Option(
        None,
        "--chunk",
        help="Each estimate's window: a period (1h, 1d) or a number of rows; "
        "default [monitoring.estimation] chunk.",
    ),
    version: str | None = typer.Option(
        None, "--version", help="MODEL/VERSION to estimate; default the newest prediction's."
    ),
    metric: list[str] = typer.Option(
        [], "--metric", help="Only these metrics (roc_auc, f1, precision, recall, accuracy)."
    ),
    reference: Path | None = typer.Option(
        None,
        "--reference",
        help="A labelled CSV/Parquet file to calibrate on (label, proba_0, "
        "proba_1... [, predict]); default the log's oldest labelled predictions.",
    ),
    json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Performance of NAME estimated without labels (CBPE) per window.

    Each metric's estimate with its band, thresholds and alert; where labels arrived, the
    realised value and the estimate's error beside it."""
    from modelyard.cli._registry import open_registry
    from modelyard.errors import InvalidInputError
    from modelyard.monitoring.estimated import estimate_performance
    from modelyard.monitoring.estimation import METRICS
    from modelyard.monitoring.mirror import readable_root, store_named

    unknown = [m for m in metric if m not in METRICS]
    if unknown:
        raise InvalidInputError(
            f"--metric {unknown[0]!r} is not estimated; use one of {', '.join(METRICS)}."
        )
    from modelyard.core.tables import read_data_file

    labelled = read_data_file(str(reference), "reference") if reference is not None else None
    settings = load_settings()
    with store_named(settings):
        found = estimate_performance(
            readable_root(settings, name), name, since=_span(window), chunk=chunk,
            reference=labelled, version=version, registry=open_registry(),
            settings=settings.monitoring.estimation,
        )  # fmt: skip
    if json:
        print_json(found)
        return
    from modelyard.cli._output import console

    source = "its oldest labelled predictions" if found.reference == "log" else "a table"
    console().print(
        f"Estimated performance of {found.model}/{found.version} on {name}, last {window} in "
        f"windows of {found.chunk}; reference: {source} ({found.reference_rows:,} rows)."
    )
    wanted = [m for m in found.metrics if not metric or m in metric]
    rows = []
    for w in (w for w in found.windows if w.rows):
        when = _window_label(w.start.isoformat() if w.start else None,
                             w.end.isoformat() if w.end else None)  # fmt: skip
        for name_ in wanted:
            e = w.metrics.get(name_)
            if e is None:
                continue
            rows.append([
                when, f"{w.rows:,}", f"{w.labelled:,}", name_, _number(e.value),
                f"{_number(e.lower)} - {_number(e.upper)}",
                f"{_number(e.lower_threshold)} - {_number(e.upper_threshold)}",
                "ALERT" if e.alert else "ok", _number(e.realized), _number(e.error, sign=True),
            ])  # fmt: skip
    table(
        "estimated performance (CBPE)",
        ["window", "rows", "labelled", "metric", "estimate", "band", "thresholds", "alert",
         "realised", "error"],
        rows,
    )  # fmt: skip


def _number(value: float | None, *, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f}" if sign else f"{value:.3f}"


def _span(window: str) -> timedelta:
    from modelyard.core.durations import parse_duration

    return timedelta(seconds=parse_duration(window))


def _every(every: str | None) -> timedelta | None:
    from modelyard.errors import InvalidInputError

    if every is None:
        return None
    if every not in ("1h", "1d"):
        raise InvalidInputError(f"--every {every!r} is not a window size; use --every 1h or 1d.")
    return _span(every)


def _window_label(start: str | None, end: str | None) -> str:
    if start is None or end is None:
        return "-"
    first, last = datetime.fromisoformat(start), datetime.fromisoformat(end)
    return f"{first:%m-%d %H:%M}-{last:%H:%M}"


def _drift_tables(result: DriftResult) -> None:
    from rich.text import Text

    from modelyard.cli._output import console
    from modelyard.monitoring.drift import null_shares_text, ranked, score_text

    verdict = "DATASET DRIFT" if result.dataset_drift else "no dataset drift"
    console().print(
        Text.assemble(
            (verdict, "bold"),
            f": {result.drifted} of {len(result.columns)} columns drifted "
            f"({result.share:.0%}; threshold {result.threshold:.0%}). Reference "
            f"{result.reference} ({result.reference_rows} rows), current {result.current} "
            f"({result.current_rows} rows).",
        )
    )
    for title, columns in (("inputs", result.columns), ("outputs", result.outputs)):
        if columns:
            ordered = ranked(columns)
            rows = [
                [c.name, c.kind, c.method, score_text(c), f"{c.threshold:g}",
                 "DRIFT" if c.drifted else "ok", c.current_rows,
                 null_shares_text(c) + (" DRIFT" if c.null_drifted else "")]
                for c in ordered
            ]  # fmt: skip
            table(
                f"drift of {title}",
                ["column", "kind", "method", "score", "threshold", "drift", "rows", "nulls"],
                rows,
            )
    for note in result.notes:
        console().print(Text(note))


@contextmanager
def _progress(what: str) -> Iterator[Callable[[int], None]]:
    """A Rich progress line on standard error while data is scanned (quiet when piped)."""
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty(),
    )  # fmt: skip
    task = progress.add_task(what, total=None)
    with progress:
        yield lambda n: progress.advance(task, n)


def _cell(value: object) -> object:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in value) + "]"
    return value


@app.command("cost")
def cost(
    name: str = typer.Argument(..., help="The deployment or model name."),
    since: str = typer.Option("24h", "--since", help="How far back, e.g. 1h, 24h, 7d."),
    json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """What each version of NAME cost to serve over the window: CPU-seconds and GB-hours of
    memory per 1,000 predictions, and the money at the monitoring.cost prices."""
    from modelyard.core.durations import parse_duration
    from modelyard.monitoring.cost import cost_report
    from modelyard.monitoring.mirror import readable_root, store_named
    from modelyard.monitoring.types import Prices

    window = timedelta(seconds=parse_duration(since))
    settings = load_settings()
    with store_named(settings):
        report = cost_report(
            readable_root(settings, name), name, window=window,
            prices=Prices.of(settings.monitoring.cost),
        )  # fmt: skip
    if json:
        print_json(report)
        return
    currency = report.prices.currency
    rows = [
        [m.model, m.version, f"{m.predictions:,}", f"{m.cpu_s:.3f}", f"{m.cpu_s_per_1k:.4g}",
         format_size(m.memory_bytes) if m.memory_bytes else "-", f"{m.gb_h_per_1k:.3g}",
         f"{m.cost_per_1k:.3g}", f"{m.cost:.3g}"]
        for m in report.models
    ]  # fmt: skip
    columns = ["model", "version", "predictions", "CPU s", "CPU s / 1k", "memory",
               "GB-h / 1k", f"{currency} / 1k", currency]  # fmt: skip
    table(f"cost of {name}, last {since}", columns, rows)
    p = report.prices
    typer.echo(f"prices: {p.cpu_hour:g} {currency} per CPU-hour, {p.gb_hour:g} per GB-hour")
    if not report.measured:
        typer.echo("This log was written before the server measured cost; serve it again with "
                   "'yard serve --log-predictions' to measure it.")  # fmt: skip


@app.command("check")
def check(
    fail_on_firing: bool = typer.Option(
        False, "--fail-on-firing", help="Exit 1 when any alert is firing (for CI jobs)."
    ),
    json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Evaluate every alert rule (the monitoring.alerts.rules tables of modelyard.toml) once now,
    notify the alerts that fire or resolve, and show each rule's state. Exits 1 when a rule
    cannot be evaluated, or with --fail-on-firing when an alert is firing; 0 otherwise."""
    from modelyard.cli._output import console
    from modelyard.monitoring.alerts import (
        check_alerts,
        outcome_warnings,
        rule_warnings,
        validate_rules,
    )

    settings = load_settings()
    config = settings.monitoring.alerts
    validate_rules(config.rules, webhooks=config.webhooks)  # before the database is opened
    for line in rule_warnings(config.rules):
        typer.echo(f"warning: {line}", err=True)
    from modelyard.registry import Registry

    if not config.rules and not json:
        console().print("No alert rules; add [[monitoring.alerts.rules]] to modelyard.toml.")
    outcomes = check_alerts(Registry(settings), settings)
    if json:
        print_json(outcomes)
    elif outcomes:
        rows = [[o.rule, o.deployment, o.metric, _cell(o.value), f"{o.op} {o.threshold:g}",
                 _alert_state(o.state, o.since, o.event)] for o in outcomes]  # fmt: skip
        table("alerts", ["rule", "deployment", "metric", "value", "condition", "state"], rows)
    for o in outcomes:
        if o.state == "error":
            typer.echo(f"error: rule {o.rule!r} was not evaluated: {o.detail}", err=True)
        elif o.notify_error:
            typer.echo(f"warning: rule {o.rule!r}: notification failed: {o.notify_error}", err=True)
    for line in outcome_warnings(outcomes):
        typer.echo(f"warning: {line}", err=True)
    firing = fail_on_firing and any(o.state == "firing" for o in outcomes)
    if firing or any(o.state == "error" for o in outcomes):
        raise typer.Exit(1)


@app.command("alerts")
def alerts(
    rule: str | None = typer.Option(None, "--rule", help="Only this rule's incidents."),
    limit: int = typer.Option(50, "--limit", min=1, help="Incidents shown, newest first."),
    json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Alert incidents, newest first: when each started, fired and resolved, and whether its
    webhooks and command succeeded."""
    from modelyard.cli._registry import open_registry
    from modelyard.monitoring.alerts import alert_history

    incidents = alert_history(open_registry().db, rule=rule, limit=limit)
    if json:
        print_json(incidents)
        return
    columns = ["id", "rule", "deployment", "metric", "value", "condition", "started", "fired",
               "resolved", "notified", "command"]  # fmt: skip
    table("alert incidents (newest first)", columns, [_incident_row(i) for i in incidents])


def _incident_row(i: Incident) -> list[object]:
    from modelyard.cli._output import when

    command = i.command_error or (f"exit {i.command_exit}" if i.command_exit is not None else None)
    return [
        i.id, i.rule, i.deployment, i.metric, _cell(i.value), f"{i.op} {i.threshold:g}",
        when(i.started_at), when(i.fired_at), when(i.resolved_at) if i.resolved_at else "FIRING",
        "yes" if i.notified else (i.notify_error or "no webhooks"), command,
    ]  # fmt: skip


def _alert_state(state: str, since: datetime | None, event: str | None) -> str:
    from modelyard.cli._output import when

    if state == "pending":
        return f"pending since {when(since)}"
    if state == "firing":
        return "FIRING (new)" if event == "fired" else f"FIRING since {when(since)}"
    return {"no_data": "no data"}.get(state, state)
