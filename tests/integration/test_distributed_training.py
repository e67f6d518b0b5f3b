"""XGBoost and LightGBM trained by two local Ray workers, each holding half of the rows, with
each library's own distributed training: one model, as good as one process on all rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelyard.errors import PipelineDefinitionError
from modelyard.pipelines.distributed import train_on_ray

pytestmark = pytest.mark.slow  # two Ray workers import XGBoost or LightGBM: 5-10 s a test

ROUNDS = 30


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=4000, n_features=10, random_state=0)
    return X[:3000], y[:3000], X[3000:], y[3000:]


def _auc(truth: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(truth, scores))


def test_xgboost_on_two_ray_workers(data: Any, ray_cluster: Any) -> None:
    import xgboost as xgb

    X, y, X_test, y_test = data
    params = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.3}
    model = train_on_ray("xgboost", X, y, params=params, num_boost_round=ROUNDS, workers=2)
    assert model.rows_per_worker == (1500, 1500) and model.workers_agree
    assert model.booster.num_boosted_rounds() == ROUNDS
    single = xgb.train({"tree_method": "hist", **params}, xgb.DMatrix(X, label=y), ROUNDS)
    half = xgb.train(
        {"tree_method": "hist", **params}, xgb.DMatrix(X[:1500], label=y[:1500]), ROUNDS
    )
    test = xgb.DMatrix(X_test)
    spread, whole = _auc(y_test, model.booster.predict(test)), _auc(y_test, single.predict(test))
    assert abs(spread - whole) < 0.01, (spread, whole)
    # one model from both halves, not worker 0's half alone
    assert not np.allclose(model.booster.predict(test), half.predict(test))


def test_lightgbm_on_two_ray_workers(data: Any, ray_cluster: Any) -> None:
    import lightgbm as lgb

    X, y, X_test, y_test = data
    params = {"objective": "binary", "num_leaves": 15, "verbose": -1}
    model = train_on_ray("lightgbm", X, y, params=params, num_boost_round=ROUNDS, workers=2)
    assert model.rows_per_worker == (1500, 1500) and model.workers_agree
    single = lgb.train(params, lgb.Dataset(X, label=y), ROUNDS)
    half = lgb.train(params, lgb.Dataset(X[:1500], label=y[:1500]), ROUNDS)
    spread, whole = (
        _auc(y_test, model.booster.predict(X_test)),
        _auc(y_test, single.predict(X_test)),
    )
    assert abs(spread - whole) < 0.01, (spread, whole)
    assert not np.allclose(model.booster.predict(X_test), half.predict(X_test))


def test_more_workers_than_the_cluster_holds_is_refused_at_once(
    data: Any, ray_cluster: Any
) -> None:
    X, y, _, _ = data
    with pytest.raises(PipelineDefinitionError) as exc:
        train_on_ray("xgboost", X, y, params={}, workers=3)
    assert str(exc.value) == (
        "train_on_ray('xgboost') with 3 workers asks for 3 cpus but the Ray cluster has 2; lower "
        "its resources or run on a cluster that has them (--address)."
    )
