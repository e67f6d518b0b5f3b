from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelyard.core.signature import column_dtype, infer_signature, output_specs
from modelyard.core.types import Signature, TensorSpec
from modelyard.errors import InvalidInputError


def training_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "f64": [1.0, np.nan, 3.0],
            "f32": np.array([1, 2, 3], dtype=np.float32),
            "i64": [1, 2, 3],
            "i32": np.array([1, 2, 3], dtype=np.int32),
            "u8": np.array([1, 2, 3], dtype=np.uint8),
            "flag": [True, False, True],
            "text": ["a", None, "c"],
            "obj": pd.Series(["a", "b", "c"], dtype=object),
            "cat": pd.Categorical(["lo", "hi", "lo"], categories=["lo", "hi", "mid"]),
            "when": pd.to_datetime(["2024-01-01", "2024-01-02", None]),
            "nullable_int": pd.array([1, None, 3], dtype="Int64"),
            "full_int": pd.array([1, 2, 3], dtype="Int64"),
            "nullable_bool": pd.array([True, None, False], dtype="boolean"),
        }
    )


def test_infer_signature_of_a_frame_names_every_column_in_order() -> None:
    sig = infer_signature(training_frame())

    assert sig.kind == "columns"
    assert sig.outputs == ()
    assert [(s.name, s.dtype, s.nullable) for s in sig.inputs] == [
        ("f64", "float64", True),
        ("f32", "float32", False),
        ("i64", "int64", False),
        ("i32", "int32", False),
        ("u8", "uint8", False),
        ("flag", "bool", False),
        ("text", "string", True),
        ("obj", "string", False),
        ("cat", "category", False),
        ("when", "datetime64[ns]", True),
        ("nullable_int", "int64", True),
        ("full_int", "int64", False),
        ("nullable_bool", "bool", True),
    ]
    assert all(s.shape == (-1,) for s in sig.inputs)
    cat = sig.inputs[8]
    assert cat.categories == ("lo", "hi", "mid")
    assert all(s.categories is None for s in sig.inputs if s.name != "cat")


def test_category_levels_are_python_scalars() -> None:
    frame = pd.DataFrame({"n": pd.Categorical([3, 1]), "b": pd.Categorical([True, False])})

    sig = infer_signature(frame)

    assert sig.inputs[0].categories == (1, 3)
    assert all(type(v) is int for v in sig.inputs[0].categories or ())
    assert sig.inputs[1].categories == (False, True)


def test_object_columns_of_numbers_and_timezones() -> None:
    frame = pd.DataFrame(
        {
            "ints": pd.Series([1, 2, None], dtype=object),
            "floats": pd.Series([1.5, 2, 3], dtype=object),
            "utc": pd.to_datetime(["2024-01-01", "2024-01-02", None], utc=True),
        }
    )

    sig = infer_signature(frame)

    assert [(s.dtype, s.nullable) for s in sig.inputs] == [
        ("int64", True),
        ("float64", False),
        ("datetime64[ns, UTC]", True),
    ]


def test_non_string_column_names_become_strings() -> None:
    sig = infer_signature(pd.DataFrame(np.zeros((2, 3))))

    assert sig.column_names == ["0", "1", "2"]


def test_infer_signature_of_an_array_is_one_tensor() -> None:
    X = np.arange(12, dtype=np.float32).reshape(4, 3)

    sig = infer_signature(X)

    assert sig == Signature(
        kind="tensor",
        inputs=(TensorSpec(name="input", dtype="float32", shape=(-1, 3), nullable=False),),
    )
    assert sig.n_features == 3
    X[1, 2] = np.nan
    assert infer_signature(X).inputs[0].nullable is True


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.zeros(3), r"training array is 1-D with shape \(3,\); pass a 2-D array .*reshape"),
        (np.zeros((2, 2, 2)), r"3-D"),
        (np.array([["a"]]), r"dtype <U1; tensors must be numeric or bool, so pass non-numeric"),
        (np.zeros((3, 0)), r"training array has no columns"),
        ([[1, 2]], r"Cannot infer a signature from list; pass a pandas DataFrame or a 2-D"),
        (pd.DataFrame(index=[0, 1]), r"DataFrame has no columns"),
    ],
)
def test_infer_signature_rejects_unusable_data(data: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        infer_signature(data)


def test_infer_signature_rejects_duplicate_names() -> None:
    frame = pd.DataFrame([[1, 2, 3]], columns=["a", "b", "a"])

    with pytest.raises(InvalidInputError, match=r"duplicate column names \['a'\]; rename them"):
        infer_signature(frame)


def test_infer_signature_rejects_columns_it_cannot_describe() -> None:
    mixed = pd.DataFrame({"m": pd.Series([1, "a"], dtype=object)})
    delta = pd.DataFrame({"d": pd.to_timedelta([1, 2], unit="s")})
    when = pd.DataFrame({"w": pd.Categorical(pd.to_datetime(["2024-01-01"]))})

    with pytest.raises(InvalidInputError, match=r"Column 'm' holds mixed-integer Python objects"):
        infer_signature(mixed)
    with pytest.raises(InvalidInputError, match=r"Column 'd' has dtype timedelta64\[.*convert it"):
        infer_signature(delta)
    with pytest.raises(InvalidInputError, match=r"Column 'w' is a category of datetime64"):
        infer_signature(when)


def test_column_dtype_of_pandas_string_and_arrow_types() -> None:
    assert column_dtype(pd.Series(["a"], dtype="string")) == "string"
    assert column_dtype(pd.Series([1.5], dtype="Float32")) == "float32"
    assert column_dtype(pd.Series([1], dtype="int64[pyarrow]")) == "int64"


def test_output_specs_for_a_classifier() -> None:
    specs = output_specs(np.array(["no", "yes"], dtype=object), np.full((2, 2), 0.5), ["no", "yes"])

    assert specs == (
        TensorSpec(name="predict", dtype="string", shape=(-1,)),
        TensorSpec(name="predict_proba", dtype="float64", shape=(-1, 2)),
    )


def test_output_specs_for_regressors_and_multi_output() -> None:
    assert output_specs(np.zeros(3, dtype=np.float32), None, None) == (
        TensorSpec(name="predict", dtype="float32", shape=(-1,)),
    )
    assert output_specs([[1, 2], [3, 4]], None, None)[0].shape == (-1, 2)
    assert output_specs([1, 0], [[0.2, 0.8], [0.6, 0.4]], None)[1].shape == (-1, 2)


@pytest.mark.parametrize(
    ("predictions", "probabilities", "classes", "message"),
    [
        (np.zeros((2, 2, 2)), None, None, r"Predictions are 3-D .*pass a 1-D array"),
        (np.zeros(2), np.zeros(2), None, r"Probabilities have shape \(2,\); pass predict_proba"),
        (np.zeros(2), np.zeros((2, 3)), [0, 1], r"3 columns but 2 classes were given"),
    ],
)
def test_output_specs_errors(
    predictions: object, probabilities: object, classes: list[int] | None, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        output_specs(predictions, probabilities, classes)
