from __future__ import annotations

import sys

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from modelyard.flavors import (
    PROBA_ATOL,
    REGRESSION_ATOL,
    LightGBMFlavor,
    LoadOptions,
    OnnxFlavor,
    convert_to_onnx,
    flavor_for_object,
)

CLASSIFIERS = {
    "hist-gradient-boosting": lambda: HistGradientBoostingClassifier(max_iter=20, random_state=0),
    "random-forest": lambda: RandomForestClassifier(n_estimators=20, random_state=0),
    "logreg-scaled": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    "xgboost": lambda: xgb.XGBClassifier(n_estimators=20, max_depth=3),
    "lightgbm": lambda: lgb.LGBMClassifier(n_estimators=20, verbose=-1),
}
REGRESSORS = {
    "hist-gradient-boosting": lambda: HistGradientBoostingRegressor(max_iter=20, random_state=0),
    "xgboost": lambda: xgb.XGBRegressor(n_estimators=20),
    "lightgbm": lambda: lgb.LGBMRegressor(n_estimators=20, verbose=-1),
}


def _convert(model, X_check):
    flavor = flavor_for_object(model, trust_pickle=False)
    return convert_to_onnx(model, flavor.name, X_check, options=LoadOptions())


def _assert_agrees(result, model, X):
    """The kept ONNX artifact, loaded on its own, agrees with the original on held-out rows."""
    assert result.reason is None
    assert result.artifact is not None
    predictor = OnnxFlavor().load(result.artifact, LoadOptions())
    if hasattr(model, "predict_proba"):
        assert predictor.classes == list(model.classes_)
        expected = model.predict_proba(X)
        np.testing.assert_allclose(predictor.predict_proba(X), expected, atol=1e-4)
        top_two = np.sort(expected, axis=1)[:, -2:]
        clear = top_two[:, 1] - top_two[:, 0] > 1e-3  # forests tie at exactly 0.5 / 0.5
        np.testing.assert_array_equal(predictor.predict(X)[clear], model.predict(X)[clear])
    else:
        np.testing.assert_allclose(predictor.predict(X), model.predict(X), rtol=1e-4)


@pytest.mark.parametrize("make", CLASSIFIERS.values(), ids=CLASSIFIERS.keys())
def test_classifiers_convert_with_parity(make, cancer):
    model = make().fit(cancer.X_train, cancer.y_train)

    result = _convert(model, cancer.X_train)

    assert result.max_abs_diff is not None and result.max_abs_diff <= PROBA_ATOL
    assert result.artifact.meta["layout"] == "tensor"
    assert result.artifact.meta["classes"] == [0, 1]
    _assert_agrees(result, model, cancer.X_test)


@pytest.mark.parametrize(
    "make",
    [
        lambda: RandomForestClassifier(n_estimators=10, random_state=0),
        lambda: lgb.LGBMClassifier(n_estimators=10, verbose=-1),
    ],
    ids=["random-forest", "lightgbm"],
)
def test_string_labels_survive_conversion(make, iris_named):
    X_train, X_test = iris_named.X_train.to_numpy(), iris_named.X_test.to_numpy()
    model = make().fit(X_train, iris_named.y_train)

    result = _convert(model, X_train)

    assert result.artifact.meta["classes"] == ["setosa", "versicolor", "virginica"]
    _assert_agrees(result, model, X_test)


@pytest.mark.parametrize("make", REGRESSORS.values(), ids=REGRESSORS.keys())
def test_regressors_convert_with_parity(make, diabetes):
    model = make().fit(diabetes.X_train, diabetes.y_train)

    result = _convert(model, diabetes.X_train)

    assert not result.artifact.meta["has_proba"]
    _assert_agrees(result, model, diabetes.X_test)


def test_frame_with_a_string_column_gets_one_input_per_column(mixed):
    preprocess = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "income"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        ]
    )
    model = make_pipeline(preprocess, LogisticRegression()).fit(mixed.X_train, mixed.y_train)

    result = _convert(model, mixed.X_train)

    assert result.artifact.meta["layout"] == "columns"
    assert [i["name"] for i in result.artifact.meta["inputs"]] == ["age", "income", "plan"]
    _assert_agrees(result, model, mixed.X_test)


def test_raw_boosters_convert(cancer):
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3},
        xgb.DMatrix(cancer.X_train, label=cancer.y_train),
        10,
    )

    result = convert_to_onnx(booster, "xgboost", cancer.X_train)

    assert result.reason is None
    assert result.artifact.meta["classes"] == [0, 1]


def test_booster_read_from_a_file_converts(iris_named, tmp_path):
    # A model registered from a file has no wrapper: conversion starts from the loaded booster.
    model = lgb.LGBMClassifier(n_estimators=10, verbose=-1)
    model.fit(iris_named.X_train, iris_named.y_train)
    path = tmp_path / "model.txt"
    model.booster_.save_model(path)
    flavor = LightGBMFlavor()
    predictor = flavor.load(flavor.read_file(path, LoadOptions()), LoadOptions())

    result = convert_to_onnx(predictor.model, "lightgbm", iris_named.X_train)

    assert result.reason is None
    assert result.artifact.meta["classes"] == [0, 1, 2]
    onnx_predictor = OnnxFlavor().load(result.artifact, LoadOptions())
    np.testing.assert_allclose(
        onnx_predictor.predict_proba(iris_named.X_test),
        model.predict_proba(iris_named.X_test),
        atol=PROBA_ATOL,
    )


def test_unconvertible_model_gives_a_reason(iris):
    model = make_pipeline(FunctionTransformer(np.round), LogisticRegression(max_iter=500))
    model.fit(iris.X_train, iris.y_train)

    result = _convert(model, iris.X_train)

    assert result.artifact is None
    assert result.reason.startswith("ONNX conversion failed (tensor inputs:")
    assert "FunctionTransformer" in result.reason


def test_disagreeing_conversion_is_dropped_with_the_difference():
    # Inputs near 1e8 lose their low digits in float32: ONNX predictions drift by thousands.
    rng = np.random.default_rng(0)
    X = 1e8 + rng.normal(0, 50, size=(200, 1))
    y = 1000 * (X[:, 0] - 1e8)
    model = LinearRegression().fit(X, y)

    result = convert_to_onnx(model, "sklearn", X)

    assert result.artifact is None
    assert result.reason.startswith("ONNX parity check failed: max prediction difference")
    assert result.max_abs_diff > REGRESSION_ATOL
    assert f"{result.max_abs_diff:.3g}" in result.reason


def test_disagreeing_classifier_is_dropped():
    rng = np.random.default_rng(1)
    X = 1e8 + rng.normal(0, 5, size=(300, 1))
    y = (X[:, 0] > 1e8).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1e6)).fit(X, y)

    result = convert_to_onnx(model, "sklearn", X)

    assert result.artifact is None
    assert "max probability difference" in result.reason


def test_bad_check_data_gives_a_reason_not_an_exception(iris):
    model = LogisticRegression(max_iter=500).fit(iris.X_train, iris.y_train)

    result = convert_to_onnx(model, "sklearn", np.zeros((3, 2)))

    assert result.artifact is None
    assert "ONNX conversion failed" in result.reason


def test_one_dimensional_check_data_gives_a_reason(iris):
    model = LogisticRegression(max_iter=500).fit(iris.X_train, iris.y_train)

    result = convert_to_onnx(model, "sklearn", np.zeros(4))

    assert result.artifact is None
    assert result.reason == "X_check must be 2-D (rows by features), got shape (4,)."


def test_missing_onnxmltools_names_the_extra(cancer, monkeypatch):
    model = xgb.XGBClassifier(n_estimators=2).fit(cancer.X_train, cancer.y_train)
    monkeypatch.setitem(sys.modules, "onnxmltools", None)

    result = convert_to_onnx(model, "xgboost", cancer.X_train)

    assert result.artifact is None
    assert "pip install 'modelyard[xgboost]'" in result.reason


@pytest.mark.parametrize("name", ["onnx", "pickle", "nonsense"])
def test_other_flavors_are_not_converted(name, iris):
    model = LogisticRegression(max_iter=500).fit(iris.X_train, iris.y_train)

    result = convert_to_onnx(model, name, iris.X_train)

    assert result.artifact is None
    assert f"not {name!r}" in result.reason
