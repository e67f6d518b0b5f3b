"""The body of ``POST /v1/outcomes``: a business outcome per logged prediction, decoded and
checked (``serving._labels`` decodes labels the same way)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated

import msgspec

from modelyard.errors import InvalidInputError
from modelyard.serving._labels import check_name, decode_body, keyed_frame

if TYPE_CHECKING:
    import pandas as pd


class Outcome(msgspec.Struct):
    request_id: str
    value: float  # msgspec refuses booleans and strings here; infinities are checked below
    time: str | int | float | None = None  # ISO 8601 or epoch seconds; default: now
    row: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] = 0


class OutcomesRequest(msgspec.Struct):
    deployment: str
    outcomes: Annotated[list[Outcome], msgspec.Meta(min_length=1)]


_decoder = msgspec.json.Decoder(OutcomesRequest)
_SHAPE = '{"deployment": NAME, "outcomes": [{"request_id": ID, "value": NUMBER}, ...]}'


def decode_outcomes(body: bytes) -> OutcomesRequest:
    request = decode_body(_decoder, body, "outcomes", _SHAPE)
    check_name(request.deployment, "outcomes")
    for index, item in enumerate(request.outcomes):
        if not math.isfinite(item.value):
            raise InvalidInputError(
                f"The outcomes body is not valid: value {item.value!r} is not a finite number - "
                f"at `$.outcomes[{index}].value`; send {_SHAPE}."
            )
    return request


def outcomes_frame(outcomes: list[Outcome]) -> pd.DataFrame:
    return keyed_frame(outcomes, "value")
