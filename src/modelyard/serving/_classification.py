"""Triton's classification extension, over REST and gRPC.

A request asks an output's top classes with the output's ``parameters.classification: k`` (REST)
or ``InferRequestedOutputTensor.parameters["classification"]`` as an ``int64_param`` (gRPC): what
``tritonclient``'s ``InferRequestedOutput(name, class_count=k)`` sends. The output is then
answered as a BYTES tensor of shape [rows, min(k, classes)]: each row's k highest scores, highest
first (equal scores by class index), each element ``"<score>:<index>:<label>"`` as Triton writes
it (the score with six decimals, C's ``%f``; the index of the score's column; the label, the
model's class, left out with its colon when the model has none). Only per-class scores have top
classes: a classifier's ``predict_proba``. More classes asked than the model has give them all,
as Triton does. The prediction log keeps the scores, not the text.

The spec forbids no ``binary_data`` with it (``tritonclient.http`` asks both by default): the
BYTES tensor is answered raw or in JSON as any output is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from modelyard.errors import InvalidInputError
from modelyard.serving.codecs import json_shown

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from modelyard.serving.codecs import Array, RequestOutput
    from modelyard.serving.models import ServedModel

#: The class count asked of each output, by name.
Counts = dict[str, int]

#: The output that holds per-class scores, one column per class in the model's class order.
SCORES = "predict_proba"
_PARAMETER = "classification"
_EXTENSION = "(Triton's classification extension)"


def rest_counts(outputs: Iterable[RequestOutput]) -> Counts | None:
    """The class counts a REST request asks, or ``None`` when it asks none; a count that is not
    a whole number >= 1 is refused, naming the output."""
    counts: Counts | None = None
    for output in outputs:
        parameters = output.parameters
        if parameters is None or _PARAMETER not in parameters:
            continue
        value = parameters[_PARAMETER]
        if type(value) is not int or value < 1:
            raise InvalidInputError(
                f"Output {output.name!r} has classification {json_shown(value)}; it must be a "
                f"whole number of classes >= 1 {_EXTENSION}."
            )
        counts = counts or {}
        counts[output.name] = value
    return counts


def grpc_counts(outputs: Iterable[Any]) -> Counts | None:
    """The class counts of a ``ModelInferRequest``'s requested outputs (each an ``int64_param``
    >= 1, as Triton takes them), or ``None`` when it asks none."""
    counts: Counts | None = None
    for output in outputs:
        parameters = output.parameters
        if _PARAMETER not in parameters:
            continue
        parameter = parameters[_PARAMETER]
        which = parameter.WhichOneof("parameter_choice")
        if which != "int64_param":
            raise InvalidInputError(
                f"Output {output.name!r} has classification as {which or 'no value'}; send it "
                f"as an int64_param, a whole number of classes >= 1 {_EXTENSION}."
            )
        if parameter.int64_param < 1:
            raise InvalidInputError(
                f"Output {output.name!r} has classification {parameter.int64_param}; it must be "
                f"a whole number of classes >= 1 {_EXTENSION}."
            )
        counts = counts or {}
        counts[output.name] = parameter.int64_param
    return counts


def check(served: ServedModel, counts: Counts) -> None:
    """Refuse classification of an output that holds no per-class scores (a label output, a
    regressor's values), before the model runs."""
    for name in counts:
        if name == SCORES and SCORES in served.outputs:
            continue
        if SCORES in served.outputs:
            hint = f"ask it of {SCORES}, which holds one score per class"
        else:
            hint = "the model gives no per-class scores (no predict_proba)"
        raise InvalidInputError(
            f"Output {name!r} of model {served.name!r} holds no per-class scores, so it has no "
            f"top classes; {hint} {_EXTENSION}."
        )


def labels_of(classes: Sequence[Any] | None) -> tuple[str, ...] | None:
    """The label of each score column: the model's classes as text."""
    return None if classes is None else tuple(str(c) for c in classes)


def top_classes(
    outputs: dict[str, Array], counts: Counts, labels: tuple[str, ...] | None
) -> dict[str, Array]:
    """``outputs`` with each output in ``counts`` replaced by its top classes."""
    answered = dict(outputs)
    for name, count in counts.items():
        scores = outputs.get(name)
        if scores is not None:
            answered[name] = classified(scores, count, labels)
    return answered


def classified(scores: Array, count: int, labels: tuple[str, ...] | None) -> Array:
    """The ``count`` highest scores of each row as ``"score:index[:label]"`` (an object array
    of shape [rows, min(count, columns)]), highest first; equal scores by column index."""
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 2:
        values = values.reshape(len(values), -1 if values.size else 1)
    rows, width = values.shape
    count = min(count, width)
    order = np.argsort(-values, axis=1, kind="stable")[:, :count]
    top = np.take_along_axis(values, order, axis=1)
    if labels is not None and len(labels) == width:
        suffix = [f":{label}" for label in labels]
    else:
        suffix = [""] * width
    cells = [
        [f"{value:f}:{index}{suffix[index]}" for value, index in zip(row, where, strict=True)]
        for row, where in zip(top.tolist(), order.tolist(), strict=True)
    ]
    out = np.empty((rows, count), dtype=object)
    if rows:
        out[:] = cells
    return out
