from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelyard.errors import InvalidInputError, ModelLoadError, UnsupportedFormatError
from modelyard.flavors import (
    Artifact,
    LoadOptions,
    OnnxFlavor,
    flavor_for_file,
    flavor_for_object,
)


@pytest.fixture(scope="module")
def flavor() -> OnnxFlavor:
    return OnnxFlavor()


def _convert(model, initial_types, **kwargs) -> onnx.ModelProto:
    # skl2onnx passes booleans where protobuf wants ints; protobuf 6 warns from onnx.helper.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="onnx")
        return convert_sklearn(model, initial_types=initial_types, **kwargs)


@pytest.fixture(scope="module")
def forest_zipmap(iris_named):
    """A classifier with string labels whose probabilities come as a ZipMap (list of dicts)."""
    model = RandomForestClassifier(n_estimators=10, random_state=0)
    model.fit(iris_named.X_train, iris_named.y_train)
    return model, _convert(model, [("X", FloatTensorType([None, 4]))])


def test_zipmap_classifier_gives_a_probability_matrix_in_class_order(
    flavor, forest_zipmap, iris_named, round_trip
):
    model, proto = forest_zipmap
    assert proto.graph.output[1].type.WhichOneof("value") == "sequence_type"

    artifact = flavor.dump(proto)
    predictor = round_trip(flavor, proto)

    X = iris_named.X_test
    assert artifact.meta["layout"] == "tensor"
    assert artifact.meta["inputs"] == [{"name": "X", "type": "tensor(float)", "shape": [None, 4]}]
    assert [o["name"] for o in artifact.meta["outputs"]] == ["output_label", "output_probability"]
    assert artifact.meta["classes"] == ["setosa", "versicolor", "virginica"]
    assert predictor.classes == ["setosa", "versicolor", "virginica"]
    proba = predictor.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba, model.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(predictor.predict(X), model.predict(X))
    labels, both = predictor.predict_with_proba(X)  # one session run for the two outputs
    np.testing.assert_array_equal(labels, predictor.predict(X))
    np.testing.assert_array_equal(both, proba)


def test_onnx_object_is_detected(forest_zipmap):
    assert isinstance(flavor_for_object(forest_zipmap[1], trust_pickle=False), OnnxFlavor)


def test_one_input_per_column_layout(flavor, mixed, round_trip):
    preprocess = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "income"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        ]
    )
    model = make_pipeline(preprocess, LogisticRegression()).fit(mixed.X_train, mixed.y_train)
    types = [
        ("age", FloatTensorType([None, 1])),
        ("income", FloatTensorType([None, 1])),
        ("plan", StringTensorType([None, 1])),
    ]
    proto = _convert(model, types, options={"zipmap": False})

    artifact = flavor.dump(proto)
    predictor = round_trip(flavor, proto)

    assert artifact.meta["layout"] == "columns"
    assert [(i["name"], i["type"]) for i in artifact.meta["inputs"]] == [
        ("age", "tensor(float)"),
        ("income", "tensor(float)"),
        ("plan", "tensor(string)"),
    ]
    X = mixed.X_test
    expected = model.predict_proba(X)
    np.testing.assert_allclose(predictor.predict_proba(X), expected, atol=1e-5)
    # Columns are matched by name, whatever their order in the frame.
    reordered = X[["plan", "income", "age"]]
    np.testing.assert_allclose(predictor.predict_proba(reordered), expected, atol=1e-5)
    with pytest.raises(InvalidInputError, match=r"lacks \['plan'\]"):
        predictor.predict(X[["age", "income"]])


def test_regressor_has_one_output_and_no_proba(flavor, diabetes, round_trip):
    model = HistGradientBoostingRegressor(max_iter=10).fit(diabetes.X_train, diabetes.y_train)
    proto = _convert(model, [("X", FloatTensorType([None, 10]))])

    predictor = round_trip(flavor, proto)

    assert predictor.classes is None
    assert not predictor.has_proba
    got = predictor.predict(diabetes.X_test)
    assert got.shape == (len(diabetes.X_test),)
    np.testing.assert_allclose(got, model.predict(diabetes.X_test), rtol=1e-4)
    with pytest.raises(InvalidInputError, match="ONNX model has no predict_proba"):
        predictor.predict_proba(diabetes.X_test)


def test_hand_made_classifier_without_labels_gets_class_indexes(flavor, round_trip):
    # probabilities = softmax(X @ W), label = argmax: no classlabels attribute anywhere.
    weights = np.array([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]], dtype=np.float32)
    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node("MatMul", ["X", "W"], ["scores"]),
            onnx.helper.make_node("Softmax", ["scores"], ["probabilities"], axis=1),
            onnx.helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
        ],
        "hand_made",
        [onnx.helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [None, 2])],
        [
            onnx.helper.make_tensor_value_info("label", onnx.TensorProto.INT64, [None]),
            onnx.helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, [None, 3]),
        ],
        initializer=[onnx.numpy_helper.from_array(weights, "W")],
    )
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    X = np.array([[3.0, 0.0], [0.0, 3.0], [-3.0, 0.0]])

    predictor = round_trip(flavor, proto)
    bare = flavor.load(Artifact(files=flavor.dump(proto).files, meta={}), LoadOptions())

    for loaded in (predictor, bare):
        assert loaded.classes == [0, 1, 2]
        np.testing.assert_array_equal(loaded.predict(X), [0, 1, 2])
        proba = loaded.predict_proba(X)
        assert proba.shape == (3, 3)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


def test_wrong_width_is_an_input_error(flavor, forest_zipmap, round_trip):
    predictor = round_trip(flavor, forest_zipmap[1])

    with pytest.raises(InvalidInputError, match="ONNX model rejected the input"):
        predictor.predict(np.zeros((2, 3)))
    with pytest.raises(InvalidInputError, match="2-D input 'X'"):
        predictor.predict(np.zeros(4))


def test_thread_options_reach_the_session(flavor, forest_zipmap):
    options = LoadOptions(onnx_intra_op_threads=2, onnx_inter_op_threads=1)
    predictor = flavor.load(flavor.dump(forest_zipmap[1]), options)

    session_options = predictor._session.get_session_options()
    assert session_options.intra_op_num_threads == 2
    assert session_options.inter_op_num_threads == 1


def test_read_file(flavor, forest_zipmap, iris_named, tmp_path):
    model, proto = forest_zipmap
    path = tmp_path / "forest.onnx"
    path.write_bytes(proto.SerializeToString())

    picked = flavor_for_file(path, trust_pickle=False)
    artifact = picked.read_file(path, LoadOptions())

    assert isinstance(picked, OnnxFlavor)
    assert artifact.files == {"model.onnx": path.read_bytes()}
    assert artifact.meta["classes"] == ["setosa", "versicolor", "virginica"]
    predictor = picked.load(artifact, LoadOptions())
    np.testing.assert_array_equal(
        predictor.predict(iris_named.X_test), model.predict(iris_named.X_test)
    )


@pytest.mark.parametrize("content", [b"", b"\xff\xfe not protobuf at all"])
def test_file_that_is_not_onnx_is_refused(content, flavor, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)

    with pytest.raises(UnsupportedFormatError, match=r"model\.onnx' is not an ONNX model"):
        flavor.read_file(path, LoadOptions())


def test_load_of_corrupted_bytes_is_a_load_error(flavor):
    artifact = Artifact(files={"model.onnx": b"\x08\x07garbage"}, meta={})

    with pytest.raises(ModelLoadError, match=r"onnxruntime cannot load model\.onnx"):
        flavor.load(artifact, LoadOptions())
