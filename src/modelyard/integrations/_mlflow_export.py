"""Register a modelyard version in MLflow's model registry.

The version's own bytes go to MLflow, unchanged: a scikit-learn version's skops file under MLflow's
``sklearn`` flavor (``serialization_format: skops``), an ONNX version's (or ONNX twin's) file under
its ``onnx`` flavor, each with a ``python_function`` entry so ``mlflow.pyfunc.load_model`` reads
it. The MLmodel file follows MLflow's documented format: flavors, signature (column or tensor
specs as JSON strings), ``run_id``, ``model_uuid``. A run holds the files, the version's params
and metrics; the MLflow version's tags name the modelyard version and its file's sha256, so
exporting the same version again finds it instead of registering it twice.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from modelyard.core.types import ArtifactFile, ModelVersion, Signature
from modelyard.errors import UnsupportedFormatError
from modelyard.integrations._mlflow_client import mlflow_client, mlflow_errors

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from modelyard.registry import Registry

TAG_REF = "modelyard.version"
TAG_SHA256 = "modelyard.sha256"
DEFAULT_EXPERIMENT = "Default"
_COLSPEC = {
    "float64": "double", "float32": "float", "int64": "long", "int32": "integer",
    "bool": "boolean", "string": "string", "category": "string", "datetime64[ns]": "datetime",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ExportedVersion:
    """The MLflow model version holding a modelyard version (``new``: registered now)."""

    name: str
    version: int
    run_id: str
    new: bool

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def export_version(
    registry: Registry,
    ref: str,
    *,
    tracking_uri: str | None,
    name: str | None = None,
    experiment: str | None = None,
) -> ExportedVersion:
    """Register the modelyard version ``ref`` as a version of the MLflow model ``name`` (default:
    the same name), in the run of a new MLflow run of ``experiment`` (default ``Default``)."""
    version = registry.get_version(ref)
    target = name or version.name
    flavor, stored = _exported_file(version)
    client = mlflow_client(tracking_uri)
    assert tracking_uri is not None
    existing = _existing(client, target, version, stored, tracking_uri)
    if existing is not None:
        return existing
    data = registry.read_file(version.ref, stored.role)
    with mlflow_errors(f"registered model {target!r}", tracking_uri):
        run_id = _log_run(client, version, experiment or DEFAULT_EXPERIMENT)
        with tempfile.TemporaryDirectory(prefix="modelyard-export-") as tmp:
            folder = Path(tmp) / "model"
            _write_model_dir(
                folder, version, flavor=flavor, stored=stored, data=data, run_id=run_id
            )
            client.log_artifacts(run_id, str(folder), artifact_path="model")
        client.set_terminated(run_id)
        if not client.search_registered_models(f"name = '{_quote(target)}'"):
            client.create_registered_model(target)
        source = f"{client.get_run(run_id).info.artifact_uri}/model"
        created = client.create_model_version(
            target, source, run_id=run_id, description=version.description,
            tags={TAG_REF: version.ref, TAG_SHA256: stored.sha256, "modelyard.flavor": flavor},
        )  # fmt: skip
    return ExportedVersion(target, int(created.version), run_id, new=True)


def _exported_file(version: ModelVersion) -> tuple[str, ArtifactFile]:
    """``("sklearn", the skops file)`` or ``("onnx", the ONNX file or twin)``."""
    model = version.file("model")
    if version.flavor == "sklearn" and model is not None and model.name.endswith(".skops"):
        return "sklearn", model
    if version.flavor == "onnx" and model is not None:
        return "onnx", model
    twin = version.file("onnx")
    if twin is not None:
        return "onnx", twin
    raise UnsupportedFormatError(
        f"Model {version.ref} is a {version.flavor} version without an ONNX twin; MLflow export "
        "takes skops (scikit-learn) or ONNX files: register it with --convert onnx."
    )


def _existing(
    client: MlflowClient,
    name: str,
    version: ModelVersion,
    stored: ArtifactFile,
    tracking_uri: str,
) -> ExportedVersion | None:
    with mlflow_errors(f"registered model {name!r}", tracking_uri):
        found = client.search_model_versions(
            f"name = '{_quote(name)}' and tags.`{TAG_SHA256}` = '{stored.sha256}'"
        )
    for mv in found:
        if mv.tags.get(TAG_REF) == version.ref:
            return ExportedVersion(name, int(mv.version), mv.run_id or "", new=False)
    return None


def _log_run(client: MlflowClient, version: ModelVersion, experiment: str) -> str:
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    run = client.create_run(
        experiment_id,
        run_name=f"modelyard {version.ref}",
        tags={
            TAG_REF: version.ref,
            **{k: v for k, v in version.tags.items() if not k.startswith("mlflow.")},
        },
    )
    from mlflow.entities import Metric, Param

    now_ms = int(time.time() * 1000)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, v, now_ms, 0) for k, v in version.metrics.items()],
        params=[Param(k, v) for k, v in version.params.items()],
    )
    return str(run.info.run_id)


def _write_model_dir(
    folder: Path,
    version: ModelVersion,
    *,
    flavor: str,
    stored: ArtifactFile,
    data: bytes,
    run_id: str,
) -> None:
    folder.mkdir(parents=True)
    file_name = "model.skops" if flavor == "sklearn" else "model.onnx"
    (folder / file_name).write_bytes(data)
    python = platform.python_version()
    flavors: dict[str, Any]
    if flavor == "sklearn":
        from modelyard.flavors import skops_io

        flavors = {
            "python_function": {
                "loader_module": "mlflow.sklearn", "model_path": file_name,
                "predict_fn": "predict", "python_version": python,
            },
            "sklearn": {
                "pickled_model": file_name, "serialization_format": "skops", "code": None,
                "sklearn_version": _installed("scikit-learn"),
                # the types modelyard checked when the version was registered
                "skops_trusted_types": list(skops_io().get_untrusted_types(data=data)) or None,
            },
        }  # fmt: skip
        requirements = ["scikit-learn", "skops"]
    else:
        flavors = {
            "python_function": {
                "loader_module": "mlflow.onnx", "data": file_name, "python_version": python,
            },
            "onnx": {
                "data": file_name, "onnx_version": _installed("onnx"), "code": None,
                "providers": ["CPUExecutionProvider"],
            },
        }  # fmt: skip
        requirements = ["onnx", "onnxruntime"]
    spec: dict[str, Any] = {
        "artifact_path": "model",
        "flavors": flavors,
        "mlflow_version": _installed("mlflow-skinny") or _installed("mlflow"),
        "model_uuid": uuid.uuid4().hex,
        "run_id": run_id,
        "utc_time_created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
    }
    inputs = _signature_inputs(version.signature)
    if inputs is not None:
        spec["signature"] = {"inputs": json.dumps(inputs), "outputs": None, "params": None}
    (folder / "MLmodel").write_text(yaml.safe_dump(spec, sort_keys=False))
    pins = [f"{p}=={_installed(p)}" for p in requirements if _installed(p)]
    (folder / "requirements.txt").write_text("\n".join(pins) + "\n")


def _signature_inputs(signature: Signature | None) -> list[dict[str, Any]] | None:
    if signature is None or not signature.inputs:
        return None
    if signature.kind == "tensor":
        spec = signature.inputs[0]
        return [{"type": "tensor", "tensor-spec": {"dtype": spec.dtype, "shape": list(spec.shape)}}]
    out = []
    for column in signature.inputs:
        kind = _COLSPEC.get(column.dtype)
        if kind is None:
            return None  # a dtype MLflow's column specs cannot say: none rather than wrong
        out.append({"type": kind, "name": column.name, "required": not column.nullable})
    return out


def _installed(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _quote(text: str) -> str:
    return text.replace("'", "\\'")
