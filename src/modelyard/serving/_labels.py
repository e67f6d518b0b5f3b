"""The body of ``POST /v1/labels``: ground truth for logged predictions, decoded and checked."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import msgspec

from modelyard.core.refs import NAME_PATTERN
from modelyard.errors import InvalidInputError
from modelyard.serving.codecs import MAX_JSON_DEPTH, deep_json_path

if TYPE_CHECKING:
    import pandas as pd


class Label(msgspec.Struct):
    request_id: str
    label: str | int | float | bool
    time: str | int | float | None = None  # ISO 8601 or epoch seconds; default: now
    row: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] = 0


class LabelsRequest(msgspec.Struct):
    deployment: str
    labels: Annotated[list[Label], msgspec.Meta(min_length=1)]


_labels_decoder = msgspec.json.Decoder(LabelsRequest)
_NAME_RE = re.compile(NAME_PATTERN)
T = TypeVar("T")


def decode_labels(body: bytes) -> LabelsRequest:
    request = decode_body(
        _labels_decoder, body, "labels",
        '{"deployment": NAME, "labels": [{"request_id": ID, "label": VALUE}, ...]}',
    )  # fmt: skip
    check_name(request.deployment, "labels")
    return request


def decode_body(decoder: msgspec.json.Decoder[T], body: bytes, what: str, shape: str) -> T:
    """``body`` decoded by ``decoder``, or one line naming the problem and the expected
    ``shape`` (``what``: labels, outcomes)."""
    try:
        return decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidInputError(f"The {what} body is not valid: {exc}; send {shape}.") from None
    except RecursionError:
        path = deep_json_path(body, MAX_JSON_DEPTH)
        where = f" at {path}" if path else ""
        raise InvalidInputError(
            f"The {what} body nests JSON more than {MAX_JSON_DEPTH} levels deep{where}; send "
            f"{shape}."
        ) from None


def check_name(name: str, what: str) -> None:
    if _NAME_RE.fullmatch(name) is None:
        raise InvalidInputError(
            f"The {what} body's deployment {name[:40]!r} is not a valid name: "
            "use letters, digits, '.', '_' or '-' (starting with a letter or digit, at most "
            "128 characters)."
        )


def keyed_frame(items: Sequence[Any], column: str) -> pd.DataFrame:
    """A body's items (``request_id``, ``row``, ``time`` and ``column``) as the frame that
    labels and outcomes are ingested from (``time`` only when an item gives one)."""
    import pandas as pd

    frame = pd.DataFrame({
        "request_id": [item.request_id for item in items],
        "row": [item.row for item in items],
        column: [getattr(item, column) for item in items],
    })  # fmt: skip
    if any(item.time is not None for item in items):
        frame["time"] = pd.Series([item.time for item in items], dtype=object)
    return frame


def labels_frame(labels: list[Label]) -> pd.DataFrame:
    return keyed_frame(labels, "label")
