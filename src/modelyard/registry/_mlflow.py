"""Import an MLflow model directory (an ``MLmodel`` file) as a new version.

Read from MLflow's documented MLmodel format: the ``flavors`` mapping (sklearn, xgboost,
lightgbm, onnx), the ``signature`` (column or tensor specs as JSON strings) and the saved input
example. MLflow's sklearn flavor stores a pickle: it is loaded once, only with trust, and saved
again with skops, so the imported version loads safely from then on.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelyard.core.types import Signature, TensorSpec
from modelyard.errors import InvalidInputError, UnsupportedFormatError, UntrustedTypeError
from modelyard.flavors import (
    SKOPS_TRUSTED_TYPES,
    Artifact,
    Flavor,
    LoadOptions,
    get_flavor,
    skops_io,
)

_ORDER = ("onnx", "xgboost", "lightgbm", "sklearn")
#: The library's own classes, trusted when MLflow saved an XGBoost/LightGBM model with skops.
_LIBRARY_TYPES = {
    "lightgbm": (
        "lightgbm.basic.Booster",
        "lightgbm.sklearn.LGBMClassifier",
        "lightgbm.sklearn.LGBMRegressor",
        "collections.OrderedDict",
    ),
    "xgboost": (
        "xgboost.core.Booster",
        "xgboost.sklearn.XGBClassifier",
        "xgboost.sklearn.XGBRegressor",
    ),
}


@dataclass(frozen=True, slots=True)
class ImportedModel:
    flavor: Flavor
    artifact: Artifact
    model: object | None
    input_example: Any
    tags: dict[str, str]
    signature: Signature | None = None


def read_mlflow_model(path: Path, *, options: LoadOptions) -> ImportedModel:
    spec = _read_mlmodel(path)
    flavors = spec.get("flavors") or {}
    name = next((f for f in _ORDER if f in flavors), None)
    if name is None:
        found = ", ".join(sorted(flavors)) or "none"
        raise UnsupportedFormatError(
            f"MLflow model {str(path)!r} has no flavor modelyard can import (found: {found}); "
            "supported: sklearn, xgboost, lightgbm, onnx."
        )
    conf = flavors[name] or {}
    tags = {"mlflow.flavor": name}
    if spec.get("run_id"):
        tags["mlflow.run_id"] = str(spec["run_id"])
    if spec.get("model_uuid"):
        tags["mlflow.model_uuid"] = str(spec["model_uuid"])
    model: object | None = None
    if name == "sklearn":
        model_file = path / str(conf.get("pickled_model", "model.pkl"))
        fmt = str(conf.get("serialization_format", "cloudpickle"))
    else:
        model_file = path / str(conf.get("data", ""))
        fmt = str(conf.get("serialization_format") or conf.get("model_format") or "")
    if not model_file.is_file():
        raise InvalidInputError(
            f"MLflow model {str(path)!r} names no readable {name} file ({model_file.name!r}); "
            "check the directory is complete."
        )
    flavor = get_flavor(name)
    if fmt == "skops" or model_file.suffix == ".skops":
        if name == "sklearn":
            artifact = flavor.read_file(model_file, options)
        else:
            model = _load_library_skops(model_file, name, options)
            artifact = flavor.dump(model)
    elif name == "sklearn":
        model = _load_pickle(model_file, fmt, options)
        artifact = flavor.dump(model)
    else:
        artifact = flavor.read_file(model_file, options)
    return ImportedModel(
        flavor=flavor,
        artifact=artifact,
        model=model,
        input_example=_input_example(path, spec),
        tags=tags,
        signature=_signature(spec),
    )


def _read_mlmodel(path: Path) -> dict[str, Any]:
    try:
        spec = yaml.safe_load((path / "MLmodel").read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInputError(f"Cannot read {str(path / 'MLmodel')!r}: {exc}.") from exc
    if not isinstance(spec, dict):
        raise InvalidInputError(f"{str(path / 'MLmodel')!r} is not an MLmodel mapping.")
    return spec


def _load_library_skops(model_file: Path, name: str, options: LoadOptions) -> object:
    """An XGBoost/LightGBM sklearn-API model MLflow saved with skops; re-saved natively."""
    sio = skops_io()

    untrusted = sio.get_untrusted_types(file=model_file)
    allowed = set(_LIBRARY_TYPES.get(name, ())) | set(SKOPS_TRUSTED_TYPES)
    refused = [t for t in untrusted if t not in allowed and t not in options.trusted_types]
    if refused:
        raise UntrustedTypeError(
            f"The skops file {str(model_file)!r} contains types modelyard does not trust "
            f"({', '.join(refused)}); pass --trust-type for each if you trust its author."
        )
    return sio.load(model_file, trusted=untrusted)


def _load_pickle(model_file: Path, fmt: str, options: LoadOptions) -> object:
    if not options.trust_pickle:
        raise UntrustedTypeError(
            f"MLflow stored this sklearn model as a {fmt} file ({model_file.name}); loading it "
            "runs arbitrary code: pass --trust-pickle (trust_pickle=True) if you trust its "
            "author. modelyard then re-saves it with skops."
        )
    data = model_file.read_bytes()
    try:
        import cloudpickle
    except ImportError:
        return pickle.loads(data)
    return cloudpickle.loads(data)


_COLSPEC_TYPES = {
    "double": "float64", "float": "float32", "long": "int64", "integer": "int32",
    "boolean": "bool", "string": "string", "datetime": "datetime64[ns]",
}  # fmt: skip


def _signature(spec: dict[str, Any]) -> Signature | None:
    """The input signature MLflow recorded (column or tensor specs), for a model imported
    without data or an input example; ``None`` when it is absent or not expressible."""
    raw = (spec.get("signature") or {}).get("inputs")
    try:
        inputs = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return None
    if not isinstance(inputs, list) or not inputs:
        return None
    first = inputs[0]
    if isinstance(first, dict) and first.get("type") == "tensor" and len(inputs) == 1:
        tensor = first.get("tensor-spec") or {}
        shape = tensor.get("shape") or []
        if len(shape) != 2 or not isinstance(shape[1], int) or shape[1] < 1:
            return None
        return Signature(
            kind="tensor",
            inputs=(
                TensorSpec(name="input", dtype=str(tensor.get("dtype")), shape=(-1, shape[1])),
            ),
        )
    specs = []
    for item in inputs:
        if not isinstance(item, dict) or "name" not in item:
            return None
        dtype = _COLSPEC_TYPES.get(str(item.get("type")))
        if dtype is None:
            return None
        nullable = not item.get("required", True)
        specs.append(TensorSpec(name=str(item["name"]), dtype=dtype, nullable=nullable))
    return Signature(kind="columns", inputs=tuple(specs))


def _input_example(path: Path, spec: dict[str, Any]) -> Any:
    info = spec.get("saved_input_example_info") or {}
    artifact = info.get("artifact_path")
    if not artifact or not (path / artifact).is_file():
        return None
    try:
        raw = json.loads((path / artifact).read_text())
    except (OSError, ValueError):
        return None
    import pandas as pd

    if isinstance(raw, dict) and "dataframe_split" in raw:
        raw = raw["dataframe_split"]
    if isinstance(raw, dict) and "columns" in raw and "data" in raw:
        return pd.DataFrame(raw["data"], columns=raw["columns"])
    if isinstance(raw, dict) and "inputs" in raw:
        raw = raw["inputs"]
    if isinstance(raw, list) and raw and isinstance(raw[0], dict):
        return pd.DataFrame(raw)
    if isinstance(raw, list):
        import numpy as np

        return np.asarray(raw)
    return None
