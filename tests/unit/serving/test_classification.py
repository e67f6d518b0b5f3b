"""Triton's classification extension: the top classes of per-class scores, as Triton writes
them, and the class counts a request may ask."""

from __future__ import annotations

import numpy as np
import pytest

from modelyard.errors import InvalidInputError
from modelyard.serving import protobuf
from modelyard.serving._classification import classified, grpc_counts, rest_counts
from modelyard.serving.codecs import RequestOutput


def test_top_classes_are_highest_first_with_index_and_label() -> None:
    scores = np.array([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]])
    out = classified(scores, 2, ("ant", "bee", "cow"))
    assert out.dtype == object and out.shape == (2, 2)
    assert out.tolist() == [
        ["0.600000:1:bee", "0.300000:2:cow"],
        ["0.500000:0:ant", "0.250000:1:bee"],  # equal scores: the lower index first
    ]


def test_without_labels_an_element_is_score_and_index() -> None:
    out = classified(np.array([[1.0, 5.0, 10.0, 4.0]], dtype=np.float32), 2, None)
    assert out.tolist() == [["10.000000:2", "5.000000:1"]]  # the spec's example


def test_a_count_past_the_columns_gives_every_column() -> None:
    out = classified(np.array([[0.2, 0.8]]), 5, ("no", "yes"))
    assert out.tolist() == [["0.800000:1:yes", "0.200000:0:no"]]


def test_no_rows_give_an_empty_tensor_of_the_count() -> None:
    out = classified(np.zeros((0, 3)), 2, None)
    assert out.shape == (0, 2)


@pytest.mark.parametrize("value", [0, -1, 1.5, "3", True, None, [2]])
def test_a_rest_count_must_be_a_whole_number_of_one_or_more(value: object) -> None:
    outputs = [RequestOutput(name="predict_proba", parameters={"classification": value})]
    with pytest.raises(InvalidInputError, match="Output 'predict_proba' has classification"):
        rest_counts(outputs)


def test_rest_counts_name_only_the_outputs_that_ask() -> None:
    outputs = [
        RequestOutput(name="predict"),
        RequestOutput(name="predict_proba", parameters={"classification": 3, "binary_data": True}),
    ]
    assert rest_counts(outputs) == {"predict_proba": 3}
    assert rest_counts([RequestOutput(name="predict", parameters={"binary_data": True})]) is None


def test_a_grpc_count_must_be_a_positive_int64_param() -> None:
    request = protobuf.ModelInferRequest()
    asked = request.outputs.add(name="predict_proba")
    asked.parameters["classification"].int64_param = 2
    request.outputs.add(name="predict")
    assert grpc_counts(request.outputs) == {"predict_proba": 2}
    asked.parameters["classification"].int64_param = 0
    with pytest.raises(InvalidInputError, match="has classification 0; it must be"):
        grpc_counts(request.outputs)
    asked.parameters["classification"].double_param = 2.0
    with pytest.raises(InvalidInputError, match="as double_param; send it as an int64_param"):
        grpc_counts(request.outputs)
