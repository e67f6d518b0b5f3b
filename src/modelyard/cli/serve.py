"""``yard serve`` and ``yard tokens``."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import typer

from modelyard.cli._output import console, print_json, slots_dict, table, when

if TYPE_CHECKING:
    from modelyard.registry import Registry
    from modelyard.settings import Settings

tokens_app = typer.Typer(help="API tokens for the server.", no_args_is_help=True)


def serve(
    refs: list[str] | None = typer.Argument(None, help="NAME@ALIAS (followed) or NAME/VERSION."),
    deployment: list[str] = typer.Option([], help="Serve a deployment (yard deploy); repeatable."),
    host: str | None = typer.Option(None, help="Address to bind (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default 8080)."),
    grpc_port: int | None = typer.Option(
        None, min=0, max=65535, help="Also serve the Open Inference Protocol over gRPC here."
    ),
    workers: int | None = typer.Option(None, min=1, help="Worker processes sharing the port."),
    max_batch_size: int | None = typer.Option(None, min=1, help="Rows per model call."),
    max_batch_delay_ms: float | None = typer.Option(None, min=0, help="Wait to fill a batch."),
    max_batch_tokens: int | None = typer.Option(
        None, min=1, help="Padded tokens per model call (text models: rows x longest row)."
    ),
    max_queue: int | None = typer.Option(None, min=1, help="Queued requests before 503."),
    timeout_ms: float | None = typer.Option(None, min=1, help="Deadline per request (504)."),
    runtime: str | None = typer.Option(
        None,
        help="auto|native|onnx|quantized (auto: a text model's int8 twin, else ONNX, when "
        "present).",
    ),
    auth: bool = typer.Option(False, "--auth", help="Require tokens (see 'yard tokens')."),
    trust_pickle: bool = typer.Option(
        False, "--trust-pickle", help="Serve models registered as pickles."
    ),
    log_predictions: bool = typer.Option(
        False, "--log-predictions", help="Log predictions to Parquet ('yard monitor log')."
    ),
    open_metrics: bool = typer.Option(
        False, "--open-metrics", help="With --auth, serve /metrics without a token."
    ),
    open_docs: bool = typer.Option(
        False, "--open-docs", help="With --auth, serve /openapi.json and /docs without a token."
    ),
    ui: bool = typer.Option(False, "--ui", help="Also serve the dashboard under /ui."),
    feast_url: str | None = typer.Option(
        None,
        help="Feast's feature server (feast serve): versions that declare a feature "
        "service take entity keys and fetch their features there, once per batch.",
    ),
) -> None:
    """Serve models over the Open Inference Protocol v2 (REST, and gRPC with --grpc-port),
    MLflow's /invocations and TF Serving's REST API."""
    from modelyard.cli._registry import load_settings
    from modelyard.serving.server import serve as run

    if runtime not in (None, "auto", "native", "onnx", "quantized"):
        raise typer.BadParameter("use auto, native, onnx or quantized", param_hint="--runtime")
    settings = load_settings()
    serving = settings.serving.model_copy(
        update={
            k: v
            for k, v in {
                "host": host, "port": port, "grpc_port": grpc_port, "workers": workers,
                "max_batch_size": max_batch_size, "max_batch_delay_ms": max_batch_delay_ms,
                "max_queue": max_queue, "max_batch_tokens": max_batch_tokens,
                "timeout_ms": timeout_ms, "runtime": runtime, "auth": auth or None,
                "trust_pickle": trust_pickle or None, "open_metrics": open_metrics or None,
                "open_docs": open_docs or None,
            }.items()
            if v is not None
        }
    )  # fmt: skip
    serving = serving.model_copy(update=platform_settings(os.environ, port_given=port is not None))
    update: dict[str, object] = {"serving": serving}
    if feast_url is not None:
        update["feast"] = settings.feast.model_copy(update={"url": feast_url})
    if log_predictions:
        update["monitoring"] = settings.monitoring.model_copy(update={"log": True})
    # the server reports what it loads, on which runtime and provider, and its swaps at INFO
    # (uvicorn's own lines are INFO too); the rest of modelyard stays at the CLI's WARNING
    serving_logger = logging.getLogger("modelyard.serving")
    if serving_logger.getEffectiveLevel() > logging.INFO:
        serving_logger.setLevel(logging.INFO)
    final = settings.model_copy(update=update)
    refs = mlflow_refs(final, list(refs or []), os.environ.get("MLFLOW_TRACKING_URI"))
    # a version that declares a Feast feature service fetches its features (and without
    # --feast-url it refuses to load, saying so, rather than ask clients for the features)
    from modelyard.integrations.feast import FACTORY, online_features

    features = online_features(final.feast)
    if ui:
        from modelyard.ui.app import SERVED_FACTORY, with_dashboard

        if final.feast.url and final.serving.workers > 1:
            raise typer.BadParameter(
                "--ui with Feast features serves one worker", param_hint="--workers"
            )
        run(final, refs, list(deployment), wrap=with_dashboard(final),
            factory=SERVED_FACTORY, features=features)  # fmt: skip
    else:
        run(final, refs, list(deployment), features=features, factory=FACTORY)


def mlflow_refs(settings: Settings, refs: list[str], tracking_uri: str | None) -> list[str]:
    """With ``MLFLOW_TRACKING_URI`` set, each ``models:/...`` reference is the MLflow server's:
    imported once (``--trust-pickle`` for a pickled scikit-learn model) and served as the stored
    modelyard version it became, pinned (an MLflow alias moved later is read at the next start)."""
    if not tracking_uri or not any(r.strip().startswith("models:/") for r in refs):
        return refs
    from modelyard.cli.mlflow import bound_mlflow_retries
    from modelyard.integrations.mlflow import is_mlflow_ref, resolve_model

    bound_mlflow_retries()
    from modelyard.registry import Registry

    registry = Registry(settings)
    try:
        out = []
        for given in refs:
            ref = given
            if is_mlflow_ref(ref, tracking_uri):
                version = resolve_model(
                    registry, ref, tracking_uri=tracking_uri,
                    trust_pickle=settings.serving.trust_pickle,
                    trusted_types=settings.trusted_types,
                )  # fmt: skip
                logging.getLogger("modelyard.serving").info(
                    "%s is MLflow's %s version %s, served as %s", ref,
                    version.tags.get("mlflow.model_name"),
                    version.tags.get("mlflow.model_version"), version.ref,
                )  # fmt: skip
                ref = version.ref
            out.append(ref)
        return out
    finally:
        registry.close()


def platform_settings(env: Mapping[str, str], *, port_given: bool) -> dict[str, Any]:
    """Vertex AI's container contract: ``AIP_HTTP_PORT`` (unless ``--port`` was given),
    ``AIP_HEALTH_ROUTE`` and ``AIP_PREDICT_ROUTE``, as serving settings."""
    from modelyard.errors import ConfigError

    update: dict[str, Any] = {}
    port = env.get("AIP_HTTP_PORT")
    if port and not port_given:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"AIP_HTTP_PORT is {port!r}; set it to a port number (1-65535).")
        update["port"] = int(port)
    for var, key in (("AIP_HEALTH_ROUTE", "health_route"), ("AIP_PREDICT_ROUTE", "predict_route")):
        route = env.get(var)
        if route:
            if not re.fullmatch(r"/[^\s?#]*", route):
                raise ConfigError(
                    f"{var} is {route!r}; set it to a path that starts with '/' (no query)."
                )
            update[key] = route
    return update


@tokens_app.command("create")
def create(
    scope: str = typer.Option(..., help="predict, read (the dashboard) or admin."),
    model: str | None = typer.Option(None, help="Limit a predict token to this model."),
    expires: str | None = typer.Option(None, help="Lifetime such as 30d, 12h (default: none)."),
    description: str | None = typer.Option(None),
) -> None:
    """Create a token and print it once (only its hash is stored)."""
    from modelyard.cli._registry import open_registry
    from modelyard.serving.tokens import create_token

    registry = open_registry()
    token, info = create_token(
        registry.db, scope=scope, model=model, expires=expires, created_by=registry.identity,
        description=description,
    )  # fmt: skip
    print(token)
    limit = f" for model {info.model}" if info.model else ""
    expiry = f", expires {when(info.expires_at)}" if info.expires_at else ""
    console().print(
        f"{info.scope} token {info.id}{limit}{expiry}; it is not shown again", style="dim"
    )
    if model is not None and not _is_served_name(registry, model):
        # a token may be made before its model is registered, so this is a warning, not a refusal
        typer.echo(
            f"warning: No model or deployment {model!r} is registered yet; the token works once "
            "one is (check the name with 'yard models list' or 'yard rollout list').",
            err=True,
        )


def _is_served_name(registry: Registry, name: str) -> bool:
    """Whether a server could answer for ``name``: a registered model or a deployment."""
    from modelyard.errors import DeploymentNotFoundError, ModelNotFoundError
    from modelyard.rollout import get_deployment

    try:
        registry.get_model(name)
    except ModelNotFoundError:
        try:
            get_deployment(registry.db, name)
        except DeploymentNotFoundError:
            return False
    return True


@tokens_app.command("list")
def list_tokens(json: bool = typer.Option(False, "--json")) -> None:
    """List tokens (never their secrets)."""
    from modelyard.cli._registry import open_registry
    from modelyard.serving.tokens import list_tokens as fetch

    items = fetch(open_registry().db)
    if json:
        print_json([slots_dict(t) for t in items])
        return
    table(
        "tokens",
        ["id", "scope", "model", "created", "by", "expires", "revoked"],
        [(t.id, t.scope, t.model, when(t.created_at), t.created_by, when(t.expires_at),
          "yes" if t.revoked else "") for t in items],
    )  # fmt: skip


@tokens_app.command("revoke")
def revoke(token_id: str) -> None:
    """Revoke a token; servers stop accepting it within seconds."""
    from modelyard.cli._registry import open_registry
    from modelyard.serving.tokens import revoke_token

    info = revoke_token(open_registry().db, token_id)
    console().print(f"revoked token {info.id}")
