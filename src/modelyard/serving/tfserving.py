"""TF Serving's REST API as a front door, for clients written for TensorFlow Serving.

``GET /v1/models/{name}[/versions/{v}|/labels/{label}]`` answers the model's version status,
``.../metadata`` its signature (as a ``serving_default`` signature def), and
``POST .../{name}[/versions/{v}|/labels/{label}]:predict`` predicts: ``instances`` (rows: lists
of values or objects keyed by input name) answers ``{"predictions": [...]}``, ``inputs``
(columns: an object of input names, or one tensor) answers ``{"outputs": [...]}``. The
``serving_default`` signature answers the model's ``predict`` output; each other output (a
classifier's ``predict_proba``) is a signature of its own name, chosen by ``signature_name``
as TF Serving clients choose a signature. Errors are
``{"error": "..."}`` with the same statuses as the other doors. A label is the alias a served
model follows (``yard serve NAME@LABEL``); a version is the registry's version number.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidInputError, NotFoundError, VersionNotFoundError
from modelyard.serving import codecs
from modelyard.serving.doors import _Validated

if TYPE_CHECKING:
    from modelyard.serving.models import ModelHub, ServedModel
    from modelyard.serving.validation import Rows

_KEYS = ("instances", "inputs")
_SIGNATURES = ("", "serving_default", "predict")
#: TensorFlow's dtype names for the Open Inference Protocol's datatypes.
_TF_DTYPES = {
    "BOOL": "DT_BOOL", "UINT8": "DT_UINT8", "UINT16": "DT_UINT16", "UINT32": "DT_UINT32",
    "UINT64": "DT_UINT64", "INT8": "DT_INT8", "INT16": "DT_INT16", "INT32": "DT_INT32",
    "INT64": "DT_INT64", "FP16": "DT_HALF", "FP32": "DT_FLOAT", "FP64": "DT_DOUBLE",
    "BYTES": "DT_STRING",
}  # fmt: skip


class TfPath:
    """``/v1/models/NAME[/versions/V|/labels/L][/metadata|:predict]``, parsed."""

    __slots__ = ("action", "label", "name", "version")

    def __init__(self, parts: list[str]) -> None:
        # parts: ["v1", "models", NAME, ...]
        last = parts[-1]
        self.action = "status"
        if ":" in last:
            head, _, verb = last.rpartition(":")
            if verb != "predict":
                raise NotFoundError(
                    f"No TF Serving method {verb!r}; modelyard answers :predict "
                    "(classify and regress are not served)."
                )
            parts = [*parts[:-1], head]
            self.action = "predict"
        elif last == "metadata" and len(parts) in (4, 6):
            parts = parts[:-1]
            self.action = "metadata"
        self.name = parts[2]
        self.version: str | None = None
        self.label: str | None = None
        rest = parts[3:]
        if len(rest) == 2 and rest[0] == "versions":
            self.version = rest[1]
        elif len(rest) == 2 and rest[0] == "labels":
            self.label = rest[1]
        elif rest or not self.name:
            raise NotFoundError(
                f"No route /{'/'.join(parts)}; TF Serving paths are /v1/models/NAME"
                "[/versions/N|/labels/LABEL][/metadata|:predict]."
            )

    def resolve(self, hub: ModelHub) -> str | None:
        """The version this path asks for (``None``: whatever is served), labels resolved."""
        if self.label is None:
            return self.version
        slot = hub.slots.get(self.name)
        if slot is None:
            hub.get(self.name)  # not served: names what is
            raise VersionNotFoundError(
                f"Deployment {self.name!r} has no labels; drop '/labels/{self.label}'."
            )
        if slot.ref.alias != self.label:
            following = f"label {slot.ref.alias!r}" if slot.ref.alias else f"version {slot.ref}"
            raise VersionNotFoundError(
                f"Model {self.name!r} is not served under label {self.label!r} (this server "
                f"follows {following}); serve it as {self.name}@{self.label}."
            )
        return None


def status_body(served: ServedModel) -> bytes:
    """``GetModelStatus``: the one version this server serves, available."""
    return codecs.encode_json({
        "model_version_status": [{
            "version": served.version, "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }]
    })  # fmt: skip


def metadata_body(name: str, served: ServedModel) -> bytes:
    """``GetModelMetadata``: the signature as TF Serving's ``serving_default`` signature."""
    meta = served.metadata()

    def tensors(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            item["name"]: {
                "dtype": _TF_DTYPES.get(item["datatype"], "DT_STRING"),
                "tensor_shape": {
                    "dim": [{"size": str(d), "name": ""} for d in item["shape"]],
                    "unknown_rank": False,
                },
                "name": item["name"],
            }
            for item in items
        }

    inputs = tensors(meta["inputs"])
    outputs = {item["name"]: item for item in meta["outputs"]}
    signatures = {
        "serving_default" if output == "predict" else output: {
            "inputs": inputs, "outputs": tensors([outputs[output]]),
            "method_name": "tensorflow/serving/predict",
        }
        for output in _signature_outputs(served)
    }  # fmt: skip
    return codecs.encode_json({
        "model_spec": {"name": name, "signature_name": "", "version": served.version},
        "metadata": {"signature_def": {"signature_def": signatures}},
    })  # fmt: skip


def _signature_outputs(served: ServedModel) -> list[str]:
    """The outputs that are signatures: ``predict`` (``serving_default``) first."""
    return ["predict", *(o for o in served.outputs if o != "predict")]


class TfServingDoor(_Validated):
    """A TF Serving ``:predict`` request: ``instances`` (rows) or ``inputs`` (columns)."""

    __slots__ = ("field_name", "payload", "signature")
    route = "tf_predict"

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.field_name, self.payload, self.signature = decode(body)

    def _validate(self, served: ServedModel) -> Rows:
        payload = self.payload
        validator = served.validator
        if isinstance(payload, dict) and len(payload) == 1:
            # one named tensor of rows ({"x": [[...], ...]}): the whole table
            (only,) = payload.values()
            if isinstance(only, list) and only and isinstance(only[0], list):
                return validator.from_rows(only, field=self.field_name)
        if isinstance(payload, dict) and not payload:
            raise InvalidInputError(f"'{self.field_name}' is empty; send the input columns.")
        return validator.from_rows(payload, field=self.field_name)

    def outputs(self, served: ServedModel) -> tuple[str, ...]:
        return (self._output(served),)

    def _output(self, served: ServedModel) -> str:
        signature = self.signature
        if signature in _SIGNATURES:
            return "predict"
        if signature in served.outputs:
            return str(signature)
        names = ", ".join(
            "serving_default" if o == "predict" else o for o in _signature_outputs(served)
        )
        raise InvalidInputError(
            f"'signature_name' is {codecs.shown(signature)}; model {served.name!r} has the "
            f"signatures {names} (or leave it out for serving_default)."
        )

    def field(self, name: str, served: ServedModel) -> str | None:
        payload = self.payload
        value: Any = None
        if isinstance(payload, dict):
            value = payload.get(name)
            value = value[0] if isinstance(value, list) and value else value
        elif isinstance(payload, list) and payload and isinstance(payload[0], dict):
            value = payload[0].get(name)
        return None if value is None or isinstance(value, (list, dict)) else str(value)

    def encode(self, name: str, served: ServedModel, outputs: dict[str, Any]) -> bytes:
        key = "predictions" if self.field_name == "instances" else "outputs"
        return codecs.encode_predictions(outputs[self._output(served)], key=key)


def decode(body: bytes) -> tuple[str, Any, Any]:
    """``(field, payload, signature)`` of a ``:predict`` body: exactly one of ``instances``
    and ``inputs``, and an optional ``signature_name`` (checked against the model's outputs
    once the model is known)."""
    parsed = codecs.parse_json(body)
    if not isinstance(parsed, dict):
        raise InvalidInputError(
            "The request body must be a JSON object with 'instances' or 'inputs' (TF Serving's "
            "predict format)."
        )
    field = codecs.one_format(parsed, _KEYS, also=("signature_name",))
    signature = parsed.get("signature_name", "")
    if field == "instances" and not isinstance(parsed[field], list):
        raise InvalidInputError(
            f"'instances' is {codecs.shown(parsed[field])}; send a list of rows (or send "
            "columns as 'inputs')."
        )
    return field, _unwrap_b64(parsed[field], field), signature


def _unwrap_b64(value: Any, field: str, depth: int = 0) -> Any:
    """TF Serving's binary values, ``{"b64": "..."}``, as the text they encode, where a value
    can be: a row's or a column's values, or one level of list within them."""
    if isinstance(value, dict):
        if len(value) == 1 and "b64" in value:
            return _b64_text(value["b64"], field)
        if depth < 3:
            return {k: _unwrap_b64(v, field, depth + 1) for k, v in value.items()}
    elif isinstance(value, list) and depth < 3:
        if not any(isinstance(v, (dict, list)) for v in value):
            return value  # plain values: nothing to unwrap (the common, large case)
        return [_unwrap_b64(v, field, depth + 1) for v in value]
    return value


def _b64_text(encoded: Any, field: str) -> str:
    import base64
    import binascii

    try:
        if not isinstance(encoded, str):
            raise TypeError
        raw = base64.b64decode(encoded, validate=True)
    except (TypeError, ValueError, binascii.Error):
        raise InvalidInputError(
            f"'{field}' has a b64 value {codecs.shown(encoded)} that is not base64; send "
            '{"b64": "<base64 text>"}.'
        ) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"'{field}' has a b64 value whose bytes are not valid UTF-8 text (byte {exc.start}); "
            "send base64 of UTF-8 text."
        ) from None
