"""Step outputs stored by type, deterministically, and loaded back with the registry's trust
rules."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier

from modelyard.errors import UnsupportedFormatError, UntrustedTypeError
from modelyard.pipelines.artifacts import Encoded, decode_value, encode_value


def roundtrip(value: object, **options: object) -> tuple[Encoded, object]:
    encoded = encode_value(value, label="output 'x' of step 's'", **options)  # type: ignore[arg-type]
    decoded = decode_value(
        encoded.data, kind=encoded.kind, format=encoded.format, meta=encoded.meta, label="x"
    )
    return encoded, decoded


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"age": [31.0, np.nan, 52.5], "city": ["oslo", None, "rome"], "n": [1, 2, 3]},
        index=[10, 4, 7],
    )


def test_tables_series_arrays_json_and_bytes_round_trip() -> None:
    encoded, back = roundtrip(frame())
    assert (encoded.kind, encoded.format, encoded.meta["rows"]) == ("table", "parquet", 3)
    pd.testing.assert_frame_equal(back, frame(), check_dtype=False)  # type: ignore[arg-type]
    encoded, back = roundtrip(pd.Series([1.5, 2.5], index=["a", "b"], name="churned"))
    assert encoded.kind == "series"
    pd.testing.assert_series_equal(back, pd.Series([1.5, 2.5], index=["a", "b"], name="churned"))  # type: ignore[arg-type]
    encoded, back = roundtrip(np.arange(6, dtype=np.int32).reshape(2, 3))
    assert (encoded.format, encoded.meta) == ("npy", {"shape": [2, 3], "dtype": "int32"})
    np.testing.assert_array_equal(back, np.arange(6).reshape(2, 3))  # type: ignore[arg-type]
    value = {"b": [1, 2.5, None, True], "a": {"x": "y"}, "n": np.float64(0.5), "i": np.int64(3)}
    encoded, back = roundtrip(value)
    assert encoded.format == "json"
    assert encoded.data == b'{"a":{"x":"y"},"b":[1,2.5,null,true],"i":3,"n":0.5}'
    assert back == {"a": {"x": "y"}, "b": [1, 2.5, None, True], "i": 3, "n": 0.5}
    assert roundtrip((1, "a"))[1] == [1, "a"]  # tuples come back as lists
    assert roundtrip(None)[1] is None
    assert roundtrip(b"\x00raw")[1] == b"\x00raw"


def test_a_fitted_sklearn_model_is_stored_with_skops_and_reproducibly() -> None:
    X = np.random.default_rng(0).normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(int)
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    encoded, back = roundtrip(model)
    assert (encoded.kind, encoded.format, encoded.meta["file"]) == (
        "model",
        "sklearn",
        "model.skops",
    )
    assert isinstance(back, RandomForestClassifier)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    assert encode_value(model, label="again").data == encoded.data  # skops ids and times fixed


def test_xgboost_and_lightgbm_models_use_their_own_formats() -> None:
    xgb = pytest.importorskip("xgboost")
    lgb = pytest.importorskip("lightgbm")
    X = np.random.default_rng(0).normal(size=(200, 4))
    y = (X[:, 0] > 0).astype(int)
    for model, fmt in (
        (xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(X, y), "xgboost"),
        (lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y), "lightgbm"),
    ):
        encoded, back = roundtrip(model)
        assert (encoded.kind, encoded.format) == ("model", fmt)
        assert encode_value(model, label="again").data == encoded.data
        np.testing.assert_array_equal(back.predict(X), model.predict(X))  # type: ignore[attr-defined]
        assert back.classes == [0, 1]  # type: ignore[attr-defined]  # the flavor's predictor


class Custom(BaseEstimator):  # type: ignore[misc]  # sklearn ships no type hints
    def fit(self, X: np.ndarray, y: object = None) -> Custom:
        self.mean_ = float(np.mean(X))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), self.mean_)


def test_models_with_untrusted_types_are_refused_when_produced() -> None:
    model = Custom().fit(np.ones((3, 2)))
    with pytest.raises(UntrustedTypeError) as exc:
        encode_value(model, label="output 'model' of step 'train'")
    name = f"{__name__}.Custom"
    assert f"does not trust when loading skops files ({name})" in str(exc.value)
    assert str(exc.value).startswith("The output 'model' of step 'train' holds types")
    assert f"@step(trusted_types=['{name}'])" in str(exc.value)
    _, back = roundtrip(model, trusted_types=[name])
    assert isinstance(back, Custom) and back.mean_ == 1.0


class Opaque:
    def __init__(self, value: int) -> None:
        self.value = value


def test_other_objects_need_allow_pickle() -> None:
    for value in (Opaque(3), {1: "int key"}, np.array([{"a": 1}], dtype=object)):
        with pytest.raises(UnsupportedFormatError) as exc:
            encode_value(value, label="output 'thing' of step 'make'")
        assert "output 'thing' of step 'make'" in str(exc.value)
        assert "allow_pickle=True" in str(exc.value)
    encoded, back = roundtrip(Opaque(3), allow_pickle=True)
    assert (encoded.kind, encoded.format) == ("object", "pickle")
    assert isinstance(back, Opaque) and back.value == 3
    mixed = pd.DataFrame({"x": [1, "a", 2.5]})
    with pytest.raises(UnsupportedFormatError, match="cannot be stored as Parquet"):
        encode_value(mixed, label="output")
    assert roundtrip(mixed, allow_pickle=True)[0].format == "pickle"


_SUBPROCESS = """
import hashlib, sys
import numpy as np, pandas as pd
from sklearn.ensemble import RandomForestClassifier
from modelyard.pipelines.artifacts import encode_value
sys.path.insert(0, {root!r})
from tests.unit.pipelines.test_artifacts import frame
X = np.random.default_rng(0).normal(size=(60, 3))
model = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, (X[:, 0] > 0).astype(int))
for value in (frame(), model):
    print(hashlib.sha256(encode_value(value, label="x").data).hexdigest())
"""


def test_the_same_values_give_the_same_bytes_in_another_process() -> None:
    from pathlib import Path

    root = str(Path(__file__).parents[3])
    out = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS.format(root=root)],
        capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "123", "PATH": ""},
    )  # fmt: skip
    X = np.random.default_rng(0).normal(size=(60, 3))
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, (X[:, 0] > 0).astype(int))
    here = [hashlib.sha256(encode_value(v, label="x").data).hexdigest() for v in (frame(), model)]
    assert out.stdout.split() == here
    assert json.loads(json.dumps(here))  # two non-empty digests
