"""``yard build`` (a container build context) and ``yard container`` (the image's entry)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from modelyard.cli._output import console
from modelyard.core.sizes import format_size
from modelyard.deploy import container as entry

container_app = typer.Typer(
    help="The entry point of images 'yard build' makes (ENTRYPOINT yard container).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``yard build`` and ``yard container`` to the root app."""
    app.command("build")(build)
    app.add_typer(container_app, name="container")


def build(
    ref: str | None = typer.Argument(None, help="NAME@ALIAS (followed) or NAME/VERSION."),
    deployment: str | None = typer.Option(None, help="Build for a deployment instead."),
    output: Path = typer.Option(..., "--output", "-o", help="The folder to write (new or empty)."),
    bake: bool = typer.Option(
        False, "--bake", help="Put the verified model files in the image (no registry at start)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace a build context written before."),
    wheel: Path | None = typer.Option(
        None, help="A modelyard wheel to install (default: built from the source checkout)."
    ),
    base_image: str | None = typer.Option(
        None, help="The Python base image (default: python:<this Python>-slim-bookworm)."
    ),
    extras: str | None = typer.Option(
        None,
        help="modelyard extras to install beyond the served flavors' (comma-separated, e.g. "
        "lightgbm,xgboost): for an image whose alias may move to another flavor.",
    ),
) -> None:
    """Write a Docker build context that serves a model or a deployment."""
    from modelyard.cli._registry import open_registry
    from modelyard.deploy import resolve_target
    from modelyard.deploy.build import build_context

    registry = open_registry()
    target = resolve_target(registry, ref, deployment)
    asked = [e.strip() for e in (extras or "").split(",") if e.strip()]
    result = build_context(
        registry, target, output, bake=bake, force=force, wheel=wheel, base_image=base_image,
        extras=asked,
    )  # fmt: skip
    out = console()
    served = " ".join(v.ref for v in target.versions)
    out.print(f"wrote {result.path} for {served}: Dockerfile, requirements.txt "
              f"({len(result.pins)} pins), wheels/{result.wheel}")  # fmt: skip
    if result.bundle is not None:
        size = format_size(result.bundle.size_bytes)
        out.print(f"bundle/: {len(result.bundle.files)} files, {size}, sha256 in "
                  "bundle/manifest.json")  # fmt: skip
    for pin in result.recorded_differences:
        typer.echo(f"warning: {pin.name}=={pin.version} is pinned as {pin.note}", err=True)
    if not bake and target.follows:
        flavors = ", ".join(sorted({v.flavor for v in target.versions}))
        out.print(f"note: the image loads {flavors} models; should the alias move to a version "
                  "of another flavor, build with --extras (e.g. --extras lightgbm)",
                  style="dim")  # fmt: skip
    out.print(f"next: docker build -t {result.image_tag} {result.path}", style="dim")


@container_app.command("serve")
def serve(
    bundle: str | None = typer.Option(
        None, envvar=[entry.BUNDLE_ENV, entry.VERTEX_STORAGE_ENV],
        help="A bundle folder or its fsspec URL (default: /opt/ml/model, else the registry).",
    ),
    ref: str | None = typer.Option(None, envvar=entry.REF_ENV, help="What to serve."),
    deployment: str | None = typer.Option(
        None, envvar=entry.DEPLOYMENT_ENV, help="Or a deployment to serve."
    ),
    http_port: int | None = typer.Option(
        None, envvar=entry.VERTEX_PORT_ENV, min=1, max=65535, help="Replaces the REST port."
    ),
) -> None:  # fmt: skip
    """Verify the bundle (or open the registry) and serve in this process until SIGTERM."""
    from modelyard.cli._registry import load_settings
    from modelyard.cli.serve import platform_settings

    settings = load_settings()
    # Vertex AI's health and predict routes (its port is http_port)
    routes = platform_settings(os.environ, port_given=True)
    settings = settings.model_copy(update={"serving": settings.serving.model_copy(update=routes)})
    plan = entry.plan_container(
        settings, ref=ref, deployment=deployment, bundle=bundle, http_port=http_port
    )
    sys.stderr.write(f"yard container: {plan.describe()}\n")
    entry.serve_container(plan)


@container_app.command("health")
def health(
    http_port: int | None = typer.Option(None, envvar=entry.VERTEX_PORT_ENV, min=1, max=65535),
) -> None:
    """Exit 0 when the server in this container is ready (the image's HEALTHCHECK)."""
    from modelyard.cli._registry import load_settings

    entry.check_health(load_settings(), http_port=http_port)
