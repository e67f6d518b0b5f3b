"""The HTTP edge: a small ASGI application that routes the few paths a model server has.

No framework router: measured here, a bare ASGI callable answers about 1.6x the requests of the
same handler behind Starlette's router, and inference is the hot path. Every answer carries
``X-Request-Id``; predictions carry ``X-Model-Version``. Domain errors map to statuses in one
table (``STATUS``); nothing else in modelyard knows about HTTP.

Every front door (``/v2/models/{m}/infer``, ``/invocations``, ``/models/{m}/invocations``)
decodes its body into a ``_Door`` and hands it to one path, ``_predict``: a deployment's route
choice, statistics, retries on stable, ``X-Route`` and the prediction log are the same for all.

What a client can make the server keep is bounded: only served names become metric labels or
log partitions, a request is authorized before its body is read, and a body larger than
``max_body_bytes`` is refused with 413 from its ``Content-Length`` or while it streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import itertools
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import msgspec

from modelyard.core.refs import NAME_PATTERN
from modelyard.errors import (
    ConflictError,
    InvalidInputError,
    ModelyardError,
    NotFoundError,
    PredictionLogEmptyError,
)
from modelyard.monitoring.predlog import ParquetSink
from modelyard.serving import codecs
from modelyard.serving.openapi import DOCS_HTML, openapi_document
from modelyard.serving.sink import NullSink, PredictionRecord, PredictionSink
from modelyard.serving.tokens import permit

if TYPE_CHECKING:
    import pandas as pd

    from modelyard.serving.metrics import ServingMetrics
    from modelyard.serving.models import ModelHub, ServedModel
    from modelyard.serving.monitor import MonitorLoop
    from modelyard.serving.tokens import Scope as TokenScope
    from modelyard.serving.tokens import TokenChecker, TokenInfo
    from modelyard.serving.validation import Rows
    from modelyard.settings import ServingSettings

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("modelyard.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

STATUS = {
    "invalid": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "unsupported_media": 415,
    "integrity": 500,
    "model": 500,
    "internal": 500,
    "serving": 500,
    "overloaded": 503,
    "not_ready": 503,
    "storage": 503,
    "timeout": 504,
}
_JSON = b"application/json"
#: Bodies larger than this are decoded and validated in a thread, so that a large request does
#: not hold the event loop (and the health probes behind it).
_OFF_LOOP_BYTES = 1 << 20
_SERVER_METADATA = {"name": "modelyard", "version": "0.1.0", "extensions": []}


@dataclass(slots=True)
class _Call:
    """One HTTP request being answered."""

    receive: Receive
    send: Send
    headers: dict[str, str]
    request_id: str
    started: float


class UnsupportedMediaError(InvalidInputError):
    kind = "unsupported_media"


class _Label(msgspec.Struct):
    request_id: str
    label: str | int | float | bool
    time: str | int | float | None = None  # ISO 8601 or epoch seconds; default: now
    row: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] = 0


class _LabelsRequest(msgspec.Struct):
    deployment: str
    labels: Annotated[list[_Label], msgspec.Meta(min_length=1)]


_labels_decoder = msgspec.json.Decoder(_LabelsRequest)
_NAME_RE = re.compile(NAME_PATTERN)


#: Routes whose failed requests go to the prediction log (with their status, without data).
_LOGGED_ROUTES = frozenset({"v2_infer", "invocations"})


class HttpError(Exception):
    """An answer decided by the HTTP layer itself (405, 413); ``close`` ends the connection
    (the rest of a refused body is not read)."""

    def __init__(self, status: int, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.close = close


class ModelServer:
    """The ASGI application serving a ``ModelHub``."""

    def __init__(
        self,
        hub: ModelHub,
        settings: ServingSettings,
        metrics: ServingMetrics,
        *,
        sink: PredictionSink | None = None,
        tokens: TokenChecker | None = None,
        monitor: MonitorLoop | None = None,
    ) -> None:
        self.hub = hub
        self.monitor = monitor
        self.settings = settings
        self.metrics = metrics
        self.sink = sink or NullSink()
        self.tokens = tokens
        self._timeout_s = settings.timeout_ms / 1000
        self._max_body = settings.max_body_bytes
        self._id_prefix = uuid.uuid4().hex[:16]
        self._ids = itertools.count(1)
        router = hub.router
        #: The names this server answers for; no other name becomes a label, a log partition
        #: or a log line.
        self._served: tuple[str, ...] = (*hub.slots, *(router.names if router else ()))
        self._served_set = frozenset(self._served)
        self._openapi = codecs.encode_json(openapi_document(list(self._served)))

    def _next_id(self) -> str:
        # unique across processes (random prefix) and cheaper than uuid4 per request
        return f"{self._id_prefix}{next(self._ids):x}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # -- lifespan ----------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Models load before the port opens: a server that cannot load them exits
                # non-zero at once instead of staying up unready.
                try:
                    await self.hub.start()
                except Exception as exc:
                    logger.error("the models could not be loaded: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                # Everything loaded so far lives as long as the server: keep the collector
                # from walking it again on every full collection (50 ms tails under load).
                gc.collect()
                gc.freeze()
                if self.monitor is not None:
                    self.monitor.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _stop(self) -> None:
        if self.monitor is not None:
            await self.monitor.stop()
        await self.hub.close()
        self.sink.close()

    # -- routing -----------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = _headers(scope, self.hub.router.sticky_headers if self.hub.router else None)
        request_id = headers.get("x-request-id") or self._next_id()
        method = scope["method"]
        path = scope["path"]
        call = _Call(receive, send, headers, request_id, started)
        route = "other"
        # the model label of this request's metrics: a served name, set once the token passed
        model = ""
        try:
            parts = path.strip("/").split("/")
            if parts[0] == "v2" and len(parts) >= 3 and parts[1] == "models":
                name, version, action = _model_path(parts)
                route = f"v2_{action}"
                _expect(method, "POST" if action == "infer" else "GET")
                await self._authorize(headers, "predict", name)
                model = self._label(name)
                if action == "infer":
                    await self._infer(call, name, version)
                    return
                await self._metadata(call, name, version, ready=action == "ready")
            elif path in ("/invocations", "/invocations/") or (
                len(parts) == 3 and parts[0] == "models" and parts[2] == "invocations"
            ):
                route = "invocations"
                _expect(method, "POST")
                name = parts[1] if parts[0] == "models" else self._only_model()
                await self._authorize(headers, "predict", name)
                model = self._label(name)
                await self._invocations(call, name)
                return
            elif path in ("/v1/labels", "/v1/labels/"):
                route = "labels"
                _expect(method, "POST")
                await self._labels(call)
            else:
                route = await self._plain(method, path, call)
        except ModelyardError as exc:
            status = STATUS.get(exc.kind, 500)
            await self._error(send, status, str(exc), request_id, exc)
            self._count(model, route, status, started)
            self._record_error(model, route, request_id, status, started)
        except HttpError as exc:
            extra = [(b"connection", b"close")] if exc.close else None
            await _respond(send, exc.status, _error_body(exc), request_id, extra=extra)
            self._count(model, route, exc.status, started)
            self._record_error(model, route, request_id, exc.status, started)
        except Exception as exc:
            logger.exception("unexpected failure on %r %r", method, path)
            await self._error(send, 500, f"Internal error: {type(exc).__name__}.", request_id, exc)
            self._count(model, route, 500, started)
            self._record_error(model, route, request_id, 500, started)

    async def _metadata(self, call: _Call, name: str, version: str | None, *, ready: bool) -> None:
        served = self.hub.get(name, version)
        # the name asked: a deployment's name, not its stable model's
        body = {"name": name, "ready": True} if ready else served.metadata() | {"name": name}
        await _respond(call.send, 200, codecs.encode_json(body), call.request_id)

    def _label(self, name: str) -> str:
        """``name`` when this server serves it, else ``""``: made-up names never become
        metric labels or log partitions."""
        return name if name in self._served_set else ""

    async def _plain(self, method: str, path: str, call: _Call) -> str:
        found = _PLAIN_ROUTES.get(path.rstrip("/") or "/")
        if found is None:
            raise NotFoundError(f"No route {method} {path}; see /docs for the API.")
        route, methods = found
        _expect(method, *methods)
        send, request_id, headers = call.send, call.request_id, call.headers
        if route == "v2_server":
            await _respond(send, 200, codecs.encode_json(_SERVER_METADATA), request_id)
        elif route == "live":
            await _respond(send, 200, b'{"live":true}', request_id)
        elif route == "ready":
            # 503 while not ready, as KServe and Triton answer: load balancers take it as "wait"
            ready = self.hub.ready
            await _respond(
                send, 200 if ready else 503, b'{"ready":true}' if ready else b'{"ready":false}',
                request_id,
            )  # fmt: skip
        elif route == "metrics":
            if not self.settings.open_metrics:
                await self._authorize(headers, "predict", None)
            body, content_type = self.metrics.render()
            await _respond(send, 200, body, request_id, content_type=content_type.encode())
        elif route == "docs":
            if not self.settings.open_docs:
                await self._authorize(headers, "predict", None)
            if path.startswith("/openapi"):
                await _respond(send, 200, self._openapi, request_id)
            else:
                await _respond(send, 200, DOCS_HTML, request_id, content_type=b"text/html")
        else:  # admin
            await self._authorize(headers, "admin", None)
            await _respond(send, 200, codecs.encode_json(self._admin_models()), request_id)
        return "health" if route in ("live", "ready") else route

    def _admin_models(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for name, slot in self.hub.slots.items():
            current = slot.current
            out.append({
                "name": name, "kind": "model", "ref": str(slot.ref),
                "version": current.version if current else None,
                "runtime": current.loaded.runtime if current else None,
                "kernel": current.loaded.kernel if current else None,
                "swaps": slot.swaps, "failed_version": slot.failed_version,
                "queue_depth": current.batcher.depth if current else 0,
            })  # fmt: skip
        router = self.hub.router
        for name, dslot in (router.slots if router is not None else {}).items():
            d = dslot.deployment
            routes = [_route_view("stable", dslot.stable)]
            if dslot.candidate is not None:
                routes.append(_route_view("candidate", dslot.candidate))
            out.append({
                "name": name, "kind": "deployment", "revision": d.revision, "state": d.state,
                "mode": d.mode, "weight": d.weight, "routes": routes,
            })  # fmt: skip
        return out

    def _only_model(self) -> str:
        if len(self._served) != 1:
            raise NotFoundError(
                "This server serves several models; POST to /models/NAME/invocations."
            )
        return self._served[0]

    async def _authorize(
        self, headers: dict[str, str], scope: TokenScope, model: str | None
    ) -> None:
        if self.tokens is not None:
            await self.tokens.check(headers.get("authorization"), scope=scope, model=model)

    # -- bodies ------------------------------------------------------------------------------

    async def _body(self, call: _Call) -> bytes:
        """The request body, refused with 413 past ``max_body_bytes``: at once from the
        ``Content-Length`` header, or as soon as a streamed (chunked) body passes the limit."""
        limit = self._max_body
        declared = call.headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise _too_large(limit)
        message = await call.receive()
        body: bytes = message.get("body", b"")
        if len(body) > limit:
            raise _too_large(limit)
        if not message.get("more_body"):
            return body
        chunks = [body]
        size = len(body)
        while message.get("more_body"):
            message = await call.receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    # -- labels ------------------------------------------------------------------------------

    async def _labels(self, call: _Call) -> None:
        """``POST /v1/labels``: ground truth for logged predictions, written off the loop."""
        from modelyard.monitoring.labels import IngestResult, ingest_labels

        info = await self._authenticate(call.headers)  # before the body is read
        sink = self.sink
        if not isinstance(sink, ParquetSink):
            raise ConflictError(
                "This server does not log predictions, so labels have nothing to join; start "
                "it with 'yard serve --log-predictions'."
            )
        body = await self._body(call)
        if len(body) > _OFF_LOOP_BYTES:
            request = await asyncio.to_thread(_decode_labels, body)
        else:
            request = _decode_labels(body)
        name = request.deployment
        if info is not None:
            permit(info, scope="predict", model=name)  # labels are written by predict tokens
        # a name served here may have no log file yet (the sink flushes every second)
        served = name in self._served_set

        def write() -> IngestResult:
            frame = _labels_frame(request.labels)
            try:
                return ingest_labels(
                    sink.root, name, frame, require_log=not served, count_matched=False
                )
            except PredictionLogEmptyError:
                # the library's message names the log folder: not for HTTP clients
                raise PredictionLogEmptyError(
                    f"No predictions are logged for deployment {name!r}, so there is nothing "
                    "to label; check the name (the deployment or model the predictions came "
                    "from)."
                ) from None

        result = await asyncio.to_thread(write)
        body = codecs.encode_json({"accepted": result.rows})
        await _respond(call.send, 202, body, call.request_id)
        self._count(self._label(name), "labels", 202, call.started)

    async def _authenticate(self, headers: dict[str, str]) -> TokenInfo | None:
        if self.tokens is None:
            return None
        return await self.tokens.authenticate(headers.get("authorization"))

    # -- inference ---------------------------------------------------------------------------

    async def _infer(self, call: _Call, name: str, version: str | None) -> None:
        """``POST /v2/models/{name}[/versions/{version}]/infer``."""
        if not self._routed(name, version):
            self.hub.get(name, version)  # unknown model or version: answer before the body
        body = await self._body(call)
        header_length = call.headers.get("inference-header-content-length")
        large = len(body) > _OFF_LOOP_BYTES
        if large:
            decoded = await asyncio.to_thread(codecs.decode_v2, body, header_length=header_length)
        else:
            decoded = codecs.decode_v2(body, header_length=header_length)
        await self._predict(call, name, version, _V2Door(*decoded), large=large)

    async def _invocations(self, call: _Call, name: str) -> None:
        """``POST /invocations`` and ``POST /models/{name}/invocations`` (MLflow)."""
        if not self._routed(name, None):
            self.hub.get(name)
        body = await self._body(call)
        content_type = call.headers.get("content-type", "application/json").split(";")[0].strip()
        door = _MlflowDoor(content_type, body)
        await self._predict(call, name, None, door, large=len(body) > _OFF_LOOP_BYTES)

    def _routed(self, name: str, version: str | None) -> bool:
        """Whether requests for ``name`` go through a deployment's routes."""
        router = self.hub.router
        return router is not None and version is None and name in router.slots

    async def _predict(
        self, call: _Call, name: str, version: str | None, door: _Door, *, large: bool
    ) -> None:
        """The one path every front door takes once its body is decoded."""
        if self._routed(name, version):
            await self._predict_deployment(call, name, door, large=large)
            return
        served = self.hub.get(name, version)
        if large:
            await asyncio.to_thread(door.rows, served)  # kept by the door for this model
            # Take the model after the last await before submitting: a hot swap closes the
            # old model only after every request that took it has joined its queue.
            served = self.hub.get(name, version)
        wanted = door.outputs(served)
        rows = door.rows(served)
        result = await served.predict(rows, wanted, timeout_s=self._timeout_s)
        encode_started = time.perf_counter()
        payload = door.encode(name, served, result.outputs)
        await _respond(call.send, 200, payload, call.request_id, model_version=served.version)
        self._observe(
            served, door.route, started=call.started, encoded=encode_started,
            queue_s=result.queue_wait_s,
        )  # fmt: skip
        self._record(call, served, door.route, rows, result.outputs)

    async def _predict_deployment(
        self, call: _Call, name: str, door: _Door, *, large: bool
    ) -> None:
        router = self.hub.router
        assert router is not None
        if large:
            # the stable route's rows, off the loop; the router judges any error
            with contextlib.suppress(ModelyardError):
                await asyncio.to_thread(door.rows, router.slots[name].stable)
        slot = router.slots[name]  # after the last await: the deployment's current state
        stable = slot.stable
        wanted = door.outputs(stable)
        key = slot.sticky_key(call.headers, lambda field: door.field(field, stable))
        route, served, result, rows = await router.predict(
            slot, door.rows, wanted=wanted, key=key, timeout_s=self._timeout_s
        )
        encode_started = time.perf_counter()
        outputs = {k: v for k, v in result.outputs.items() if k in wanted}
        payload = door.encode(name, served, outputs)
        await _respond(
            call.send, 200, payload, call.request_id, model_version=served.version,
            extra=[(b"x-route", route.encode())],
        )  # fmt: skip
        self._observe(
            served, door.route, started=call.started, encoded=encode_started,
            queue_s=result.queue_wait_s,
        )  # fmt: skip
        m = self.metrics
        m.child(m.route_requests, name, route, served.version).inc()
        self._record(call, served, route, rows, outputs, deployment=name)

    def _observe(
        self, served: ServedModel, route: str, *, started: float, encoded: float, queue_s: float
    ) -> None:
        children = served.metric_children.get(route)
        if children is None:
            m = self.metrics
            children = served.metric_children[route] = (
                m.child(m.requests, served.name, served.version, route, "200"),
                m.child(m.latency, served.name, route),
                m.child(m.serialize, served.name),
                m.child(m.queue_wait, served.name),
            )
        requests, latency, serialize, queue_wait = children
        now = time.perf_counter()
        requests.inc()
        latency.observe(now - started)
        serialize.observe(now - encoded)
        queue_wait.observe(queue_s)

    def _count(self, model: str, route: str, status: int, started: float) -> None:
        """Count an answer other than a prediction; ``model`` is a served name or ``""``."""
        m = self.metrics
        m.child(m.requests, model, "", route, str(status)).inc()
        if model:
            m.child(m.latency, model, route).observe(time.perf_counter() - started)

    def _record(
        self,
        call: _Call,
        served: ServedModel,
        route: str,
        rows: Rows,
        outputs: dict[str, Any],
        *,
        deployment: str | None = None,
    ) -> None:
        if isinstance(self.sink, NullSink):
            return
        self.sink.submit(
            PredictionRecord(
                request_id=call.request_id, time=time.time(), model=served.name,
                version=served.version, route=route, inputs=rows, outputs=outputs,
                latency_s=time.perf_counter() - call.started,
                input_names=served.input_names, deployment=deployment,
            )
        )  # fmt: skip

    def _record_error(
        self, name: str, route: str, request_id: str, status: int, started: float
    ) -> None:
        """Log a failed inference request (status, no data) so the log's error rate is true;
        ``name`` is a served name whose token passed (else ``""``: nothing is logged)."""
        if isinstance(self.sink, NullSink) or not name or route not in _LOGGED_ROUTES:
            return
        router = self.hub.router
        deployment = name if router is not None and name in router.names else None
        self.sink.submit(
            PredictionRecord(
                request_id=request_id, time=time.time(), model=name, version="", route="error",
                inputs=None, outputs={}, latency_s=time.perf_counter() - started,
                deployment=deployment, status=status,
            )
        )  # fmt: skip

    async def _error(
        self, send: Send, status: int, message: str, request_id: str, exc: BaseException
    ) -> None:
        if status >= 500:
            logger.warning("%d %r", status, message)  # %r: a message may quote client input
        extra = [(b"retry-after", b"1")] if status == 503 else []
        await _respond(
            send, status, codecs.encode_json({"error": message}), request_id, extra=extra
        )


class _Door(Protocol):
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


class _V2Door(_Validated):
    """An Open Inference Protocol v2 request (JSON, or Triton's binary tensors)."""

    __slots__ = ("arrays", "request")
    route = "v2_infer"

    def __init__(self, request: codecs.InferenceRequest, arrays: Any) -> None:
        super().__init__()
        self.request = request
        self.arrays = arrays

    def _validate(self, served: ServedModel) -> Rows:
        return served.validator.from_request(self.request.inputs, self.arrays)

    def outputs(self, served: ServedModel) -> tuple[str, ...]:
        return _outputs(served, self.request.outputs)

    def field(self, name: str, served: ServedModel) -> str | None:
        for item in self.request.inputs:
            if item.name == name:
                data = item.data
                while isinstance(data, list) and data:
                    data = data[0]
                return None if data is None or isinstance(data, list) else str(data)
        return None

    def encode(self, name: str, served: ServedModel, outputs: dict[str, Any]) -> bytes:
        return codecs.encode_v2(
            model_name=name, model_version=served.version, request_id=self.request.id,
            outputs=outputs,
        )  # fmt: skip


class _MlflowDoor(_Validated):
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


def _route_view(route: str, served: ServedModel) -> dict[str, Any]:
    return {
        "route": route, "model": served.name, "version": served.version,
        "runtime": served.loaded.runtime, "kernel": served.loaded.kernel,
        "queue_depth": served.batcher.depth,
    }  # fmt: skip


def _error_body(exc: Exception) -> bytes:
    return codecs.encode_json({"error": str(exc)})


def _too_large(limit: int) -> HttpError:
    return HttpError(
        413,
        f"The request body is larger than this server's limit of {limit} bytes "
        "(serving.max_body_bytes); send fewer rows per request.",
        close=True,
    )


def _decode_labels(body: bytes) -> _LabelsRequest:
    try:
        request = _labels_decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidInputError(
            f"The labels body is not valid: {exc}; send "
            '{"deployment": NAME, "labels": [{"request_id": ID, "label": VALUE}, ...]}.'
        ) from None
    if _NAME_RE.fullmatch(request.deployment) is None:
        raise InvalidInputError(
            f"The labels body's deployment {request.deployment[:40]!r} is not a valid name: "
            "use letters, digits, '.', '_' or '-' (starting with a letter or digit, at most "
            "128 characters)."
        )
    return request


def _labels_frame(labels: list[_Label]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame({
        "request_id": [item.request_id for item in labels],
        "row": [item.row for item in labels],
        "label": [item.label for item in labels],
    })  # fmt: skip
    if any(item.time is not None for item in labels):
        frame["time"] = pd.Series([item.time for item in labels], dtype=object)
    return frame


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

        try:
            frame = pd.read_csv(io.BytesIO(body))
        except (ValueError, pd.errors.ParserError) as exc:
            raise InvalidInputError(f"The CSV body cannot be read: {exc}.") from None
        return validator.from_frame(frame)
    raise UnsupportedMediaError(
        f"Content type {content_type!r} is not supported; send application/json or text/csv."
    )


def _model_path(parts: list[str]) -> tuple[str, str | None, str]:
    # v2/models/NAME[/versions/V][/ready|/infer]
    name = parts[2]
    rest = parts[3:]
    version = None
    if len(rest) >= 2 and rest[0] == "versions":
        version = rest[1]
        rest = rest[2:]
    if not rest:
        return name, version, "metadata"
    if len(rest) == 1 and rest[0] in ("ready", "infer"):
        return name, version, rest[0]
    raise NotFoundError(f"No route /{'/'.join(parts)}; see /docs for the API.")


def _expect(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise HttpError(405, f"Method {method} is not allowed here; use {' or '.join(allowed)}.")


#: Paths without a model, without their trailing slash: (route, methods).
_PLAIN_ROUTES: dict[str, tuple[str, tuple[str, ...]]] = {
    "/v2": ("v2_server", ("GET",)),
    "/v2/health/live": ("live", ("GET",)),
    "/v2/health/ready": ("ready", ("GET",)),
    "/ping": ("ready", ("GET",)),
    "/health": ("ready", ("GET",)),
    "/metrics": ("metrics", ("GET",)),
    "/openapi.json": ("docs", ("GET",)),
    "/docs": ("docs", ("GET",)),
    "/admin/models": ("admin", ("GET", "POST")),
}


def _headers(scope: Scope, extra: set[bytes] | None = None) -> dict[str, str]:
    out = {}
    for key, value in scope["headers"]:
        if key in _WANTED_HEADERS or (extra and key in extra):
            out[key.decode()] = value.decode("latin-1")
    return out


_WANTED_HEADERS = {
    b"x-request-id", b"authorization", b"content-type", b"content-length",
    b"inference-header-content-length",
}  # fmt: skip


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    request_id: str,
    *,
    content_type: bytes = _JSON,
    model_version: str | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
    ]
    if model_version is not None:
        headers.append((b"x-model-version", model_version.encode()))
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
