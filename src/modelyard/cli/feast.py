"""``yard features skew``: Feast's online store against its offline store."""

from __future__ import annotations

import typer

from modelyard.cli._output import print_json, table

app = typer.Typer(help="Feast feature services (online features, training data).",
                  no_args_is_help=True)  # fmt: skip


@app.command("skew")
def skew(
    entities: str = typer.Argument(..., help="CSV or Parquet of join keys (event_timestamp too)."),
    service: str = typer.Option(..., help="The Feast feature service."),
    repo: str = typer.Option(..., help="The Feast repository (with feature_store.yaml)."),
    feast_url: str | None = typer.Option(None, help="Feast's feature server (feast serve)."),
    max_share: float | None = typer.Option(
        None, min=0, max=1, help="Exit 1 when a feature's mismatch share is above this."
    ),
    json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Compare the online features of these entities with the offline store's values (as of
    each row's event_timestamp, or now) and print each feature's mismatch share."""
    from pathlib import Path

    from modelyard.cli._registry import load_settings
    from modelyard.errors import ConfigError
    from modelyard.integrations.feast_offline import measure_skew
    from modelyard.pipelines.builtin import load_table

    settings = load_settings().feast
    url = feast_url or settings.url
    if not url:
        raise ConfigError("Give Feast's feature server with --feast-url (or MODELYARD_FEAST__URL).")
    report = measure_skew(
        load_table(entities), repo=str(Path(repo).resolve()), service=service, url=url,
        python=settings.python, timeout_s=settings.timeout_s,
    )  # fmt: skip
    if json:
        print_json({"service": report.service, "rows": report.rows,
                    "mismatch_share": report.mismatch_share})  # fmt: skip
    else:
        table(
            f"skew of feature service {service} ({report.rows} entities)",
            ["feature", "mismatch share"],
            [(name, f"{share:.1%}") for name, share in report.mismatch_share.items()],
        )
    if max_share is not None and report.worst > max_share:
        raise typer.Exit(1)
