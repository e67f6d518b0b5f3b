"""Importing MLflow model directories. The directories are laid out exactly as MLflow 3.17
writes them (MLmodel keys, file names, serialization formats, the split-orient input example);
the model files are written by the libraries themselves."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from modelyard.errors import UnsupportedFormatError, UntrustedTypeError
from modelyard.registry import Registry
from tests.conftest import blob_count


@pytest.fixture(scope="module")
def iris() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y


def write_model_dir(
    path: Path, flavor: str, conf: dict[str, object], example: pd.DataFrame | None
) -> Path:
    path.mkdir()
    spec: dict[str, object] = {
        "flavors": {
            "python_function": {"loader_module": f"mlflow.{flavor}", "python_version": "3.11.7"},
            flavor: {"code": None, **conf},
        },
        "mlflow_version": "3.17.2",
        "model_uuid": "c686385ab52e478c809a7659970829b3",
        "utc_time_created": "2026-11-26 15:55:39.782592",
    }
    if example is not None:
        spec["saved_input_example_info"] = {
            "artifact_path": "input_example.json", "pandas_orient": "split",
            "serving_input_path": "serving_input_example.json", "type": "dataframe",
        }  # fmt: skip
        (path / "input_example.json").write_text(
            json.dumps({"columns": list(example.columns), "data": example.values.tolist()})
        )
    (path / "MLmodel").write_text(yaml.safe_dump(spec))
    return path


def test_sklearn_skops_directory(sqlite_registry: Registry, iris, tmp_path: Path) -> None:
    import skops.io

    X, y = iris
    model = LogisticRegression(max_iter=500).fit(X, y)
    d = write_model_dir(
        tmp_path / "sk", "sklearn",
        {"pickled_model": "model.skops", "serialization_format": "skops",
         "sklearn_version": "1.9.1", "skops_trusted_types": None},
        X.head(3),
    )  # fmt: skip
    skops.io.dump(model, d / "model.skops")
    v = sqlite_registry.register_file(d, name="iris")
    assert v.flavor == "sklearn" and v.tags["mlflow.flavor"] == "sklearn"
    assert v.signature is not None and v.signature.column_names == list(X.columns)
    assert v.input_example is not None and len(v.input_example["data"]) == 3
    loaded = sqlite_registry.load("iris/1")
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))


def test_sklearn_cloudpickle_needs_trust_then_becomes_skops(
    sqlite_registry: Registry, iris, tmp_path: Path
) -> None:
    X, y = iris
    model = LogisticRegression(max_iter=500).fit(X, y)
    d = write_model_dir(
        tmp_path / "pkl", "sklearn",
        {"pickled_model": "model.pkl", "serialization_format": "cloudpickle"}, None,
    )  # fmt: skip
    (d / "model.pkl").write_bytes(pickle.dumps(model))
    with pytest.raises(UntrustedTypeError, match="--trust-pickle"):
        sqlite_registry.register_file(d, name="iris")
    assert blob_count(Path(sqlite_registry.settings.resolved_artifact_root)) == 0
    v = sqlite_registry.register_file(d, name="iris", trust_pickle=True, data=X)
    assert v.flavor == "sklearn" and not v.untrusted
    assert v.file("model") is not None and v.file("model").name == "model.skops"  # type: ignore[union-attr]
    np.testing.assert_array_equal(sqlite_registry.load("iris/1").predict(X), model.predict(X))


def test_xgboost_ubj_directory(sqlite_registry: Registry, iris, tmp_path: Path) -> None:
    import xgboost as xgb

    X, y = iris
    model = xgb.XGBClassifier(n_estimators=5).fit(X, y)
    d = write_model_dir(
        tmp_path / "xgb", "xgboost",
        {"data": "model.ubj", "model_class": "xgboost.sklearn.XGBClassifier",
         "model_format": "ubj", "xgb_version": "3.2.0"},
        X.head(3),
    )  # fmt: skip
    model.save_model(d / "model.ubj")
    v = sqlite_registry.register_file(d, name="iris-xgb")
    assert v.flavor == "xgboost"
    np.testing.assert_allclose(
        sqlite_registry.load("iris-xgb/1").predict_proba(X), model.predict_proba(X), rtol=1e-6
    )


def test_lightgbm_skops_directory_is_resaved_natively(
    sqlite_registry: Registry, iris, tmp_path: Path
) -> None:
    import lightgbm as lgb
    import skops.io

    X, y = iris
    model = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y)
    d = write_model_dir(
        tmp_path / "lgb", "lightgbm",
        {"data": "model.skops", "model_class": "lightgbm.sklearn.LGBMClassifier",
         "serialization_format": "skops", "lgb_version": "4.7.0",
         "skops_trusted_types": ["lightgbm.basic.Booster", "collections.OrderedDict"]},
        X.head(3),
    )  # fmt: skip
    skops.io.dump(model, d / "model.skops")
    v = sqlite_registry.register_file(d, name="iris-lgb")
    assert v.flavor == "lightgbm"
    np.testing.assert_allclose(
        sqlite_registry.load("iris-lgb/1").predict_proba(X), model.predict_proba(X), rtol=1e-6
    )


def test_unsupported_flavor_is_refused(sqlite_registry: Registry, tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "torch", "pytorch", {"model_data": "data"}, None)
    with pytest.raises(UnsupportedFormatError, match="found: python_function, pytorch"):
        sqlite_registry.register_file(d, name="t")


def test_mlflow_signature_is_kept_without_data_or_example(
    sqlite_registry: Registry, iris, tmp_path: Path
) -> None:
    import skops.io

    X, y = iris
    model = LogisticRegression(max_iter=500).fit(X, y)
    d = write_model_dir(
        tmp_path / "sig", "sklearn",
        {"pickled_model": "model.skops", "serialization_format": "skops"}, None,
    )  # fmt: skip
    skops.io.dump(model, d / "model.skops")
    spec = yaml.safe_load((d / "MLmodel").read_text())
    columns = [{"type": "double", "name": c, "required": True} for c in X.columns]
    spec["signature"] = {"inputs": json.dumps(columns), "outputs": '[{"type": "long"}]'}
    (d / "MLmodel").write_text(yaml.safe_dump(spec))
    v = sqlite_registry.register_file(d, name="iris-sig")
    assert v.signature is not None and v.signature.kind == "columns"
    assert v.signature.column_names == list(X.columns)
    assert {s.dtype for s in v.signature.inputs} == {"float64"}
    assert v.input_example is None
    loaded = sqlite_registry.load("iris-sig/1")
    np.testing.assert_array_equal(loaded.predict(X.to_numpy()), model.predict(X))
