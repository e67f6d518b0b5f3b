"""Front doors: a request decoded by one protocol, ready to be validated for any model.

Each protocol's body becomes a ``Door`` (``V2Door`` for the Open Inference Protocol, ``MlflowDoor``
for MLflow's ``/invocations``); the HTTP edge hands every door to one prediction path, so that a
deployment's route choice, statistics, retries on stable and the prediction log are the same for
all protocols. A door validates its request for a model once and keeps the rows (the router may
ask for stable's rows again after the candidate's).
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any, Protocol

from modelyard.errors import InvalidInputError, ModelyardError, NotFoundError
from modelyard.serving import _classification, codecs

if TYPE_CHECKING:
    from modelyard.serving.models import ServedModel
    from modelyard.serving.protobuf import RawTable
    from modelyard.serving.validation import Rows


class UnsupportedMediaError(InvalidInputError):
    kind = "unsupported_media"


class Door(Protocol):
    """A request decoded by one front door, ready for any model (protocol-neutral)."""

    #: The route label of the metrics and of a model's prediction log (``v2_infer``...).
    route: str

    def rows(self, served: ServedModel) -> Rows:
        """The request validated for ``served`` (``InvalidInputError`` when it does not fit)."""
        ...

    def outputs(self, served: ServedModel) -> tuple[str, ...]:
        """The outputs the client asked for."""
        ...

    def field(self, name: str, served: ServedModel) -> str | None:
        """The first value of input ``name`` as text (an A/B sticky key), or ``None``."""
        ...

    def encode(self, name: str, served: ServedModel, outputs: dict[str, Any]) -> bytes:
        """The answer's body."""
        ...


class _Validated:
    """Keeps the rows validated for the last model asked, so that a model validates a request
    once (the router may ask for stable's rows again after the candidate's)."""

    __slots__ = ("_for", "_rows")

    def __init__(self) -> None:
        self._for: ServedModel | None = None
        self._rows: Rows | None = None

    def rows(self, served: ServedModel) -> Rows:
        if self._for is served and self._rows is not None:
            return self._rows
        rows = self._validate(served)
        self._for, self._rows = served, rows
        return rows

    def _validate(self, served: ServedModel) -> Rows:
        raise NotImplementedError


class V2Door(_Validated):
    """An Open Inference Protocol v2 request (JSON, or Triton's binary tensors)."""

    __slots__ = ("arrays", "binary", "classify", "json_length", "request")
    route = "v2_infer"

    def __init__(self, request: codecs.InferenceRequest, arrays: Any) -> None:
        super().__init__()
        self.request = request
        self.arrays = arrays
        #: The outputs asked in Triton's binary form, or ``None`` (all JSON: the usual case);
        #: the class count of each output asked as top classes (Triton's classification), or
        #: ``None``. A bad ``binary_data`` or ``classification`` is refused here, before the
        #: model runs.
        self.binary: codecs.BinaryOutputs | None = None
        self.classify: _classification.Counts | None = None
        if request.parameters is not None or request.outputs is not None:
            self.binary = codecs.binary_outputs(request)
            if request.outputs:
                self.classify = _classification.rest_counts(request.outputs)
        #: The last answer's ``Inference-Header-Content-Length`` (its JSON part's length), or
        #: ``None`` when it is JSON alone.
        self.json_length: int | None = None

    def _validate(self, served: ServedModel) -> Rows:
        return served.validator.from_request(self.request.inputs, self.arrays)

    def outputs(self, served: ServedModel) -> tuple[str, ...]:
        names = _outputs(served, self.request.outputs)
        if self.classify is not None:
            _classification.check(served, self.classify)
        return names

    def field(self, name: str, served: ServedModel) -> str | None:
        for item in self.request.inputs:
            if item.name == name:
                data = item.data
                while isinstance(data, list) and data:
                    data = data[0]
                return None if data is None or isinstance(data, list) else str(data)
        return None

    def encode(self, name: str, served: ServedModel, outputs: dict[str, Any]) -> bytes:
        if self.classify is not None:
            outputs = _classification.top_classes(outputs, self.classify, served.class_labels)
        if self.binary is not None:
            body, self.json_length = codecs.encode_v2_binary(
                model_name=name, model_version=served.version, request_id=self.request.id,
                outputs=outputs, binary=self.binary,
            )  # fmt: skip
            return body
        return codecs.encode_v2(
            model_name=name, model_version=served.version, request_id=self.request.id,
            outputs=outputs,
        )  # fmt: skip


class GrpcDoor(_Validated):
    """An Open Inference Protocol ``ModelInferRequest`` over gRPC (raw or typed tensors); its
    tensors are decoded when a model first asks for its rows. A call whose metadata matched a
    kept ``RawTable`` comes with the table's request (everything but the tensors), its body and
    its tensors as a block; the body is parsed whole only if a model wants it some other way."""

    __slots__ = (
        "_block", "_body", "_decoded", "_table", "classify", "columnar", "raw", "request",
    )  # fmt: skip
    route = "v2_infer"

    def __init__(
        self,
        request: Any,
        body: bytes | None = None,
        table: RawTable | None = None,
        block: Any = None,
    ) -> None:
        super().__init__()
        self.request = request
        self.raw = table is not None or bool(request.raw_input_contents)
        self._decoded: tuple[list[codecs.RequestInput], list[Any]] | None = None
        self._body, self._table, self._block = body, table, block
        #: Whether a model took the parsed request's tensors as one column block (so that its
        #: metadata may be kept as a ``RawTable``).
        self.columnar = False
        #: The class count of each output asked as top classes (read with the outputs).
        self.classify: _classification.Counts | None = None

    def decoded(self) -> tuple[list[codecs.RequestInput], list[Any]]:
        """The inputs and their arrays (``InvalidInputError`` for a malformed request)."""
        if self._decoded is None:
            from modelyard.serving import protobuf

            if self._body is not None:  # the whole request, tensors included
                self.request = protobuf.ModelInferRequest.FromString(self._body)
                self._body = self._table = self._block = None
            inputs, arrays, _ = protobuf.decode_inputs(self.request)
            self._decoded = inputs, arrays
        return self._decoded

    def _validate(self, served: ServedModel) -> Rows:
        if self._table is not None:
            table = self._table
            rows = served.validator.from_column_block(table.names, table.datatype, self._block)
            if rows is not None:
                return rows
        elif self.raw and self._decoded is None:
            from modelyard.serving import protobuf

            rows = protobuf.column_block(self.request, served.validator)
            if rows is not None:
                self.columnar = True
                return rows
        inputs, arrays = self.decoded()
        return served.validator.from_request(inputs, arrays)

    def outputs(self, served: ServedModel) -> tuple[str, ...]:
        requested = self.request.outputs
        names = _outputs(served, [codecs.RequestOutput(name=o.name) for o in requested])
        if requested:
            self.classify = _classification.grpc_counts(requested)
            if self.classify is not None:
                _classification.check(served, self.classify)
        return names

    def field(self, name: str, served: ServedModel) -> str | None:
        try:
            inputs, arrays = self.decoded()
        except ModelyardError:
            return None
        for item, array in zip(inputs, arrays, strict=True):
            if item.name == name and array is not None and array.size:
                return _key_text(array.ravel()[0])
        return None

    def encode(self, name: str, served: ServedModel, outputs: dict[str, Any]) -> bytes:
        from modelyard.serving import protobuf

        if self.classify is not None:
            outputs = _classification.top_classes(outputs, self.classify, served.class_labels)
        return protobuf.encode_response(
            name, served.version, self.request.id, outputs, raw=self.raw
        )


class MlflowDoor(_Validated):
    """An MLflow ``/invocations`` request (JSON formats or CSV), decoded for each model."""

    __slots__ = ("body", "content_type")
    route = "invocations"

    def __init__(self, content_type: str, body: bytes) -> None:
        super().__init__()
        self.content_type = content_type
        self.body = body

    def _validate(self, served: ServedModel) -> Rows:
        return _mlflow_rows(served, self.content_type, self.body)

    def outputs(self, served: ServedModel) -> tuple[str, ...]:
        return ("predict",)

    def field(self, name: str, served: ServedModel) -> str | None:
        if name not in served.input_names:
            return None
        try:
            rows = self.rows(served)
        except ModelyardError:
            return None
        if rows.n == 0:
            return None
        i = served.input_names.index(name)
        value = rows.matrix[0, i] if rows.matrix is not None else rows.columns[i][0]  # type: ignore[index]
        return _key_text(value)

    def encode(self, name: str, served: ServedModel, outputs: dict[str, Any]) -> bytes:
        return codecs.encode_predictions(outputs["predict"])


def _key_text(value: Any) -> str | None:
    """A validated value as an A/B key, written as the JSON value would be (``7``, not
    ``7.0``, for a whole number held as a float)."""
    item = value.item() if hasattr(value, "item") else value
    if item is None or (isinstance(item, float) and math.isnan(item)):
        return None
    if isinstance(item, float) and item.is_integer():
        return str(int(item))
    return str(item)


def _csv_header(body: bytes, names: list[str], *, tensor: bool) -> dict[str, Any]:
    """How to read a CSV body: with its header, or as rows in the signature's column order.

    MLflow's clients send a header; SageMaker's (and most batch tools) send rows only. A first
    line that names an input of the model is a header (for a one-tensor model: a line that is
    not all numbers); so is pandas' header for unnamed columns (``0,1,...,n-1``, what
    ``pd.DataFrame(X).to_csv(index=False)`` writes) when rows follow it and n is at least 3
    (a row ``0,1`` of two binary features is as likely as a header). Any other line is a row,
    which must then have one value per input."""
    import csv

    first, _, rest = body.partition(b"\n")
    first_line = first.decode("utf-8", "replace").rstrip("\r")
    try:
        fields = [f.strip() for f in next(csv.reader([first_line]), [])]
    except csv.Error as exc:  # a stray carriage return, a NUL...
        raise InvalidInputError(f"The CSV body's first line cannot be read: {exc}.") from None
    if len(fields) >= 3 and rest.strip() and fields == [str(i) for i in range(len(fields))]:
        return {}  # pandas' own column names: the rows follow
    if tensor:
        return {"header": None} if all(_is_number(f) for f in fields) else {}
    if not set(fields).isdisjoint(names):
        return {}
    if len(fields) != len(names):
        raise InvalidInputError(
            f"The CSV body's first line is neither a header naming the inputs nor a row of "
            f"{len(names)} values (one per input: {', '.join(names[:5])}"
            f"{', ...' if len(names) > 5 else ''}); it has {len(fields)}."
        )
    return {"header": None, "names": names}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text == ""
    return True


def _outputs(served: ServedModel, requested: list[codecs.RequestOutput] | None) -> tuple[str, ...]:
    if not requested:
        return ("predict",)
    names = tuple(dict.fromkeys(o.name for o in requested))
    unknown = [n for n in names if n not in served.outputs]
    if unknown:
        raise NotFoundError(
            f"Model {served.name!r} has no output {unknown[0]!r}; it gives "
            f"{', '.join(served.outputs)}."
        )
    return names


def _mlflow_rows(served: ServedModel, content_type: str, body: bytes) -> Rows:
    validator = served.validator
    if content_type == "application/json":
        fmt, payload, _params = codecs.decode_mlflow_json(body)
        if fmt == "dataframe_split":
            if not isinstance(payload, dict) or "data" not in payload:
                raise InvalidInputError("dataframe_split needs 'columns' and 'data'.")
            columns = payload.get("columns") or validator.names
            return validator.from_split(columns, payload["data"])
        if fmt == "dataframe_records" and (
            not isinstance(payload, list) or not all(isinstance(r, dict) for r in payload)
        ):
            raise InvalidInputError("dataframe_records must be a list of objects.")
        return validator.from_rows(payload, field=fmt)
    if content_type == "text/csv":
        import pandas as pd

        header = _csv_header(body, validator.names, tensor=validator.tensor)
        # a text input's values stay text, however they look (zip codes, ids like 007)
        text = {n: str for n, f in zip(validator.names, validator.families, strict=True)
                if f == "string"}  # fmt: skip
        try:
            frame = pd.read_csv(io.BytesIO(body), dtype=text or None, **header)
        except (ValueError, pd.errors.ParserError) as exc:
            raise InvalidInputError(f"The CSV body cannot be read: {exc}.") from None
        return validator.from_frame(frame)
    raise UnsupportedMediaError(
        f"Content type {content_type!r} is not supported; send application/json or text/csv."
    )
