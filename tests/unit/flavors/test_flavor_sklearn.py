from __future__ import annotations

import numpy as np
import pytest
import skops.io as sio
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from modelyard.errors import (
    InvalidInputError,
    ModelLoadError,
    UnsupportedFormatError,
    UntrustedTypeError,
)
from modelyard.flavors import (
    SKOPS_TRUSTED_TYPES,
    Artifact,
    LoadOptions,
    SklearnFlavor,
    flavor_for_file,
)

CLASSIFIERS = {
    "logreg-scaled": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
    "random-forest": lambda: RandomForestClassifier(n_estimators=15, random_state=0),
    "extra-trees": lambda: ExtraTreesClassifier(n_estimators=15, random_state=0),
    "gradient-boosting": lambda: GradientBoostingClassifier(n_estimators=10, random_state=0),
    "hist-gradient-boosting": lambda: HistGradientBoostingClassifier(max_iter=15, random_state=0),
    "decision-tree": lambda: DecisionTreeClassifier(random_state=0),
    "knn": KNeighborsClassifier,
    "calibrated-svc": lambda: CalibratedClassifierCV(SVC(), ensemble=False),
    "mlp-adam": lambda: make_pipeline(
        StandardScaler(), MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0)
    ),
}
REGRESSORS = {
    "ridge": Ridge,
    "random-forest": lambda: RandomForestRegressor(n_estimators=10, random_state=0),
    "gradient-boosting": lambda: GradientBoostingRegressor(n_estimators=10, random_state=0),
    "hist-gradient-boosting": lambda: HistGradientBoostingRegressor(max_iter=15, random_state=0),
    "knn": KNeighborsRegressor,
}


@pytest.fixture(scope="module")
def flavor() -> SklearnFlavor:
    return SklearnFlavor()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("make", CLASSIFIERS.values(), ids=CLASSIFIERS.keys())
def test_classifiers_round_trip_with_string_labels_without_extra_trust(
    make, flavor, iris_named, round_trip
):
    model = make().fit(iris_named.X_train, iris_named.y_train)

    predictor = round_trip(flavor, model)

    X = iris_named.X_test
    assert predictor.classes == ["setosa", "versicolor", "virginica"]
    assert predictor.has_proba
    np.testing.assert_array_equal(predictor.predict(X), model.predict(X))
    np.testing.assert_array_equal(predictor.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize("make", REGRESSORS.values(), ids=REGRESSORS.keys())
def test_regressors_round_trip(make, flavor, diabetes, round_trip):
    model = make().fit(diabetes.X_train, diabetes.y_train)

    predictor = round_trip(flavor, model)

    assert predictor.classes is None
    assert not predictor.has_proba
    np.testing.assert_array_equal(
        predictor.predict(diabetes.X_test), model.predict(diabetes.X_test)
    )
    with pytest.raises(InvalidInputError, match="no predict_proba"):
        predictor.predict_proba(diabetes.X_test)


def test_column_transformer_pipeline_on_a_frame_with_a_categorical_column(
    flavor, mixed, round_trip
):
    preprocess = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "income"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        ]
    )
    model = make_pipeline(preprocess, LogisticRegression()).fit(mixed.X_train, mixed.y_train)

    predictor = round_trip(flavor, model)

    np.testing.assert_array_equal(predictor.predict(mixed.X_test), model.predict(mixed.X_test))
    np.testing.assert_array_equal(
        predictor.predict_proba(mixed.X_test), model.predict_proba(mixed.X_test)
    )


def test_dump_records_class_types_needing_trust_and_labels(flavor, iris_named):
    model = RandomForestClassifier(n_estimators=3, random_state=0)
    model.fit(iris_named.X_train, iris_named.y_train)

    artifact = flavor.dump(model)

    assert list(artifact.files) == ["model.skops"]
    assert artifact.meta == {
        "model_class": "sklearn.ensemble._forest.RandomForestClassifier",
        "classes": ["setosa", "versicolor", "virginica"],
        "has_proba": True,
        "untrusted_types": ["sklearn.tree._tree.Tree"],
    }
    assert all(type(c) is str for c in artifact.meta["classes"])


def test_hist_gradient_boosting_and_forest_types_are_allow_listed(flavor, iris):
    for model in (
        HistGradientBoostingClassifier(max_iter=3),
        RandomForestClassifier(n_estimators=2, random_state=0),
    ):
        model.fit(iris.X_train, iris.y_train)
        untrusted = flavor.dump(model).meta["untrusted_types"]
        assert untrusted
        assert set(untrusted) <= SKOPS_TRUSTED_TYPES


def _rounding_pipeline(iris):
    model = make_pipeline(FunctionTransformer(np.round), LogisticRegression(max_iter=500))
    return model.fit(iris.X_train, iris.y_train)


def test_custom_type_is_refused_without_trust(flavor, iris, through_json):
    artifact = through_json(flavor.dump(_rounding_pipeline(iris)))

    with pytest.raises(UntrustedTypeError) as info:
        flavor.load(artifact, LoadOptions())

    message = str(info.value)
    assert "numpy.round" in message
    assert "trusted_types=['numpy.round']" in message
    assert "--trust-type" in message


def test_custom_type_loads_once_trusted(flavor, iris, through_json):
    model = _rounding_pipeline(iris)
    artifact = through_json(flavor.dump(model))

    predictor = flavor.load(artifact, LoadOptions(trusted_types=("numpy.round",)))

    np.testing.assert_array_equal(
        predictor.predict_proba(iris.X_test), model.predict_proba(iris.X_test)
    )


def test_load_checks_the_bytes_not_the_metadata(flavor, iris):
    artifact = flavor.dump(_rounding_pipeline(iris))
    lying = Artifact(files=artifact.files, meta={**artifact.meta, "untrusted_types": []})

    with pytest.raises(UntrustedTypeError, match=r"numpy\.round"):
        flavor.load(lying, LoadOptions())


def test_allow_list_names_exact_data_types_only():
    dangerous = ("builtins.", "os.", "posix.", "subprocess.", "functools.", "operator.")
    assert SKOPS_TRUSTED_TYPES
    for name in SKOPS_TRUSTED_TYPES:
        assert not name.startswith(dangerous), name
        assert "*" not in name and not name.endswith(".")
    assert "sklearn.tree._tree.Tree" in SKOPS_TRUSTED_TYPES
    assert "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor" in (
        SKOPS_TRUSTED_TYPES
    )


def test_wrong_width_is_an_input_error(flavor, iris, round_trip):
    model = LogisticRegression(max_iter=500).fit(iris.X_train.to_numpy(), iris.y_train)

    with pytest.raises(InvalidInputError, match="LogisticRegression model rejected the input"):
        round_trip(flavor, model).predict(np.zeros((2, 3)))


def test_a_refused_infinity_names_its_column(flavor, iris, round_trip):
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(iris.X_train, iris.y_train)
    X = iris.X_test.head(2).copy()
    first, second = X.columns[:2]
    X[first] = np.inf
    X[second] = 1e308  # finite, but past float32, which the trees cast to
    loaded = round_trip(flavor, model)
    # scikit-learn warns of the float32 cast on its way to refusing the rows
    with pytest.raises(InvalidInputError) as caught, pytest.warns(RuntimeWarning, match="overflow"):
        loaded.predict(X)
    assert f"infinite or beyond float32 in: {first}, {second};" in str(caught.value)


def test_dump_refuses_an_unfitted_estimator(flavor):
    with pytest.raises(InvalidInputError, match="LogisticRegression is not fitted"):
        flavor.dump(LogisticRegression())


def test_read_file_keeps_the_bytes_and_describes_the_model(flavor, iris, tmp_path):
    model = HistGradientBoostingClassifier(max_iter=5).fit(iris.X_train, iris.y_train)
    path = tmp_path / "model.skops"
    sio.dump(model, path)

    picked = flavor_for_file(path, trust_pickle=False)
    artifact = picked.read_file(path, LoadOptions())

    assert isinstance(picked, SklearnFlavor)
    assert artifact.files == {"model.skops": path.read_bytes()}
    assert artifact.meta["model_class"].endswith("HistGradientBoostingClassifier")
    assert artifact.meta["classes"] == [0, 1, 2]
    predictor = picked.load(artifact, LoadOptions())
    np.testing.assert_array_equal(predictor.predict(iris.X_test), model.predict(iris.X_test))


def test_read_file_refuses_untrusted_types(flavor, iris, tmp_path):
    path = tmp_path / "rounding.skops"
    sio.dump(_rounding_pipeline(iris), path)

    with pytest.raises(UntrustedTypeError, match=r"rounding\.skops"):
        flavor.read_file(path, LoadOptions())
    artifact = flavor.read_file(path, LoadOptions(trusted_types=("numpy.round",)))
    assert artifact.meta["untrusted_types"] == ["numpy.round"]


def test_corrupted_skops_file_is_refused(flavor, iris, tmp_path):
    model = LogisticRegression(max_iter=500).fit(iris.X_train, iris.y_train)
    data = sio.dumps(model)
    truncated = tmp_path / "truncated.skops"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.skops"
    garbage.write_bytes(b"definitely not a zip archive")

    assert isinstance(flavor_for_file(truncated, trust_pickle=False), SklearnFlavor)
    with pytest.raises(UnsupportedFormatError, match=r"truncated\.skops.*cannot be read"):
        flavor.read_file(truncated, LoadOptions())
    with pytest.raises(UnsupportedFormatError, match=r"garbage\.skops.*not a skops file"):
        flavor_for_file(garbage, trust_pickle=False)


def test_load_of_corrupted_bytes_is_a_load_error(flavor):
    artifact = Artifact(files={"model.skops": b"PK\x03\x04 broken"}, meta={})

    with pytest.raises(ModelLoadError, match=r"model\.skops cannot be read"):
        flavor.load(artifact, LoadOptions())


def test_load_without_the_model_file_names_what_is_there(flavor):
    with pytest.raises(ModelLoadError, match=r"no model\.skops \(it has model\.pkl\)"):
        flavor.load(Artifact(files={"model.pkl": b""}), LoadOptions())
