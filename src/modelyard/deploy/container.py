"""The entry point of the images ``yard build`` makes: ``yard container serve`` (the image's
``ENTRYPOINT ["yard", "container"]`` and ``CMD ["serve"]``) and ``yard container health``.

Where the models come from, first match wins:

1. ``MODELYARD_CONTAINER_BUNDLE``: a bundle folder (``yard build --bake`` sets ``bundle``,
   relative to the image's WORKDIR), or an fsspec URL of one, copied under HOME first;
2. ``AIP_STORAGE_URI`` (Vertex AI's artifact location): a bundle folder's URL, copied likewise;
3. ``/opt/ml/model`` holding a bundle (where SageMaker puts a model's files);
4. the shared registry of the settings (``MODELYARD_DATABASE_URL``, ``MODELYARD_ARTIFACT_ROOT``),
   which must then be given: a default SQLite under /tmp would hold no model.

What is served: ``MODELYARD_CONTAINER_REF`` or ``MODELYARD_CONTAINER_DEPLOYMENT`` (the Dockerfile
sets one), else the bundle's own target. ``AIP_HTTP_PORT`` replaces the REST port. The server then
runs in this process, so that the platform's SIGTERM reaches uvicorn's graceful shutdown.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.deploy.bundle import MANIFEST, BundleManifest, fetch_bundle, open_bundle
from modelyard.errors import ConfigError, InvalidInputError, NotReadyError

if TYPE_CHECKING:
    from modelyard.settings import Settings

logger = logging.getLogger(__name__)

HTTP_PORT = 8080
GRPC_PORT = 8081
REF_ENV = "MODELYARD_CONTAINER_REF"
DEPLOYMENT_ENV = "MODELYARD_CONTAINER_DEPLOYMENT"
BUNDLE_ENV = "MODELYARD_CONTAINER_BUNDLE"
#: Vertex AI's custom-container variables this entry honours.
VERTEX_PORT_ENV = "AIP_HTTP_PORT"
VERTEX_STORAGE_ENV = "AIP_STORAGE_URI"
#: Where SageMaker unpacks a model's ``ModelDataUrl``.
SAGEMAKER_MODEL_DIR = Path("/opt/ml/model")
_HEALTH_TIMEOUT_S = 4.0


@dataclass(frozen=True)
class ContainerPlan:
    """What ``yard container serve`` is about to serve, and from where."""

    settings: Settings
    refs: list[str]
    deployments: list[str]
    bundle: BundleManifest | None
    source: str

    def describe(self) -> str:
        what = ", ".join([*self.refs, *(f"deployment {d}" for d in self.deployments)])
        opts = self.settings.serving
        grpc = f", gRPC on {opts.grpc_port}" if opts.grpc_port is not None else ""
        return f"serving {what} from {self.source} on {opts.host}:{opts.port}{grpc}"


def plan_container(
    settings: Settings,
    *,
    ref: str | None = None,
    deployment: str | None = None,
    bundle: str | None = None,
    http_port: int | None = None,
    model_dir: Path = SAGEMAKER_MODEL_DIR,
) -> ContainerPlan:
    """Find the models (see the module docstring), verify a bundle and copy its database under
    ``settings.home``; returns the settings ``yard serve`` runs with."""
    if ref and deployment:
        raise InvalidInputError(
            f"Both {REF_ENV}={ref!r} and {DEPLOYMENT_ENV}={deployment!r} are set; set one."
        )
    workdir = settings.home_dir / "container"
    if bundle is None and (model_dir / MANIFEST).is_file():
        bundle = str(model_dir)
    manifest = None
    if bundle is not None:
        root = _local_bundle(bundle, workdir)
        manifest, database_url, artifact_root = open_bundle(root, workdir)
        settings = settings.model_copy(
            update={"database_url": database_url, "artifact_root": artifact_root}
        )
        source = f"the bundle at {root} ({len(manifest.files)} files verified)"
        if not ref and not deployment:
            ref, deployment = manifest.target.ref, manifest.target.deployment
    elif settings.database_url is None:
        raise ConfigError(
            "This image reads the shared registry and MODELYARD_DATABASE_URL is not set; set it "
            "and MODELYARD_ARTIFACT_ROOT (from a Secret), or build the image with --bake."
        )
    else:
        source = f"the registry at {_display(settings.database_url)}"
    if not ref and not deployment:
        raise ConfigError(
            f"Nothing to serve: set {REF_ENV} (NAME@ALIAS or NAME/VERSION) or {DEPLOYMENT_ENV}."
        )
    if http_port is not None:
        serving = settings.serving.model_copy(update={"port": http_port})
        settings = settings.model_copy(update={"serving": serving})
    return ContainerPlan(
        settings=settings,
        refs=[ref] if ref else [],
        deployments=[deployment] if deployment else [],
        bundle=manifest,
        source=source,
    )


def serve_container(plan: ContainerPlan) -> None:
    """Run the server in this process until SIGTERM (it drains, then returns)."""
    from modelyard.serving.server import serve

    serve(plan.settings, plan.refs, plan.deployments)


def check_health(settings: Settings, *, http_port: int | None = None) -> str:
    """GET ``/v2/health/ready`` on the server's port; returns the URL, raises when not ready."""
    import urllib.error
    import urllib.request

    host = settings.serving.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    port = http_port if http_port is not None else settings.serving.port
    url = f"http://{host}:{port}/v2/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=_HEALTH_TIMEOUT_S) as answer:
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        raise NotReadyError(
            f"The server at {url} does not answer ({exc}); is it started?"
        ) from None
    if status != 200:
        raise NotReadyError(
            f"The server at {url} is not ready (HTTP {status}); models may be loading."
        )
    return url


def _local_bundle(source: str, workdir: Path) -> Path:
    if "://" in source and not source.startswith("file://"):
        return fetch_bundle(source, workdir / "bundle")
    return Path(source.removeprefix("file://")).expanduser().absolute()


def _display(url: str) -> str:
    """A database URL without its password."""
    import sqlalchemy as sa
    from sqlalchemy.exc import ArgumentError

    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # the server's start reports it, with its own message
        return "(the configured database)"
