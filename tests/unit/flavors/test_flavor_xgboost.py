from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import xgboost as xgb

from modelyard.errors import InvalidInputError, ModelLoadError, UnsupportedFormatError
from modelyard.flavors import (
    Artifact,
    LoadOptions,
    XGBoostFlavor,
    flavor_for_file,
    flavor_for_object,
)


@pytest.fixture(scope="module")
def flavor() -> XGBoostFlavor:
    return XGBoostFlavor()


def test_binary_classifier_round_trips_exactly_with_feature_names(flavor, cancer, round_trip):
    model = xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(cancer.X_train, cancer.y_train)

    artifact = flavor.dump(model)
    predictor = round_trip(flavor, model)

    X = cancer.X_test
    assert artifact.meta["objective"] == "binary:logistic"
    assert artifact.meta["feature_names"] == list(cancer.X_train.columns)
    assert artifact.meta["n_features"] == 30
    assert artifact.meta["model_class"] == "xgboost.sklearn.XGBClassifier"
    assert predictor.classes == [0, 1]
    np.testing.assert_array_equal(predictor.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(predictor.predict(X), model.predict(X))
    np.testing.assert_array_equal(predictor.predict(X.to_numpy()), model.predict(X))


def test_booster_checks_feature_names_of_a_frame(flavor, cancer, round_trip):
    model = xgb.XGBClassifier(n_estimators=3).fit(cancer.X_train, cancer.y_train)
    predictor = round_trip(flavor, model)

    renamed = cancer.X_test.rename(columns=lambda c: c.upper())
    with pytest.raises(InvalidInputError, match="XGBoost model rejected the input"):
        predictor.predict(renamed)
    with pytest.raises(InvalidInputError, match="XGBoost model rejected the input"):
        predictor.predict(np.zeros((2, 5)))


def test_multiclass_classifier_round_trips(flavor, iris, round_trip):
    model = xgb.XGBClassifier(n_estimators=10).fit(iris.X_train, iris.y_train)

    predictor = round_trip(flavor, model)

    assert predictor.classes == [0, 1, 2]
    np.testing.assert_array_equal(
        predictor.predict_proba(iris.X_test), model.predict_proba(iris.X_test)
    )
    np.testing.assert_array_equal(predictor.predict(iris.X_test), model.predict(iris.X_test))


def test_softmax_objective_gets_probabilities_from_margins(flavor, iris, round_trip):
    model = xgb.XGBClassifier(n_estimators=10, objective="multi:softmax")
    model.fit(iris.X_train, iris.y_train)

    predictor = round_trip(flavor, model)

    np.testing.assert_array_equal(predictor.predict(iris.X_test), model.predict(iris.X_test))
    np.testing.assert_allclose(
        predictor.predict_proba(iris.X_test), model.predict_proba(iris.X_test), atol=1e-6
    )


def test_early_stopping_uses_the_best_iteration(flavor, cancer, round_trip):
    model = xgb.XGBClassifier(n_estimators=300, learning_rate=0.5, early_stopping_rounds=3)
    model.fit(
        cancer.X_train, cancer.y_train, eval_set=[(cancer.X_test, cancer.y_test)], verbose=False
    )
    assert model.best_iteration + 1 < model.get_booster().num_boosted_rounds()

    predictor = round_trip(flavor, model)

    np.testing.assert_array_equal(
        predictor.predict_proba(cancer.X_test), model.predict_proba(cancer.X_test)
    )


def test_regressor_predicts_only(flavor, diabetes, round_trip):
    model = xgb.XGBRegressor(n_estimators=20).fit(diabetes.X_train, diabetes.y_train)

    predictor = round_trip(flavor, model)

    assert predictor.classes is None
    assert not predictor.has_proba
    np.testing.assert_array_equal(
        predictor.predict(diabetes.X_test), model.predict(diabetes.X_test)
    )
    with pytest.raises(InvalidInputError, match=r"XGBoost \(reg:squarederror\).*predict"):
        predictor.predict_proba(diabetes.X_test)


def test_linear_booster_predicts_through_a_dmatrix(flavor, diabetes, round_trip):
    model = xgb.XGBRegressor(booster="gblinear", n_estimators=10)
    model.fit(diabetes.X_train, diabetes.y_train)

    predictor = round_trip(flavor, model)

    np.testing.assert_allclose(
        predictor.predict(diabetes.X_test), model.predict(diabetes.X_test), rtol=1e-6
    )


def test_custom_missing_value_is_kept(flavor, diabetes, round_trip):
    model = xgb.XGBRegressor(n_estimators=10, missing=0.0).fit(diabetes.X_train, diabetes.y_train)
    X = diabetes.X_test.copy()
    X.iloc[::3, 0] = 0.0

    assert flavor.dump(model).meta["missing"] == 0.0
    np.testing.assert_array_equal(round_trip(flavor, model).predict(X), model.predict(X))


def test_ranker_predicts_scores_only(flavor, iris, round_trip):
    qid = np.repeat(np.arange(len(iris.y_train) // 5 + 1), 5)[: len(iris.y_train)]
    model = xgb.XGBRanker(n_estimators=5).fit(iris.X_train, iris.y_train, qid=qid)

    predictor = round_trip(flavor, model)

    assert not predictor.has_proba
    np.testing.assert_array_equal(predictor.predict(iris.X_test), model.predict(iris.X_test))


def test_raw_booster_is_detected_and_gets_proba(cancer, round_trip):
    data = xgb.DMatrix(cancer.X_train, label=cancer.y_train)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3}, data, 10)

    flavor = flavor_for_object(booster, trust_pickle=False)
    predictor = round_trip(flavor, booster)

    assert isinstance(flavor, XGBoostFlavor)
    assert predictor.classes == [0, 1]
    p = booster.predict(xgb.DMatrix(cancer.X_test))
    np.testing.assert_array_equal(predictor.predict_proba(cancer.X_test)[:, 1], p)
    np.testing.assert_array_equal(predictor.predict(cancer.X_test), (p > 0.5).astype(int))


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
def test_read_file_in_both_formats(suffix, flavor, iris, tmp_path):
    model = xgb.XGBClassifier(n_estimators=5).fit(iris.X_train, iris.y_train)
    path = tmp_path / f"model{suffix}"
    model.save_model(path)

    picked = flavor_for_file(path, trust_pickle=False)
    artifact = picked.read_file(path, LoadOptions())

    assert isinstance(picked, XGBoostFlavor)
    assert artifact.files == {f"model{suffix}": path.read_bytes()}
    assert artifact.meta["format"] == suffix[1:]
    assert artifact.meta["objective"] == "multi:softprob"
    assert artifact.meta["num_class"] == 3
    assert artifact.meta["classes"] == [0, 1, 2]
    predictor = picked.load(artifact, LoadOptions())
    np.testing.assert_array_equal(
        predictor.predict_proba(iris.X_test), model.predict_proba(iris.X_test)
    )


def test_json_that_is_not_xgboost_is_refused(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"learning_rate": 0.1}))

    with pytest.raises(UnsupportedFormatError, match=r"config\.json' is not an XGBoost model"):
        flavor_for_file(path, trust_pickle=False)


def test_read_file_of_a_broken_model_is_refused(flavor, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"learner": {"nothing": 1}, "version": [3, 2, 0]}')

    assert isinstance(flavor_for_file(path, trust_pickle=False), XGBoostFlavor)
    with pytest.raises(UnsupportedFormatError, match=r"broken\.json' is not a readable XGBoost"):
        flavor.read_file(path, LoadOptions())


def test_load_of_corrupted_bytes_is_a_load_error(flavor):
    with pytest.raises(ModelLoadError, match=r"model\.json is not a readable XGBoost model"):
        flavor.load(Artifact(files={"model.json": b'{"learner": 1}'}), LoadOptions())


def test_dump_refuses_an_unfitted_model(flavor):
    with pytest.raises(InvalidInputError, match="XGBRegressor is not fitted"):
        flavor.dump(xgb.XGBRegressor())


def test_missing_xgboost_names_the_extra(flavor, cancer, monkeypatch):
    model = xgb.XGBClassifier(n_estimators=2).fit(cancer.X_train, cancer.y_train)
    artifact = flavor.dump(model)
    monkeypatch.setitem(sys.modules, "xgboost", None)

    with pytest.raises(ImportError, match=r"pip install 'modelyard\[xgboost\]'"):
        flavor.load(artifact, LoadOptions())
