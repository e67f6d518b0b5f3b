from __future__ import annotations

import pickle

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modelyard.errors import ModelLoadError, UnsupportedFormatError, UntrustedTypeError
from modelyard.flavors import (
    Artifact,
    LoadOptions,
    PickleFlavor,
    flavor_for_file,
    flavor_for_object,
)

TRUSTED = LoadOptions(trust_pickle=True)


class ThresholdModel:
    """A hand-written model: no flavor but pickle can save it."""

    def __init__(self, column: str, threshold: float) -> None:
        self.column = column
        self.threshold = threshold
        self.classes_ = np.array(["low", "high"])

    def predict(self, X):
        return np.where(X[self.column] > self.threshold, "high", "low")

    def predict_proba(self, X):
        high = (X[self.column] > self.threshold).to_numpy(dtype=float)
        return np.c_[1 - high, high]


class Tripwire:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def flavor() -> PickleFlavor:
    return PickleFlavor()


def test_object_without_a_safe_format_needs_trust():
    model = ThresholdModel("age", 40.0)

    with pytest.raises(UnsupportedFormatError) as info:
        flavor_for_object(model, trust_pickle=False)

    assert "test_flavor_pickle.ThresholdModel" in str(info.value)
    assert "trust_pickle=True" in str(info.value)
    assert "--trust-pickle" in str(info.value)
    assert isinstance(flavor_for_object(model, trust_pickle=True), PickleFlavor)


def test_object_without_predict_is_refused_even_with_trust():
    with pytest.raises(UnsupportedFormatError, match="has no predict method"):
        flavor_for_object({"weights": [1, 2]}, trust_pickle=True)


def test_round_trip_with_trust(flavor, mixed, round_trip):
    model = ThresholdModel("age", 40.0)

    artifact = flavor.dump(model)
    predictor = round_trip(flavor, model, TRUSTED)

    assert artifact.meta["untrusted"] is True
    assert artifact.meta["model_class"].endswith("test_flavor_pickle.ThresholdModel")
    assert artifact.meta["serializer"] == "cloudpickle"
    assert predictor.classes == ["low", "high"]
    X = mixed.X_test
    np.testing.assert_array_equal(predictor.predict(X), model.predict(X))
    np.testing.assert_array_equal(predictor.predict_proba(X), model.predict_proba(X))


def test_load_without_trust_is_refused_and_runs_nothing(flavor, tmp_path):
    marker = tmp_path / "ran"
    artifact = Artifact(files={"model.pkl": pickle.dumps(Tripwire(str(marker)))}, meta={})

    with pytest.raises(UntrustedTypeError) as info:
        flavor.load(artifact, LoadOptions())

    assert "registered as a pickle" in str(info.value)
    assert "trust_pickle=True / --trust-pickle" in str(info.value)
    assert not marker.exists()


def test_loaded_object_without_predict_is_a_load_error(flavor):
    artifact = Artifact(files={"model.pkl": pickle.dumps({"not": "a model"})})

    with pytest.raises(ModelLoadError, match="dict has no predict method"):
        flavor.load(artifact, TRUSTED)


def test_corrupted_pickle_is_a_load_error(flavor):
    artifact = Artifact(files={"model.pkl": b"\x80\x05garbage"})

    with pytest.raises(ModelLoadError, match=r"pickle model\.pkl cannot be loaded"):
        flavor.load(artifact, TRUSTED)


@pytest.mark.parametrize("suffix", [".pkl", ".pickle", ".joblib"])
def test_read_file_needs_trust(suffix, iris, tmp_path):
    model = LogisticRegression(max_iter=500).fit(iris.X_train, iris.y_train)
    path = tmp_path / f"model{suffix}"
    joblib.dump(model, path, compress=3 if suffix == ".joblib" else 0)

    with pytest.raises(UntrustedTypeError, match=rf"model\{suffix}' is a pickle"):
        flavor_for_file(path, trust_pickle=False)
    flavor = flavor_for_file(path, trust_pickle=True)
    with pytest.raises(UntrustedTypeError):
        flavor.read_file(path, LoadOptions())
    artifact = flavor.read_file(path, TRUSTED)

    assert isinstance(flavor, PickleFlavor)
    assert list(artifact.files.values()) == [path.read_bytes()]
    assert artifact.meta["untrusted"] is True
    assert artifact.meta["classes"] == [0, 1, 2]
    predictor = flavor.load(artifact, TRUSTED)
    np.testing.assert_array_equal(
        predictor.predict_proba(iris.X_test), model.predict_proba(iris.X_test)
    )


def test_read_file_of_a_bad_pickle_is_refused(flavor, tmp_path):
    path = tmp_path / "bad.pkl"
    path.write_bytes(b"\x80\x05\x95 this is not a pickle")

    with pytest.raises(UnsupportedFormatError, match=r"bad\.pkl' cannot be loaded"):
        flavor.read_file(path, TRUSTED)
