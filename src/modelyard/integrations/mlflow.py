"""An MLflow tracking server as a source of models and a mirror of runs.

- ``resolve_model``: ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` or ``models:/NAME/latest``
  looked up in MLflow's model registry, pulled once with MLflow's own client, imported with the
  MLflow model-folder importer (``registry._mlflow``: the same trust rules), verified and stored
  as the next modelyard version of NAME. Its tags name the tracking URI, the MLflow model name,
  version and run; its lineage's ``source`` says the same in one line. Resolving the same MLflow
  version again returns the stored version without downloading anything.
- ``import_model``: every version of an MLflow registered model that is not stored yet.
- ``export_version`` (``_mlflow_export``) and ``MlflowRunMirror`` (``mlflow_runs``) go the
  other way.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from modelyard.core.refs import ModelRef, parse_ref
from modelyard.core.types import ModelVersion
from modelyard.errors import IntegrityError, ValidationError
from modelyard.integrations._mlflow_client import clean_uri, mlflow_client, mlflow_errors
from modelyard.integrations._mlflow_export import ExportedVersion, export_version
from modelyard.integrations.mlflow_runs import MlflowRunMirror, start_mirror

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion as MlflowVersion

    from modelyard.registry import Registry

__all__ = [
    "MLFLOW_SCHEME",
    "TAG_MODEL",
    "TAG_RUN",
    "TAG_TRACKING_URI",
    "TAG_VERSION",
    "ExportedVersion",
    "ImportedVersion",
    "MlflowRunMirror",
    "export_version",
    "import_model",
    "is_mlflow_ref",
    "resolve_model",
    "start_mirror",
]

logger = logging.getLogger(__name__)

MLFLOW_SCHEME = "models:/"
TAG_TRACKING_URI = "mlflow.tracking_uri"
TAG_MODEL = "mlflow.model_name"
TAG_VERSION = "mlflow.model_version"
TAG_RUN = "mlflow.run_id"


@dataclass(frozen=True, slots=True)
class ImportedVersion:
    """An MLflow version and the modelyard version that holds it (``new``: imported now)."""

    mlflow_version: int
    version: ModelVersion
    new: bool


def is_mlflow_ref(ref: str, tracking_uri: str | None) -> bool:
    """Whether ``ref`` names a model on the MLflow server: the ``models:/`` form while a tracking
    URI is set. Without one, and for the plain forms (``churn@prod``), modelyard's registry."""
    return bool(tracking_uri) and ref.strip().startswith(MLFLOW_SCHEME)


def resolve_model(
    registry: Registry,
    ref: str,
    *,
    tracking_uri: str | None,
    trust_pickle: bool = False,
    trusted_types: Sequence[str] = (),
) -> ModelVersion:
    """The modelyard version holding the MLflow version ``ref`` names, imported on first use."""
    parsed = parse_ref(ref)
    client = mlflow_client(tracking_uri)
    assert tracking_uri is not None  # mlflow_client refused None
    found = _mlflow_version(client, parsed, tracking_uri)
    stored = _stored(registry, found.name, int(found.version), tracking_uri)
    if stored is not None:
        return stored
    return _import(
        registry, client, found, tracking_uri, trust_pickle=trust_pickle,
        trusted_types=trusted_types,
    )  # fmt: skip


def import_model(
    registry: Registry,
    name: str,
    *,
    tracking_uri: str | None,
    trust_pickle: bool = False,
    trusted_types: Sequence[str] = (),
) -> list[ImportedVersion]:
    """Import every version of the MLflow registered model ``name`` not stored yet, oldest
    first; the versions stored before come back with ``new=False``."""
    client = mlflow_client(tracking_uri)
    assert tracking_uri is not None
    with mlflow_errors(f"registered model {name!r}", tracking_uri):
        client.get_registered_model(name)
        versions = _all_versions(client, name)
    out = []
    for found in sorted(versions, key=lambda v: int(v.version)):
        stored = _stored(registry, name, int(found.version), tracking_uri)
        if stored is None:
            stored = _import(
                registry, client, found, tracking_uri, trust_pickle=trust_pickle,
                trusted_types=trusted_types,
            )  # fmt: skip
            out.append(ImportedVersion(int(found.version), stored, new=True))
        else:
            out.append(ImportedVersion(int(found.version), stored, new=False))
    return out


def _mlflow_version(client: MlflowClient, ref: ModelRef, tracking_uri: str) -> MlflowVersion:
    if ref.alias is not None:
        what = f"alias {ref.alias!r} on model {ref.name!r}"
        with mlflow_errors(f"registered model {ref.name!r}", tracking_uri):
            client.get_registered_model(ref.name)
        with mlflow_errors(what, tracking_uri, alias=True):
            return client.get_model_version_by_alias(ref.name, ref.alias)
    if ref.version is not None:
        with mlflow_errors(f"registered model {ref.name!r}", tracking_uri):
            client.get_registered_model(ref.name)
        with mlflow_errors(f"model {ref.name!r} version {ref.version}", tracking_uri):
            return client.get_model_version(ref.name, str(ref.version))
    with mlflow_errors(f"registered model {ref.name!r}", tracking_uri):
        client.get_registered_model(ref.name)
        versions = _all_versions(client, ref.name)
    if not versions:
        raise _no_versions(ref.name, tracking_uri)
    return max(versions, key=lambda v: int(v.version))


def _all_versions(client: MlflowClient, name: str) -> list[MlflowVersion]:
    escaped = name.replace("'", "\\'")
    out: list[MlflowVersion] = []
    token: str | None = None
    while True:
        page = client.search_model_versions(f"name = '{escaped}'", page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def _no_versions(name: str, tracking_uri: str) -> Exception:
    from modelyard.errors import VersionNotFoundError

    return VersionNotFoundError(
        f"MLflow model {name!r} on {clean_uri(tracking_uri)} has no versions; register one "
        "in MLflow first."
    )


def _stored(registry: Registry, name: str, number: int, tracking_uri: str) -> ModelVersion | None:
    """The modelyard version already holding MLflow's ``name`` version ``number``, if any."""
    page = registry.search_versions(name=name, tag=(TAG_VERSION, str(number)), page_size=1000)
    where = clean_uri(tracking_uri)
    for version in page.items:
        if version.tags.get(TAG_MODEL) == name and version.tags.get(TAG_TRACKING_URI) == where:
            return cast("ModelVersion", version)
    return None


def _import(
    registry: Registry,
    client: MlflowClient,
    found: MlflowVersion,
    tracking_uri: str,
    *,
    trust_pickle: bool,
    trusted_types: Sequence[str],
) -> ModelVersion:
    import mlflow.artifacts

    name, number = found.name, int(found.version)
    where = clean_uri(tracking_uri)
    what = f"model {name!r} version {number}"
    params: dict[str, str] = {}
    metrics: dict[str, float] = {}
    if found.run_id:
        with mlflow_errors(f"run {found.run_id!r} of {what}", tracking_uri):
            run = client.get_run(found.run_id)
        params, metrics = dict(run.data.params), dict(run.data.metrics)
    tags = {
        TAG_TRACKING_URI: where, TAG_MODEL: name, TAG_VERSION: str(number),
        **({TAG_RUN: found.run_id} if found.run_id else {}),
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="modelyard-mlflow-") as tmp:
        with mlflow_errors(f"the files of {what}", tracking_uri):
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{number}",
                dst_path=tmp,
                tracking_uri=tracking_uri,
                registry_uri=tracking_uri,
            )
        run_note = f" (run {found.run_id})" if found.run_id else ""
        try:
            version = registry.register_file(
                Path(local), name=name, tags=tags, params=params, metrics=metrics,
                description=found.description or None, trust_pickle=trust_pickle,
                trusted_types=trusted_types,
                source=f"models:/{name}/{number} on {where}{run_note}",
            )  # fmt: skip
        except (ValidationError, IntegrityError) as exc:
            # the importer names a temporary folder; say which MLflow version it was
            raise type(exc)(f"MLflow {what} on {where}: {exc}") from None
    failed = [check.name for check in registry.verify(version.ref) if not check.ok]
    if failed:
        raise IntegrityError(
            f"Model {version.ref} imported from MLflow {what} failed its check "
            f"({', '.join(failed)}); run 'yard models verify {version.ref}'."
        )
    logger.info("imported MLflow %s from %s as %s", what, where, version.ref)
    return version
