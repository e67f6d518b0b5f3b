"""A registry home shared by the server tests: models with known behaviour."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelyard.registry import Registry
from tests.integration._models import PickyModel, SleepyModel, SlowModel


@dataclass
class ServedHome:
    home: Path
    X: pd.DataFrame
    mixed: pd.DataFrame

    def registry(self) -> Registry:
        return Registry(
            database_url=f"sqlite:///{self.home / 'modelyard.db'}",
            artifact_root=str(self.home / "artifacts"),
        )


@pytest.fixture(scope="session")
def served_home(tmp_path_factory: pytest.TempPathFactory) -> ServedHome:
    from sklearn.compose import make_column_transformer
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    home = tmp_path_factory.mktemp("served")
    X_raw, y = make_classification(n_samples=2000, n_features=20, random_state=0)
    X = pd.DataFrame(X_raw, columns=[f"f{i}" for i in range(20)])
    registry = Registry(
        database_url=f"sqlite:///{home / 'modelyard.db'}", artifact_root=str(home / "artifacts")
    )
    hgb = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(X, y)
    registry.register(hgb, name="hgb", data=X, convert="onnx")
    logreg = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    registry.register(logreg, name="hgb", data=X, convert="onnx")
    registry.set_alias("hgb/1", "production")

    lin_X = pd.DataFrame({"a": [0.0, 1.0, 0.0, 0.0], "b": [0.0, 0.0, 1.0, 0.0],
                          "c": [0.0, 0.0, 0.0, 1.0]})  # fmt: skip
    lin = LinearRegression().fit(lin_X, lin_X["a"] + 10 * lin_X["b"] + 100 * lin_X["c"])
    registry.register(lin, name="lin", data=lin_X)

    rng = np.random.default_rng(0)
    mixed = pd.DataFrame({"age": rng.integers(18, 80, 300).astype(float),
                          "city": rng.choice(["paris", "rome", "oslo"], 300)})  # fmt: skip
    pipe = make_pipeline(
        make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["city"]),
                                (StandardScaler(), ["age"])),
        LogisticRegression(),
    ).fit(mixed, (mixed["city"] == "rome").astype(int))  # fmt: skip
    registry.register(pipe, name="mixed", data=mixed)

    cols = pd.DataFrame({"x": [1.0, 2.0], "y": [3.0, 4.0]})
    registry.register(SlowModel(0.3), name="slow", data=cols, trust_pickle=True)
    registry.register(PickyModel(), name="picky", data=cols, trust_pickle=True)
    registry.register(SlowModel(0.0), name="echo", data=cols, trust_pickle=True)
    registry.register(SlowModel(0.03), name="lagged", data=cols, trust_pickle=True)
    zeros = pd.DataFrame({"x": [1.0, 2.0], "y": [0.0, 0.0]})
    registry.register(SleepyModel(), name="sleepy", data=zeros, trust_pickle=True)
    registry.close()
    return ServedHome(home=home, X=X, mixed=mixed)


@pytest.fixture
def own_home(served_home: ServedHome, tmp_path: Path) -> ServedHome:
    """A copy of the session's registry home for a test that moves aliases, deploys or damages
    files: nothing it does reaches the other tests, whether it passes or fails."""
    home = tmp_path / "home"
    shutil.copytree(served_home.home, home, ignore=shutil.ignore_patterns("*.log"))
    return ServedHome(home=home, X=served_home.X, mixed=served_home.mixed)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """One local Ray (2 CPUs) for every Ray test of the session (starting one takes seconds);
    the code under test uses it and leaves it running, as it stops only a Ray it started."""
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
        )
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def tokens(served_home: ServedHome) -> dict[str, str]:
    """Tokens in the served home: ``any`` model, ``lin`` or ``mixed`` only (predict), ``admin``."""
    from modelyard.serving.tokens import create_token

    registry = served_home.registry()
    try:
        return {
            name: create_token(registry.db, scope=scope, model=model, expires=None,
                               created_by="test")[0]
            for name, scope, model in (("any", "predict", None), ("lin", "predict", "lin"),
                                       ("mixed", "predict", "mixed"), ("admin", "admin", None))
        }  # fmt: skip
    finally:
        registry.close()
