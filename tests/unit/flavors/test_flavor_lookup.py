from __future__ import annotations

import json
import subprocess
import sys
from typing import get_args

import lightgbm as lgb
import pytest
import xgboost as xgb
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelyard.errors import InvalidInputError, InvalidSpecError, UnsupportedFormatError
from modelyard.flavors import (
    FLAVOR_NAMES,
    FlavorName,
    LightGBMFlavor,
    SklearnFlavor,
    XGBoostFlavor,
    flavor_for_file,
    flavor_for_object,
    get_flavor,
)

HEAVY = (
    "sklearn", "xgboost", "lightgbm", "onnxruntime", "onnx", "skops", "skl2onnx", "pandas", "torch",
    "safetensors", "transformers", "tokenizers", "sentence_transformers",
)  # fmt: skip


def test_flavor_names_are_the_closed_set():
    assert set(FLAVOR_NAMES) == {
        "sklearn", "xgboost", "lightgbm", "onnx", "torch", "transformers", "pickle",
    }  # fmt: skip
    assert set(get_args(FlavorName)) == set(FLAVOR_NAMES)


@pytest.mark.parametrize("name", FLAVOR_NAMES)
def test_get_flavor_by_name(name):
    assert get_flavor(name).name == name


def test_unknown_flavor_lists_the_valid_ones():
    with pytest.raises(InvalidSpecError) as info:
        get_flavor("tensorflow")

    assert "'tensorflow'" in str(info.value)
    assert "sklearn, xgboost, lightgbm, onnx, torch, transformers, pickle" in str(info.value)


def test_wrappers_are_detected_before_scikit_learn(iris):
    xgb_model = xgb.XGBClassifier(n_estimators=2).fit(iris.X_train, iris.y_train)
    lgb_model = lgb.LGBMClassifier(n_estimators=2, verbose=-1).fit(iris.X_train, iris.y_train)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression())

    assert isinstance(flavor_for_object(xgb_model, trust_pickle=True), XGBoostFlavor)
    assert isinstance(flavor_for_object(lgb_model, trust_pickle=True), LightGBMFlavor)
    assert isinstance(flavor_for_object(pipeline, trust_pickle=True), SklearnFlavor)


def test_importing_and_detecting_imports_no_framework():
    code = (
        "import json, sys\n"
        "import modelyard.flavors as f\n"
        "class M:\n"
        "    def predict(self, X): return X\n"
        "picked = f.flavor_for_object(M(), trust_pickle=True).name\n"
        f"print(json.dumps([picked, [m for m in {HEAVY!r} if m in sys.modules]]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    picked, imported = json.loads(out.stdout)
    assert picked == "pickle"
    assert imported == []


def test_unknown_suffix_lists_the_supported_kinds(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"\x89HDF")

    with pytest.raises(UnsupportedFormatError) as info:
        flavor_for_file(path, trust_pickle=True)

    message = str(info.value)
    assert "model.h5" in message and "'.h5'" in message
    for kind in (".skops", ".onnx", ".json", ".ubj", ".txt", ".pkl", ".joblib"):
        assert kind in message


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "model.skops"

    with pytest.raises(InvalidInputError, match=r"nowhere/model\.skops' does not exist"):
        flavor_for_file(path, trust_pickle=False)


def test_directory_is_not_a_model_file(tmp_path):
    folder = tmp_path / "model.onnx"
    folder.mkdir()

    with pytest.raises(InvalidInputError, match=r"model\.onnx' is a directory"):
        flavor_for_file(folder, trust_pickle=False)


def test_a_transformers_folder_is_found_by_its_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InvalidInputError, match="is a directory"):
        flavor_for_file(tmp_path, trust_pickle=False)  # config.json alone: no tokenizer
    (tmp_path / "tokenizer.json").write_text("{}")
    assert flavor_for_file(tmp_path, trust_pickle=False).name == "transformers"


def test_suffix_is_case_insensitive_and_paths_may_be_strings(tmp_path):
    path = tmp_path / "MODEL.TXT"
    path.write_text("tree\nversion=v4\n")

    assert isinstance(flavor_for_file(str(path), trust_pickle=False), LightGBMFlavor)
