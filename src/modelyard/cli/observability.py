"""``yard observability -o DIR``: the Grafana dashboard, Prometheus alerts and their runbook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def runbook_url_option() -> Any:  # typer.Option's own type
    """``--runbook-url``, the same option in ``yard observability`` and ``yard k8s``: where the
    runbook is published; each alert's ``runbook_url`` is it plus ``#`` and the alert's section
    (default: ``RUNBOOK.md``, next to the rules in the bundle)."""
    return typer.Option(
        "RUNBOOK.md",
        help="Where RUNBOOK.md (of 'yard observability') will be published; each alert links "
        "to its section.",
    )


def observability(
    output: Path = typer.Option(..., "--output", "-o", help="A new (or empty) folder."),
    force: bool = typer.Option(
        False, "--force", help="Replace a DIR yard observability wrote before."
    ),
    error_ratio: float = typer.Option(0.05, help="Alert: share of predictions answered 5xx."),
    p99_ms: float = typer.Option(500.0, help="Alert: p99 request time, in milliseconds."),
    queue_saturation: float = typer.Option(0.8, help="Alert: share of --max-queue queued."),
    max_queue: int | None = typer.Option(
        None, help="The servers' queue limit (default: serving.max_queue of the settings)."
    ),
    drift_share: float | None = typer.Option(
        None, help="Alert: share of columns drifted (default: monitoring.drift.share_threshold)."
    ),
    log_backlog_rows: int = typer.Option(10_000, help="Alert: prediction-log rows spooled."),
    runbook_url: str = runbook_url_option(),
) -> None:
    """Write a Grafana dashboard, Prometheus alerting rules with promtool tests, and a runbook
    for the metrics of 'yard serve'."""
    from modelyard.cli._registry import load_settings
    from modelyard.deploy.observability import AlertThresholds, write_bundle

    if max_queue is None or drift_share is None:  # the servers' own settings
        settings = load_settings()
        max_queue = settings.serving.max_queue if max_queue is None else max_queue
        drift = settings.monitoring.drift
        drift_share = drift.share_threshold if drift_share is None else drift_share
    thresholds = AlertThresholds(
        error_ratio=error_ratio, p99_ms=p99_ms, queue_saturation=queue_saturation,
        max_queue=max_queue, drift_share=drift_share, log_backlog_rows=log_backlog_rows,
    )  # fmt: skip
    files = write_bundle(output, thresholds=thresholds, runbook_url=runbook_url, force=force)
    print(f"Wrote {output}:")
    for file in files:
        print(f"  {file.name}")
    print(
        f"Next: promtool test rules {output / 'modelyard-alerts.test.yaml'}; import "
        f"{output / 'modelyard-dashboard.json'} into Grafana."
    )
