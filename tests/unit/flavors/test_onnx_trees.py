"""The compiled tree-ensemble kernel gives onnxruntime's answers, or steps aside."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import xgboost as xgb
from onnx import TensorProto, helper
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)

from modelyard.flavors import LoadOptions, OnnxFlavor, convert_to_onnx, flavor_for_object
from modelyard.flavors._onnx_trees import (
    _SIZES,
    BLOCK,
    disagreement,
    probe_rows,
    tree_kernel,
    tree_tables,
)

KERNEL = LoadOptions(onnx_tree_kernel=True)


def _data(kind: str, n_classes: int = 2) -> tuple[Any, Any, Any]:
    """Training rows with missing values (so splits learn where NaN goes), and test rows with
    more of them than training had."""
    rng = np.random.default_rng(0)
    if kind == "classifier":
        X, y = make_classification(
            n_samples=3000, n_features=8, n_informative=5, n_classes=n_classes, random_state=0
        )
    else:
        X, y = make_regression(n_samples=3000, n_features=8, noise=5.0, random_state=0)
    X = X.astype(np.float32)
    X[rng.random(X.shape) < 0.05] = np.nan
    test = rng.standard_normal((4000, 8)).astype(np.float32) * 2
    test[rng.random(test.shape) < 0.1] = np.nan
    return X, y, test


def _both(model: Any, X: Any) -> tuple[Any, Any]:
    """The model converted as the registry converts it, loaded with and without the kernel."""
    flavor = flavor_for_object(model, trust_pickle=False)
    result = convert_to_onnx(model, flavor.name, X[:200], options=LoadOptions())
    assert result.artifact is not None, result.reason
    return OnnxFlavor().load(result.artifact, KERNEL), OnnxFlavor().load(
        result.artifact, LoadOptions()
    )


# gradient boosting does not fit on missing values, and skl2onnx's forests do not convert those
# that did; their test rows keep them (NaN then follows each node's missing_value_tracks_true)
NO_MISSING_IN_TRAINING = {"gbm-binary", "forest-40-leaves", "forest"}
CLASSIFIERS = {
    "hgb-binary": lambda: HistGradientBoostingClassifier(max_iter=30, random_state=0),
    "gbm-binary": lambda: GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0),
    # 40 leaves a tree: the 64-bit masks
    "forest-40-leaves": lambda: RandomForestClassifier(
        n_estimators=15, max_leaf_nodes=40, random_state=0
    ),
    "xgboost": lambda: xgb.XGBClassifier(n_estimators=20, max_depth=4),
}


def _kernel_and_onnxruntime(kind: str, name: str, model: Any) -> tuple[Any, Any, Any]:
    """``model`` fitted, converted and loaded both ways (the kernel taking it), and test rows."""
    X, y, test = _data(kind)
    if name in NO_MISSING_IN_TRAINING:
        X = np.nan_to_num(X)
    fast, slow = _both(model.fit(X, y), X)
    assert (fast.engine, slow.engine) == ("tree kernel", "onnxruntime")
    return fast, slow, test


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifiers_match_onnxruntime(name: str) -> None:
    fast, slow, test = _kernel_and_onnxruntime("classifier", name, CLASSIFIERS[name]())
    labels, proba = fast.predict_with_proba(test)
    want_labels, want_proba = slow.predict_with_proba(test)
    np.testing.assert_allclose(proba, want_proba, atol=1e-5)
    top = np.sort(want_proba, axis=1)
    clear = top[:, -1] - top[:, -2] > 1e-4
    np.testing.assert_array_equal(labels[clear], want_labels[clear])
    np.testing.assert_array_equal(fast.predict(test)[clear], want_labels[clear])
    np.testing.assert_allclose(fast.predict_proba(test), want_proba, atol=1e-5)


def test_multiclass_softmax_matches_onnxruntime() -> None:
    X, y, test = _data("classifier", n_classes=4)
    fast, slow = _both(HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y), X)
    assert fast.engine == "tree kernel"
    np.testing.assert_allclose(fast.predict_proba(test), slow.predict_proba(test), atol=1e-5)
    assert (fast.predict(test) == slow.predict(test)).mean() > 0.999


def test_text_labels_come_back_as_onnxruntime_gives_them() -> None:
    X, y, test = _data("classifier")
    labels = np.where(y == 1, "churn", "stay")
    fast, slow = _both(HistGradientBoostingClassifier(max_iter=10).fit(X, labels), X)
    assert fast.engine == "tree kernel" and fast.classes == ["churn", "stay"]
    got, want = fast.predict(test), slow.predict(test)
    assert got.dtype == want.dtype == object
    assert (got == want).mean() > 0.999  # rows within rounding of 0.5 may differ


REGRESSORS = {
    "hgb": lambda: HistGradientBoostingRegressor(max_iter=30, random_state=0),
    "forest": lambda: RandomForestRegressor(n_estimators=10, max_leaf_nodes=30, random_state=0),
    "lightgbm": lambda: lgb.LGBMRegressor(n_estimators=20, num_leaves=31, verbose=-1),
}


@pytest.mark.parametrize("name", REGRESSORS)
def test_regressors_match_onnxruntime(name: str) -> None:
    fast, slow, test = _kernel_and_onnxruntime("regressor", name, REGRESSORS[name]())
    got, want = fast.predict(test), slow.predict(test)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


def test_what_the_kernel_does_not_cover_stays_with_onnxruntime() -> None:
    X, y, test = _data("classifier")
    deep = RandomForestClassifier(n_estimators=5, random_state=0).fit(np.nan_to_num(X), y)
    fast, slow = _both(deep, np.nan_to_num(X))  # hundreds of leaves a tree
    assert fast.engine == "onnxruntime"
    np.testing.assert_array_equal(fast.predict_proba(test), slow.predict_proba(test))

    before = _stump_forest("BRANCH_LEQ", 1)  # a node before the trees
    before.graph.node.insert(0, helper.make_node("Abs", ["X"], ["X_abs"]))
    before.graph.node[1].input[0] = "X_abs"
    artifact = OnnxFlavor().dump(before)
    assert OnnxFlavor().load(artifact, KERNEL).engine == "onnxruntime"

    post = _stump_forest("BRANCH_LEQ", 1)
    for attr in post.graph.node[0].attribute:
        if attr.name == "aggregate_function":
            attr.s = b"MAX"
    for model, why in (
        (before, "not one TreeEnsembleClassifier/Regressor node"),
        (post, "aggregate_function MAX"),
    ):
        tables, reason = tree_tables(model)
        assert tables is None and why in reason


def _stump_forest(mode: str, missing_true: int) -> onnx.ModelProto:
    """Two trees on two features: tree 0 splits feature 0 with ``mode`` at 0.5, then feature 1
    at -1; tree 1 is a single leaf. Leaf values 1, 10, 100 and 1000 name the exit."""
    node = helper.make_node(
        "TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml", n_targets=1,
        nodes_treeids=[0, 0, 0, 0, 0, 1], nodes_nodeids=[0, 1, 2, 3, 4, 0],
        nodes_featureids=[0, 1, 0, 0, 0, 0], nodes_values=[0.5, -1.0, 0, 0, 0, 0],
        nodes_modes=[mode, "BRANCH_LEQ", "LEAF", "LEAF", "LEAF", "LEAF"],
        nodes_truenodeids=[1, 2, 0, 0, 0, 0], nodes_falsenodeids=[4, 3, 0, 0, 0, 0],
        nodes_missing_value_tracks_true=[missing_true, 1 - missing_true, 0, 0, 0, 0],
        target_ids=[0, 0, 0, 0], target_nodeids=[2, 3, 4, 0], target_treeids=[0, 0, 0, 1],
        target_weights=[1.0, 10.0, 100.0, 1000.0], aggregate_function="SUM",
        base_values=[0.25],
    )  # fmt: skip
    graph = helper.make_graph(
        [node], "stumps",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])],
    )  # fmt: skip
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    )


@pytest.mark.parametrize("walk", [False, True], ids=["blocks", "walk"])
@pytest.mark.parametrize("missing_true", [0, 1])
@pytest.mark.parametrize(
    "mode", ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]
)
def test_every_comparison_and_missing_rule_matches_onnxruntime(
    mode: str, missing_true: int, walk: bool
) -> None:
    model = _stump_forest(mode, missing_true)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    kernel = tree_kernel(model, session, name="stumps")
    assert kernel is not None
    kernel.block_rows = 10**9 if walk else 1
    edges = np.array([0.5, np.nextafter(np.float32(0.5), 0), np.nextafter(np.float32(0.5), 1)])
    values = np.array([*edges, -1.0, -2.0, 3.0, np.nan], dtype=np.float32)
    grid = np.array([[a, b] for a in values for b in values], dtype=np.float32)
    (got,) = kernel.run(grid)
    want = session.run(None, {"X": grid})[0]
    np.testing.assert_array_equal(got, want)
    assert len(set(got[:, 0].tolist())) >= 3  # the grid reaches several leaves


def test_a_kernel_that_disagrees_with_onnxruntime_is_not_used() -> None:
    model = _stump_forest("BRANCH_LEQ", 1)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    kernel = tree_kernel(model, session, name="stumps")
    assert kernel is not None and disagreement(kernel, session) is None
    kernel.tables.threshold[0] = 0.75  # a slip in the tables: the probes straddle 0.5
    problem = disagreement(kernel, session)
    assert problem is not None and "differs from onnxruntime's values" in problem


def test_probe_rows_straddle_every_threshold() -> None:
    tables, _ = tree_tables(_stump_forest("BRANCH_LEQ", 1))
    assert tables is not None
    rows = probe_rows(tables, n=400)
    column = rows[:, 0]
    assert (column == np.float32(0.5)).any()
    assert (column == np.nextafter(np.float32(0.5), np.float32(1))).any()
    assert (column == np.nextafter(np.float32(0.5), np.float32(0))).any()
    assert np.isnan(rows).any()


def test_walking_the_trees_gives_the_floats_of_scoring_blocks() -> None:
    """Batches under ``block_rows`` (timed per model: a size of ``_SIZES``, at most a block) are
    walked tree by tree, larger ones scored a block at a time: the same floats either way, and a
    kernel whose walk disagrees is not used."""
    X, y, test = _data("classifier", n_classes=3)
    fast, slow = _both(HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y), X)
    kernel = fast._kernel  # type: ignore[attr-defined]
    assert kernel.block_rows in _SIZES and kernel.block_rows <= BLOCK
    for n in (1, 2, 7, 300, 1000):
        np.testing.assert_array_equal(kernel.walked(test[:n]), kernel.blocks(test[:n]))
    kernel.block_rows = 10**9  # every batch walked
    np.testing.assert_allclose(fast.predict_proba(test), slow.predict_proba(test), atol=1e-5)

    model = _stump_forest("BRANCH_LEQ", 1)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    stumps = tree_kernel(model, session, name="stumps")
    assert stumps is not None
    stumps.tables.follow[0] = stumps.tables.follow[0, ::-1].copy()  # the root's branches swapped
    assert disagreement(stumps, session) == (
        "gives other values walking the trees than scoring blocks of rows"
    )
