"""Whether a candidate takes every input its stable route takes (issue 11, A2)."""

from __future__ import annotations

from modelyard.core.types import Signature, TensorSpec
from modelyard.rollout.compatibility import input_differences


def columns(*specs: str, nullable: tuple[str, ...] = ()) -> Signature:
    """``name:dtype`` pairs as a columns signature."""
    pairs = [spec.split(":") for spec in specs]
    return Signature(
        kind="columns",
        inputs=tuple(TensorSpec(name=n, dtype=d, nullable=n in nullable) for n, d in pairs),
    )


def tensor(width: int, dtype: str = "float64") -> Signature:
    return Signature(kind="tensor", inputs=(TensorSpec(name="x", dtype=dtype, shape=(-1, width)),))


def test_the_same_inputs_and_wider_dtypes_are_compatible() -> None:
    stable = columns("age:int64", "plan:string", "score:float32", "vip:bool")
    assert input_differences(stable, stable) == []
    wider = columns("age:float64", "plan:category", "score:float64", "vip:int64")
    assert input_differences(stable, wider) == []
    assert input_differences(tensor(4), tensor(4, "float32")) == []
    assert input_differences(None, stable) == input_differences(stable, None) == []


def test_other_columns_are_named_from_both_sides() -> None:
    stable = columns("sepal_length:float64", "sepal_width:float64", "petal_length:float64")
    evil = columns("sepal_length:float64", "tenure:float64", "plan:float64")
    assert input_differences(stable, evil) == [
        "needs columns stable does not take: tenure, plan",
        "does not take stable's columns sepal_width, petal_length",
    ]


def test_order_dtypes_missing_values_and_kinds() -> None:
    stable = columns("a:float64", "b:float64", "c:string", nullable=("a",))
    assert input_differences(stable, columns("b:float64", "a:float64", "c:string",
                                             nullable=("a",))) == [
        "takes the same columns in another order (2-D inputs are read by position)"
    ]  # fmt: skip
    assert input_differences(stable, columns("a:float64", "b:int64", "c:float64")) == [
        "refuses missing values in a, which stable takes",
        "takes b as int64, not float64",
        "takes c as float64, not string",
    ]
    assert input_differences(tensor(3), tensor(4)) == [
        "takes one tensor of 4 features instead of one tensor of 3 features"
    ]
    assert input_differences(tensor(3), stable) == [
        "takes 3 columns instead of one tensor of 3 features"
    ]
