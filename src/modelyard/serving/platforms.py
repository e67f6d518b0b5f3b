"""The managed endpoints' container contracts: SageMaker and Vertex AI.

SageMaker starts the container with ``serve`` and calls ``GET /ping`` and ``POST /invocations``
on port 8080 (both answered by the server already; a CSV body may come without a header, see
``doors._csv_header``). Vertex AI names the port, the health route and the predict route in
``AIP_HTTP_PORT``, ``AIP_HEALTH_ROUTE`` and ``AIP_PREDICT_ROUTE`` (the CLI turns them into
``ServingSettings.port``, ``health_route`` and ``predict_route``) and sends
``{"instances": [...], "parameters": {...}}``, answered ``{"predictions": [...]}``.
"""

from __future__ import annotations

from typing import Any

from modelyard.errors import InvalidInputError
from modelyard.serving import codecs
from modelyard.serving.doors import _Validated
from modelyard.serving.tfserving import TfServingDoor, _unwrap_b64


class VertexDoor(TfServingDoor):
    """A Vertex AI prediction request: ``instances`` (rows: lists of values or objects keyed by
    input name, TF Serving's ``{"b64": ...}`` values included) and optional ``parameters``.

    ``parameters`` must be an object; like MLflow's ``params`` on ``/invocations``, it is checked
    and not passed on (the served flavors take no prediction parameters)."""

    __slots__ = ()
    route = "vertex_predict"

    def __init__(self, body: bytes) -> None:
        _Validated.__init__(self)  # not TF Serving's decoding: Vertex AI's
        self.field_name, self.payload, self.signature = "instances", decode(body), ""


def decode(body: bytes) -> Any:
    """The ``instances`` of a Vertex AI prediction request."""
    parsed = codecs.parse_json(body)
    if not isinstance(parsed, dict):
        raise InvalidInputError(
            "The request body must be a JSON object with 'instances' (Vertex AI's prediction "
            "format)."
        )
    codecs.one_format(parsed, ("instances",), also=("parameters",))
    parameters = parsed.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidInputError(
            f"'parameters' is {codecs.shown(parameters)}; send a JSON object (or leave it out)."
        )
    instances = parsed["instances"]
    if not isinstance(instances, list):
        raise InvalidInputError(
            f"'instances' is {codecs.shown(instances)}; send a list of rows (lists of values "
            "or objects keyed by input name)."
        )
    return _unwrap_b64(instances, "instances")
