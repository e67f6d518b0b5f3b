"""``yard models import-mlflow`` and ``yard models export-mlflow``: an MLflow tracking server's
model registry (``MLFLOW_TRACKING_URI``) as a source and a target."""

from __future__ import annotations

import os

import typer

from modelyard.cli._output import console, print_json, slots_dict
from modelyard.cli._registry import open_registry

JSON = typer.Option(False, "--json", help="Print JSON for scripts.")
#: MLflow's client retries a failing call 7 times with doubling backoff (about 4 minutes, meant for
#: rate limits); a ``yard`` command retries twice and says what failed. Values already in the
#: environment are kept.
MLFLOW_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


def bound_mlflow_retries() -> None:
    """Bound MLflow's retries in this process (the CLI is the edge that owns it; the Python API
    leaves MLflow's defaults alone)."""
    for key, value in MLFLOW_RETRIES.items():
        os.environ.setdefault(key, value)


def tracking_uri() -> str | None:
    """``MLFLOW_TRACKING_URI``, with MLflow's retries bounded."""
    bound_mlflow_retries()
    return os.environ.get("MLFLOW_TRACKING_URI")


def register(app: typer.Typer) -> None:
    """Add the two commands to ``yard models``."""
    app.command("import-mlflow")(import_mlflow)
    app.command("export-mlflow")(export_mlflow)


def import_mlflow(
    name: str = typer.Argument(..., help="The MLflow registered model's name."),
    trust_pickle: bool = typer.Option(
        False,
        "--trust-pickle",
        help="Allow scikit-learn models MLflow pickled (re-saved as skops).",
    ),
    trust_type: list[str] = typer.Option([], help="A skops type to trust, repeatable."),
    json: bool = JSON,
) -> None:
    """Import every version of the MLflow model NAME not imported yet (MLFLOW_TRACKING_URI)."""
    from modelyard.integrations.mlflow import import_model

    results = import_model(
        open_registry(), name, tracking_uri=tracking_uri(), trust_pickle=trust_pickle,
        trusted_types=trust_type,
    )  # fmt: skip
    if json:
        print_json(
            [{"mlflow_version": r.mlflow_version, "ref": r.version.ref, "new": r.new}
             for r in results]
        )  # fmt: skip
        return
    new = [r for r in results if r.new]
    for r in results:
        state = "imported as" if r.new else "already stored as"
        console().print(f"MLflow {name} version {r.mlflow_version}: {state} {r.version.ref}")
    console().print(f"{len(new)} new of {len(results)} versions", style="dim")


def export_mlflow(
    ref: str = typer.Argument(..., help="The modelyard version (NAME/VERSION, NAME@ALIAS)."),
    name: str | None = typer.Option(None, "--name", help="The MLflow model (default: NAME)."),
    experiment: str | None = typer.Option(
        None, help="The MLflow experiment of the run (default: MLFLOW_EXPERIMENT_NAME, Default)."
    ),
    json: bool = JSON,
) -> None:
    """Register a modelyard version in MLflow's model registry (MLFLOW_TRACKING_URI)."""
    from modelyard.integrations.mlflow import export_version

    exported = export_version(
        open_registry(), ref, tracking_uri=tracking_uri(), name=name,
        experiment=experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME"),
    )  # fmt: skip
    if json:
        print_json({**slots_dict(exported), "uri": exported.uri})
        return
    state = "registered" if exported.new else "already registered"
    console().print(f"{state} {ref} in MLflow as {exported.uri} (run {exported.run_id})")
