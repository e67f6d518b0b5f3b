from __future__ import annotations

import sys

import lightgbm as lgb
import numpy as np
import pytest

from modelyard.errors import InvalidInputError, ModelLoadError, UnsupportedFormatError
from modelyard.flavors import (
    Artifact,
    LightGBMFlavor,
    LoadOptions,
    flavor_for_file,
    flavor_for_object,
)


@pytest.fixture(scope="module")
def flavor() -> LightGBMFlavor:
    return LightGBMFlavor()


def test_string_labels_round_trip(flavor, iris_named, round_trip):
    model = lgb.LGBMClassifier(n_estimators=15, verbose=-1)
    model.fit(iris_named.X_train, iris_named.y_train)

    artifact = flavor.dump(model)
    predictor = round_trip(flavor, model)

    X = iris_named.X_test
    assert artifact.meta["classes"] == ["setosa", "versicolor", "virginica"]
    assert artifact.meta["objective"] == "multiclass"
    assert artifact.meta["num_class"] == 3
    assert artifact.meta["model_class"] == "lightgbm.sklearn.LGBMClassifier"
    assert predictor.classes == ["setosa", "versicolor", "virginica"]
    np.testing.assert_array_equal(predictor.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(predictor.predict(X), model.predict(X))


def test_binary_classifier_round_trips(flavor, cancer, round_trip):
    model = lgb.LGBMClassifier(n_estimators=15, verbose=-1).fit(cancer.X_train, cancer.y_train)

    predictor = round_trip(flavor, model)

    X = cancer.X_test
    assert predictor.classes == [0, 1]
    np.testing.assert_array_equal(predictor.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(predictor.predict(X), model.predict(X))


def test_pandas_categorical_column_round_trips(flavor, mixed, round_trip):
    X_train = mixed.X_train.astype({"plan": "category"})
    X_test = mixed.X_test.astype({"plan": "category"})
    model = lgb.LGBMClassifier(n_estimators=15, min_child_samples=5, verbose=-1)
    model.fit(X_train, mixed.y_train)

    predictor = round_trip(flavor, model)

    np.testing.assert_array_equal(predictor.predict_proba(X_test), model.predict_proba(X_test))


def test_regressor_predicts_only(flavor, diabetes, round_trip):
    model = lgb.LGBMRegressor(n_estimators=15, verbose=-1).fit(diabetes.X_train, diabetes.y_train)

    predictor = round_trip(flavor, model)

    assert predictor.classes is None
    np.testing.assert_array_equal(
        predictor.predict(diabetes.X_test), model.predict(diabetes.X_test)
    )
    with pytest.raises(InvalidInputError, match=r"LightGBM \(regression\)"):
        predictor.predict_proba(diabetes.X_test)


def test_raw_booster_is_detected_and_gets_proba(cancer, round_trip):
    data = lgb.Dataset(cancer.X_train, label=cancer.y_train)
    booster = lgb.train({"objective": "binary", "verbose": -1}, data, num_boost_round=10)

    flavor = flavor_for_object(booster, trust_pickle=False)
    predictor = round_trip(flavor, booster)

    assert isinstance(flavor, LightGBMFlavor)
    assert predictor.classes == [0, 1]
    p = booster.predict(cancer.X_test)
    np.testing.assert_array_equal(predictor.predict_proba(cancer.X_test), np.c_[1 - p, p])


def test_wrong_width_is_an_input_error(flavor, cancer, round_trip):
    model = lgb.LGBMClassifier(n_estimators=3, verbose=-1).fit(cancer.X_train, cancer.y_train)

    with pytest.raises(InvalidInputError, match="LightGBM model rejected the input"):
        round_trip(flavor, model).predict(np.zeros((2, 5)))


def test_read_file(flavor, iris_named, tmp_path):
    model = lgb.LGBMClassifier(n_estimators=5, verbose=-1)
    model.fit(iris_named.X_train, iris_named.y_train)
    path = tmp_path / "model.txt"
    model.booster_.save_model(path)

    picked = flavor_for_file(path, trust_pickle=False)
    artifact = picked.read_file(path, LoadOptions())

    assert isinstance(picked, LightGBMFlavor)
    assert artifact.files == {"model.txt": path.read_bytes()}
    # A bare booster file has no labels: the classes are the class indexes.
    assert artifact.meta["classes"] == [0, 1, 2]
    assert artifact.meta["feature_names"] == model.booster_.feature_name()
    predictor = picked.load(artifact, LoadOptions())
    np.testing.assert_array_equal(
        predictor.predict_proba(iris_named.X_test), model.predict_proba(iris_named.X_test)
    )


def test_text_file_that_is_not_lightgbm_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("tree\nthis is not a model\n")

    with pytest.raises(UnsupportedFormatError, match=r"notes\.txt' is not a LightGBM model"):
        flavor_for_file(path, trust_pickle=False)


def test_load_of_corrupted_bytes_is_a_load_error(flavor):
    artifact = Artifact(files={"model.txt": b"tree\nversion=v4\nnonsense"}, meta={})

    with pytest.raises(ModelLoadError, match=r"model\.txt is not a readable LightGBM model"):
        flavor.load(artifact, LoadOptions())


def test_missing_lightgbm_names_the_extra(flavor, monkeypatch):
    monkeypatch.setitem(sys.modules, "lightgbm", None)

    with pytest.raises(ImportError, match=r"pip install 'modelyard\[lightgbm\]'"):
        flavor.load(Artifact(files={"model.txt": b"tree\nversion=v4\n"}), LoadOptions())
