"""MLflow's client, built for one tracking URI: the extra's import, a fast reachability check and
MLflow's exceptions turned into modelyard's.

MLflow retries a failed HTTP call seven times with backoff (minutes against a server that is
down); a tracking URI that does not answer ``/health`` within ``REACHABLE_TIMEOUT_S`` is refused
at once instead, with the URI and the next step.
"""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING

from modelyard.errors import (
    AliasNotFoundError,
    ConfigError,
    ModelNotFoundError,
    ModelyardError,
    StorageError,
    VersionNotFoundError,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

REACHABLE_TIMEOUT_S = 5.0
EXTRA_HINT = "pip install 'modelyard[mlflow]'"


def clean_uri(uri: str) -> str:
    """``uri`` without a user name, password or trailing ``/``: what is recorded in tags (and
    compared to find an import again) and shown in messages."""
    parts = urllib.parse.urlsplit(uri.strip())
    if parts.username is not None or parts.password is not None:
        host = parts.hostname or ""
        parts = parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host)
    return urllib.parse.urlunsplit(parts).rstrip("/")


def mlflow_client(tracking_uri: str | None) -> MlflowClient:
    """A client for ``tracking_uri`` (the tracking and the model registry server), after checking
    that an HTTP server answers there."""
    if not tracking_uri:
        raise ConfigError(
            "No MLflow tracking server is set; set MLFLOW_TRACKING_URI (for example "
            "http://127.0.0.1:5000)."
        )
    try:
        from mlflow import MlflowClient
    except ImportError as exc:
        raise ConfigError(
            f"The MLflow bridge needs MLflow's client ({exc.name or 'mlflow'} is not installed); "
            f"run {EXTRA_HINT}."
        ) from None
    check_reachable(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def check_reachable(tracking_uri: str, *, timeout_s: float = REACHABLE_TIMEOUT_S) -> None:
    """Refuse an HTTP(S) tracking URI whose server does not answer, in ``timeout_s`` at most."""
    parts = urllib.parse.urlsplit(tracking_uri)
    if parts.scheme not in ("http", "https"):
        return  # a local store (file:, sqlite:) or a platform's scheme: MLflow checks it
    health = urllib.parse.urlunsplit(
        parts._replace(path=parts.path.rstrip("/") + "/health", query="", fragment="")
    )
    try:
        with urllib.request.urlopen(health, timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return  # it answered: a server without /health still takes MLflow's REST calls
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StorageError(
            f"The MLflow tracking server {clean_uri(tracking_uri)} does not answer ({reason}); "
            "start it or fix MLFLOW_TRACKING_URI."
        ) from None


@contextlib.contextmanager
def mlflow_errors(what: str, tracking_uri: str, *, alias: bool = False) -> Iterator[None]:
    """MLflow's exceptions inside as modelyard's: a missing model, version or alias is a
    ``NotFoundError`` naming ``what``; anything else a ``StorageError`` naming the server."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except ModelyardError:
        raise
    except MlflowException as exc:
        where = clean_uri(tracking_uri)
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or (
            alias and exc.error_code == "INVALID_PARAMETER_VALUE"
        ):
            error = AliasNotFoundError if alias else _not_found_class(what)
            raise error(
                f"MLflow has no {what} on {where}; list what it has with "
                "MlflowClient().search_model_versions() or the MLflow UI."
            ) from None
        first_line = (exc.message or str(exc)).strip().splitlines()[0][:300].rstrip(". ")
        raise StorageError(
            f"MLflow on {where} refused {what}: {first_line}; check the server's log and retry."
        ) from None
    except OSError as exc:  # requests' connection errors are OSErrors
        raise StorageError(
            f"The MLflow tracking server {clean_uri(tracking_uri)} failed during {what} "
            f"({type(exc).__name__}); check it is up and retry."
        ) from None


def _not_found_class(what: str) -> type[ModelyardError]:
    return VersionNotFoundError if " version " in what else ModelNotFoundError
