"""Small seeded datasets and a round trip through JSON, as the registry stores metadata."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.model_selection import train_test_split

from modelyard.flavors import Artifact, Flavor, LoadOptions, Predictor


@dataclass(frozen=True)
class Split:
    X_train: Any
    X_test: Any
    y_train: Any
    y_test: Any


def _split(X: Any, y: Any) -> Split:
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    return Split(X_train, X_test, y_train, y_test)


@pytest.fixture(scope="session")
def iris() -> Split:
    """Three classes, a DataFrame, integer labels."""
    X, y = load_iris(return_X_y=True, as_frame=True)
    return _split(X, y.to_numpy())


@pytest.fixture(scope="session")
def iris_named() -> Split:
    """Three classes with string labels."""
    X, y = load_iris(return_X_y=True, as_frame=True)
    names = np.array(["setosa", "versicolor", "virginica"])
    return _split(X, names[y.to_numpy()])


@pytest.fixture(scope="session")
def cancer() -> Split:
    """Two classes, 30 features with spaces in their names."""
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return _split(X, y.to_numpy())


@pytest.fixture(scope="session")
def diabetes() -> Split:
    """A regression target in the hundreds."""
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    return _split(X, y.to_numpy())


@pytest.fixture(scope="session")
def mixed() -> Split:
    """Two numeric columns (one with missing values) and a categorical string column."""
    rng = np.random.default_rng(7)
    n = 400
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "income": rng.lognormal(10, 0.5, n),
            "plan": rng.choice(["basic", "plus", "pro"], n),
        }
    )
    y = ((frame["age"] > 40) ^ (frame["plan"] == "pro")).astype(int).to_numpy()
    frame.loc[::11, "income"] = np.nan
    return _split(frame, y)


def _through_json(artifact: Artifact) -> Artifact:
    meta = json.loads(json.dumps(artifact.meta, allow_nan=False))
    return Artifact(files={k: bytes(v) for k, v in artifact.files.items()}, meta=meta)


def _round_trip(flavor: Flavor, model: object, options: LoadOptions | None = None) -> Predictor:
    return flavor.load(_through_json(flavor.dump(model)), options or LoadOptions())


@pytest.fixture(scope="session")
def through_json() -> Callable[[Artifact], Artifact]:
    """The artifact as the registry gives it back: bytes copied, metadata through strict JSON
    (which also proves the metadata is JSON-safe)."""
    return _through_json


@pytest.fixture(scope="session")
def round_trip() -> Callable[..., Predictor]:
    """``flavor.dump`` then ``flavor.load`` through JSON metadata."""
    return _round_trip
