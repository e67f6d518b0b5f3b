"""The HTTP edge: a small ASGI application that routes the few paths a model server has.

No framework router: measured here, a bare ASGI callable answers about 1.6x the requests of the
same handler behind Starlette's router, and inference is the hot path. Every answer carries
``X-Request-Id``; predictions carry ``X-Model-Version``. Domain errors map to statuses in one
table (``STATUS``); nothing else in modelyard knows about HTTP.

Every front door (``/v2/models/{m}/infer``, ``/invocations``, ``/models/{m}/invocations``)
decodes its body into a ``Door`` (``serving.doors``) and hands it to one path, ``_predict``: a
deployment's route choice, statistics, retries on stable, ``X-Route`` and the prediction log are
the same for all.

What a client can make the server keep is bounded: only served names become metric labels or
log partitions, a request is authorized before its body is read, and a body larger than
``max_body_bytes`` is refused with 413 from its ``Content-Length`` or while it streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import itertools
import logging
import re
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelyard.errors import (
    ConflictError,
    ModelyardError,
    NotFoundError,
    NotReadyError,
    PredictionLogEmptyError,
)
from modelyard.monitoring.predlog import ParquetSink
from modelyard.serving import codecs
from modelyard.serving._asgi import (
    FAST_BODY_BYTES,
    JSON,
    OCTET_STREAM,
    Call,
    HttpError,
    Receive,
    Scope,
    Send,
    decoded_body,
    expect,
    read_headers,
    respond,
    too_large,
)
from modelyard.serving._labels import decode_labels, labels_frame
from modelyard.serving._outcomes import decode_outcomes, outcomes_frame
from modelyard.serving._triton import (
    load_refused,
    model_config,
    model_stats,
    repository_index,
)
from modelyard.serving.batching import BatchResult, Reply
from modelyard.serving.doors import Door, MlflowDoor, V2Door
from modelyard.serving.openapi import DOCS_HTML, openapi_document
from modelyard.serving.platforms import VertexDoor
from modelyard.serving.sink import NullSink, PredictionRecord, PredictionSink
from modelyard.serving.tfserving import TfPath, TfServingDoor, metadata_body, status_body
from modelyard.serving.tokens import permit

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import pandas as pd

    from modelyard.monitoring.labelrules import LabelRule
    from modelyard.monitoring.labels import IngestResult
    from modelyard.serving._wire import FastExchange
    from modelyard.serving.metrics import ServingMetrics
    from modelyard.serving.models import ModelHub, ServedModel
    from modelyard.serving.monitor import MonitorLoop
    from modelyard.serving.rpc import GrpcEdge
    from modelyard.serving.tokens import Scope as TokenScope
    from modelyard.serving.tokens import TokenChecker, TokenInfo
    from modelyard.serving.validation import Rows
    from modelyard.settings import ServingSettings

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("modelyard.access")

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
#: What uvicorn refuses in a header value: a client's ``X-Request-Id`` with it is answered by
#: the ASGI path.
_BAD_HEADER_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
#: Bodies larger than this are decoded and validated in a thread, so that a large request does
#: not hold the event loop (and the health probes behind it).
_OFF_LOOP_BYTES = 1 << 20
#: Allocations between the collector's young collections while the server runs (Python's
#: default: 700).
_GC_YOUNG_THRESHOLD = 20_000
#: How long after the startup the models' tree kernels start building (``ModelHub.serving``).
_KERNELS_AFTER_S = 1.0
#: ``extensions``: the Triton protocol extensions this server implements (over REST: binary
#: tensors in requests and answers, ``serving.codecs``; over REST and gRPC: an output's top
#: classes, ``serving._classification``; a model's configuration and statistics, and the
#: model repository's index (load and unload refused), ``serving._triton``).
_SERVER_METADATA = {
    "name": "modelyard", "version": "0.1.0",
    "extensions": [
        "binary_tensor_data", "classification", "model_configuration", "statistics",
        "model_repository",
    ],
}  # fmt: skip


#: Routes whose failed requests go to the prediction log (with their status, without data).
_LOGGED_ROUTES = frozenset({"v2_infer", "invocations", "tf_predict", "vertex_predict"})


@dataclass(slots=True)
class Answer:
    """A prediction answered by ``ModelServer.predict``, whatever the protocol."""

    payload: bytes
    served: ServedModel
    #: The front door's route label (``v2_infer``, ``invocations``...).
    door_route: str
    #: The deployment route that answered (``stable``, ``candidate``), or ``None``.
    route: str | None
    deployment: str | None
    rows: Rows
    outputs: dict[str, Any]
    queue_s: float
    #: ``perf_counter`` when encoding started.
    encoded: float
    #: The request's share of its batch's CPU time in the model's thread.
    model_cpu_s: float = 0.0
    #: The event loop's time on the request from its body to its batch (decoding, validation).
    decode_s: float = 0.0


@dataclass(slots=True)
class _FastCall:
    """A request on the short path (``ModelServer.fast_handler``) waiting for its batch."""

    exchange: FastExchange
    name: str
    served: ServedModel
    door: V2Door
    rows: Rows
    request_id: str
    #: The event loop's time from the body to the batch queue.
    decode_s: float


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
        log_root: Callable[[str], str] | None = None,
    ) -> None:
        self.hub = hub
        self.monitor = monitor
        #: For a log on an object store, a local folder holding the newest hour of a name's
        #: log (``mirror.newest_hour_root``), which the label check reads.
        self._log_root = log_root
        self.settings = settings
        self.metrics = metrics
        self.sink = sink or NullSink()
        #: The sink's lanes for one-row answers, when it has them (``ParquetSink.lane``).
        self._lane_of: Callable[..., Any] | None = getattr(self.sink, "lane", None)
        self.tokens = tokens
        self._timeout_s = settings.timeout_ms / 1000
        self._max_body = settings.max_body_bytes
        #: The largest body the short path takes (``fast_handler``).
        self._fast_body = min(self._max_body, FAST_BODY_BYTES)
        self._id_prefix = uuid.uuid4().hex[:16]
        self._ids = itertools.count(1)
        router = hub.router
        #: The names this server answers for; no other name becomes a label, a log partition
        #: or a log line.
        self._served: tuple[str, ...] = (*hub.slots, *(router.names if router else ()))
        self._served_set = frozenset(self._served)
        self._openapi = codecs.encode_json(
            openapi_document(
                list(self._served),
                predict_route=settings.predict_route,
                health_route=settings.health_route,
            )
        )
        self._grpc: GrpcEdge | None = None
        self._grpc_drain: asyncio.Future[None] | None = None

    def next_id(self) -> str:
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
                # Decoding a one-row request of 20 columns alone makes 34 tracked objects
                # (each input's shape and data lists), so the default threshold (700) ran a
                # young collection every ~20 requests or fewer. They die by reference count
                # long before a collection; what a collection walks is what is alive (the
                # requests in flight), so fewer collections do less work in all. Measured at
                # c=32 on one core, four interleaved pairs: 7% more requests per CPU-second
                # (3-15% a pair).
                gc.set_threshold(_GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
                if self.settings.grpc_port is not None:
                    try:
                        await self._start_grpc(self.settings.grpc_port)
                    except Exception as exc:
                        logger.error("the gRPC port could not be opened: %s", exc)
                        await self.hub.close()
                        await send({"type": "lifespan.startup.failed", "message": str(exc)})
                        return
                if self.monitor is not None:
                    self.monitor.start()
                await send({"type": "lifespan.startup.complete"})
                # the port opens after this message: the tree kernels start building once the
                # server has answered its first probes
                asyncio.get_running_loop().call_later(_KERNELS_AFTER_S, self.hub.serving)
            elif message["type"] == "lifespan.shutdown":
                await self._stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start_grpc(self, port: int) -> None:
        from modelyard.serving.rpc import GrpcEdge

        edge = GrpcEdge(self, self.settings.host, port)
        await edge.start()
        self._grpc = edge
        self._drain_grpc_on_signal()

    def _drain_grpc_on_signal(self) -> None:
        """uvicorn drains HTTP on SIGTERM and runs the lifespan shutdown only after it; the
        gRPC door starts its own drain at the same signal, so that both finish within one
        grace period (``graceful_timeout_s``, which a pod's termination grace counts once).
        The handler wraps uvicorn's, which restores its predecessor when it stops."""
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach only the main thread's handlers (an embedded server)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue

            def handler(signum: int, frame: Any, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(self._begin_grpc_drain)
                previous(signum, frame)

            signal.signal(sig, handler)

    def _begin_grpc_drain(self) -> None:
        if self._grpc is not None and self._grpc_drain is None:
            # new calls are refused; calls in flight finish within the grace period
            self._grpc_drain = asyncio.ensure_future(
                self._grpc.stop(self.settings.graceful_timeout_s)
            )

    async def _stop(self) -> None:
        self._begin_grpc_drain()
        if self._grpc_drain is not None:
            await self._grpc_drain
        if self.monitor is not None:
            await self.monitor.stop()
        await self.hub.close()
        self.sink.close()

    # -- routing -----------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = read_headers(scope, self.hub.router.sticky_headers if self.hub.router else None)
        request_id = headers.get("x-request-id") or self.next_id()
        method = scope["method"]
        path = scope["path"]
        call = Call(receive, send, headers, request_id, started)
        try:
            await self._route(call, method, path)
        except Exception as exc:
            status, message, extra = self._failure(exc, method, path)
            body = codecs.encode_json({"error": message})
            await respond(send, status, body, request_id, extra=extra)
            self.count(call.model, call.route, status, started)
            self.record_error(call.model, call.route, request_id, status, started)

    def _failure(
        self, exc: Exception, method: object, path: object
    ) -> tuple[int, str, list[tuple[bytes, bytes]]]:
        """The status, message and extra headers that answer a request that failed."""
        if isinstance(exc, ModelyardError):
            status, message = STATUS.get(exc.kind, 500), str(exc)
        elif isinstance(exc, HttpError):
            return (
                exc.status,
                str(exc),
                exc.headers + ([(b"connection", b"close")] if exc.close else []),
            )
        else:
            logger.exception("unexpected failure on %r %r", method, path)
            status, message = 500, f"Internal error: {type(exc).__name__}."
        if status >= 500:
            logger.warning("%d %r", status, message)  # %r: a message may quote client input
        if status == 401:  # RFC 9110: a 401 names the scheme it wants
            return status, message, [(b"www-authenticate", b'Bearer realm="modelyard"')]
        return status, message, [(b"retry-after", b"1")] if status == 503 else []

    async def _route(self, call: Call, method: str, path: str) -> None:
        """Answer one request; ``call.route`` and ``call.model`` (a served name, set once the
        token passed) are its metric labels, kept as they are when it fails."""
        headers = call.headers
        parts = path.strip("/").split("/")
        if parts[0] == "v2" and len(parts) >= 3 and parts[1] == "models":
            name, version, action = _model_path(parts)
            call.route = f"v2_{action}"
            expect(method, "POST" if action == "infer" else "GET")
            await self.authorize(headers, "predict", name)
            call.model = self.label(name)
            if action == "infer":
                await self._infer(call, name, version)
            else:
                await self._metadata(call, name, version, action)
        elif parts[:2] == ["v2", "repository"]:
            await self._repository(call, method, parts[2:])
        elif path in ("/invocations", "/invocations/") or (
            len(parts) == 3 and parts[0] == "models" and parts[2] == "invocations"
        ):
            call.route = "invocations"
            expect(method, "POST")
            name = parts[1] if parts[0] == "models" else self._only_model()
            await self.authorize(headers, "predict", name)
            call.model = self.label(name)
            await self._invocations(call, name)
        elif parts[0] == "v1" and len(parts) >= 3 and parts[1] == "models":
            tf = TfPath(parts)
            call.route = f"tf_{tf.action}"
            expect(method, "POST" if tf.action == "predict" else "GET")
            await self.authorize(headers, "predict", tf.name)
            call.model = self.label(tf.name)
            await self._tf(call, tf)
        elif path in ("/v1/labels", "/v1/labels/"):
            call.route = "labels"
            expect(method, "POST")
            await self._labels(call)
        elif path in ("/v1/outcomes", "/v1/outcomes/"):
            call.route = "outcomes"
            expect(method, "POST")
            await self._outcomes(call)
        elif path == self.settings.predict_route:
            call.route = "vertex_predict"
            expect(method, "POST")
            name = self._only_model()
            await self.authorize(headers, "predict", name)
            call.model = self.label(name)
            await self._vertex(call, name)
        elif path == self.settings.health_route:
            call.route = await self._plain(method, "/v2/health/ready", call)
        else:
            call.route = await self._plain(method, path, call)

    async def _metadata(self, call: Call, name: str, version: str | None, action: str) -> None:
        if action == "stats":  # name "": every served model's (/v2/models/stats)
            body = self.statistics(name or None, version)
        else:
            served = self.hub.get(name, version)
            # the name asked: a deployment's name, not its stable model's
            if action == "ready":
                body = {"name": name, "ready": True}
            elif action == "config":
                body = model_config(name, served, self.settings)
            else:
                body = served.metadata() | {"name": name}
        await respond(call.send, 200, codecs.encode_json(body), call.request_id)

    async def _repository(self, call: Call, method: str, rest: list[str]) -> None:
        """Triton's model repository extension, read-only: ``POST /v2/repository/index``
        lists the served models; ``.../models/NAME/load`` and ``/unload`` are refused."""
        call.route = "v2_repository"
        if rest == ["index"]:
            expect(method, "POST")
            await self.authorize(call.headers, "predict", None)
            body = await self._body(call)
            parsed = codecs.parse_json(body) if body.strip() else {}
            if not isinstance(parsed, dict):
                raise HttpError(400, "The index request must be a JSON object, or empty.")
            ready_only = parsed.get("ready", False)
            if not isinstance(ready_only, bool):
                raise HttpError(400, "'ready' must be true or false (or left out).")
            index = repository_index(self.served_versions(), ready_only=ready_only)
            await respond(call.send, 200, codecs.encode_json(index), call.request_id)
        elif len(rest) == 3 and rest[0] == "models" and rest[2] in ("load", "unload"):
            expect(method, "POST")
            await self.authorize(call.headers, "admin", None)
            raise HttpError(400, load_refused(rest[2], self.served_names))
        else:
            raise NotFoundError(f"No route /v2/repository/{'/'.join(rest)}; see /docs for the API.")

    @property
    def served_names(self) -> list[str]:
        """Every name this server serves (models and deployments), sorted."""
        return sorted(self._served)

    def served_versions(self) -> list[tuple[str, ServedModel | None]]:
        """Every served name, by name, with the version it serves (``None`` while loading)."""
        out: list[tuple[str, ServedModel | None]] = []
        for name in self.served_names:
            try:
                out.append((name, self.hub.get(name)))
            except NotReadyError:
                out.append((name, None))
        return out

    def statistics(self, name: str | None, version: str | None) -> dict[str, Any]:
        """Triton's statistics of one served name (and version), or of every loaded one."""
        if name is not None:
            entries = [(name, self.hub.get(name, version))]
        else:  # a model not loaded yet has nothing to count
            entries = [(each, v) for each, v in self.served_versions() if v is not None]
        return model_stats(entries, self.metrics.families())

    def label(self, name: str) -> str:
        """``name`` when this server serves it, else ``""``: made-up names never become
        metric labels or log partitions."""
        return name if name in self._served_set else ""

    async def _plain(self, method: str, path: str, call: Call) -> str:
        found = _PLAIN_ROUTES.get(path.rstrip("/") or "/")
        if found is None:
            raise NotFoundError(f"No route {method} {path}; see /docs for the API.")
        route, methods = found
        expect(method, *methods)
        send, request_id, headers = call.send, call.request_id, call.headers
        if route == "v2_server":
            await respond(send, 200, codecs.encode_json(_SERVER_METADATA), request_id)
        elif route == "live":
            await respond(send, 200, b'{"live":true}', request_id)
        elif route == "ready":
            # 503 while not ready, as KServe and Triton answer: load balancers take it as "wait"
            ready = self.hub.ready
            await respond(
                send, 200 if ready else 503, b'{"ready":true}' if ready else b'{"ready":false}',
                request_id,
            )  # fmt: skip
        elif route == "metrics":
            if not self.settings.open_metrics:
                await self.authorize(headers, "predict", None)
            body, content_type = self.metrics.render()
            await respond(send, 200, body, request_id, content_type=content_type.encode())
        elif route == "docs":
            if not self.settings.open_docs:
                await self.authorize(headers, "predict", None)
            if path.startswith("/openapi"):
                await respond(send, 200, self._openapi, request_id)
            else:
                await respond(send, 200, DOCS_HTML, request_id, content_type=b"text/html")
        else:  # admin
            await self.authorize(headers, "admin", None)
            await respond(send, 200, codecs.encode_json(self._admin_models()), request_id)
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
                "provider": current.loaded.provider if current else None,
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

    async def authorize(
        self, headers: dict[str, str], scope: TokenScope, model: str | None
    ) -> None:
        if self.tokens is not None:
            await self.tokens.check(headers.get("authorization"), scope=scope, model=model)

    # -- bodies ------------------------------------------------------------------------------

    async def _body(self, call: Call) -> bytes:
        """The request body, refused with 413 past ``max_body_bytes``: at once from the
        ``Content-Length`` header, or as soon as a streamed (chunked) body passes the limit."""
        limit = self._max_body
        declared = call.headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise too_large(limit)
        message = await call.receive()
        body: bytes = message.get("body", b"")
        if len(body) > limit:
            raise too_large(limit)
        if message.get("more_body"):
            chunks = [body]
            size = len(body)
            while message.get("more_body"):
                message = await call.receive()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                chunks.append(chunk)
            body = b"".join(chunks)
        encoding = call.headers.get("content-encoding")
        if encoding is not None:
            if len(body) > _OFF_LOOP_BYTES // 8:  # inflates to up to 8 times that, or more
                body = await asyncio.to_thread(decoded_body, body, encoding, limit)
            else:
                body = decoded_body(body, encoding, limit)
        call.received = time.perf_counter()
        return body

    # -- labels ------------------------------------------------------------------------------

    async def _labels(self, call: Call) -> None:
        """``POST /v1/labels``: ground truth for logged predictions, written off the loop."""
        from modelyard.monitoring.labels import ingest_labels

        def ingest(root: str | Path, name: str, frame: pd.DataFrame, **kw: Any) -> IngestResult:
            return ingest_labels(root, name, frame, rule=self._label_rule(root, name), **kw)

        await self._per_request_file(
            call, "labels", decode_labels, lambda r: labels_frame(r.labels), ingest
        )

    def _label_rule(self, root: str | Path, name: str) -> LabelRule | None:
        """What ``name``'s labels must be: the served version's signature says (a deployment's
        stable version), else the registry's entry of the version that logged last."""
        from modelyard.monitoring.labelrules import logged_rule, rule_of

        if name in self._served_set:
            try:
                served = self.hub.get(name)
            except ModelyardError:  # still loading
                pass
            else:
                return rule_of(served.signature, f"{served.name}/{served.version}")
        if self._log_root is not None:  # the spool holds no prediction once they are uploaded
            root = self._log_root(name)
        return logged_rule(root, name, self.hub.registry)

    async def _outcomes(self, call: Call) -> None:
        """``POST /v1/outcomes``: business outcomes of logged predictions, as labels are."""
        from modelyard.monitoring.outcomes import ingest_outcomes

        await self._per_request_file(
            call, "outcomes", decode_outcomes,
            lambda r: outcomes_frame(r.outcomes), ingest_outcomes,
        )  # fmt: skip

    async def _per_request_file(
        self,
        call: Call,
        what: str,
        decode: Callable[[bytes], Any],
        frame_of: Callable[[Any], pd.DataFrame],
        ingest: Callable[..., IngestResult],
    ) -> None:
        """Labels or outcomes (``what``): authorized before the body is read, decoded off the
        loop when large, written off the loop as one file of the log, answered 202."""
        info = await self._authenticate(call.headers)  # before the body is read
        sink = self.sink
        if not isinstance(sink, ParquetSink):
            raise ConflictError(
                f"This server does not log predictions, so {what} have nothing to join; start "
                "it with 'yard serve --log-predictions'."
            )
        body = await self._body(call)
        if len(body) > _OFF_LOOP_BYTES:
            request = await asyncio.to_thread(decode, body)
        else:
            request = decode(body)
        name = request.deployment
        if info is not None:
            permit(info, scope="predict", model=name)  # written by predict tokens
        # a name served here may have no log file yet (the sink flushes every second)
        served = name in self._served_set

        def write() -> IngestResult:
            frame = frame_of(request)
            spool = sink.spool
            try:
                if spool is None:
                    return ingest(sink.root, name, frame, require_log=not served,
                                  count_matched=False)  # fmt: skip
                # a log on an object store: the file goes up with the spool's next upload
                if not served and not spool.logged(name):
                    raise PredictionLogEmptyError(name)
                result = ingest(spool.files, name, frame, require_log=False,
                                count_matched=False)  # fmt: skip
                spool.file_added()
                return result
            except PredictionLogEmptyError:
                # the library's message names the log folder: not for HTTP clients
                verb = "label" if what == "labels" else f"join {what} to"
                raise PredictionLogEmptyError(
                    f"No predictions are logged for deployment {name!r}, so there is nothing "
                    f"to {verb}; check the name (the deployment or model the predictions came "
                    "from)."
                ) from None

        result = await asyncio.to_thread(write)
        body = codecs.encode_json({"accepted": result.rows})
        await respond(call.send, 202, body, call.request_id)
        self.count(self.label(name), what, 202, call.started)

    async def _authenticate(self, headers: dict[str, str]) -> TokenInfo | None:
        if self.tokens is None:
            return None
        return await self.tokens.authenticate(headers.get("authorization"))

    # -- inference ---------------------------------------------------------------------------

    async def _infer(self, call: Call, name: str, version: str | None) -> None:
        """``POST /v2/models/{name}[/versions/{version}]/infer``."""
        if not self.routed(name, version):
            self.hub.get(name, version)  # unknown model or version: answer before the body
        body = await self._body(call)
        header_length = call.headers.get("inference-header-content-length")
        large = len(body) > _OFF_LOOP_BYTES
        if large:
            decoded = await asyncio.to_thread(codecs.decode_v2, body, header_length=header_length)
        else:
            decoded = codecs.decode_v2(body, header_length=header_length)
        await self._predict(call, name, version, V2Door(*decoded), large=large)

    async def _invocations(self, call: Call, name: str) -> None:
        """``POST /invocations`` and ``POST /models/{name}/invocations`` (MLflow)."""
        if not self.routed(name, None):
            self.hub.get(name)
        body = await self._body(call)
        content_type = call.headers.get("content-type", "application/json").split(";")[0].strip()
        door = MlflowDoor(content_type, body)
        await self._predict(call, name, None, door, large=len(body) > _OFF_LOOP_BYTES)

    async def _tf(self, call: Call, tf: TfPath) -> None:
        """TF Serving's REST API: model status, metadata and ``:predict``."""
        name, version = tf.name, tf.resolve(self.hub)
        if tf.action != "predict":
            served = self.hub.get(name, version)
            body = status_body(served) if tf.action == "status" else metadata_body(name, served)
            await respond(call.send, 200, body, call.request_id)
            return
        if not self.routed(name, version):
            self.hub.get(name, version)
        body = await self._body(call)
        large = len(body) > _OFF_LOOP_BYTES
        door = await asyncio.to_thread(TfServingDoor, body) if large else TfServingDoor(body)
        await self._predict(call, name, version, door, large=large)

    async def _vertex(self, call: Call, name: str) -> None:
        """Vertex AI's predict route (``AIP_PREDICT_ROUTE``) for the server's one model."""
        if not self.routed(name, None):
            self.hub.get(name)
        body = await self._body(call)
        large = len(body) > _OFF_LOOP_BYTES
        door = await asyncio.to_thread(VertexDoor, body) if large else VertexDoor(body)
        await self._predict(call, name, None, door, large=large)

    # -- the short path ----------------------------------------------------------------------

    def fast_handler(
        self, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]]
    ) -> Callable[[FastExchange], None] | None:
        """The handler of a request that ``ServingProtocol`` may answer without an ASGI cycle,
        asked once its headers are in: ``POST /v2/models/{name}/infer`` for a model served here
        under its own name (not a deployment's), with a ``Content-Length`` within the limits
        and, under ``--auth``, a token the cache holds and allows. Anything else, and anything
        this path would answer with an error, goes to the ASGI path (``_http``), which is the
        reference: it refuses a bad token or a body too large before reading the body."""
        if method != b"POST" or not url.startswith(b"/v2/models/") or url[-6:] != b"/infer":
            return None
        # a str, not bytes: ``b"/" in raw`` first tries the needle as an int, and raises and
        # discards a TypeError (with its formatted message) for each test
        name = url[11:-6].decode("ascii", "replace")
        if "/" in name or "%" in name or "?" in name:
            return None
        if name not in self.hub.slots or self.hub.router is not None:
            return None
        length = authorization = given_id = header_length = None
        for key, value in headers:
            if key == b"content-length":
                length = value
            elif key == b"authorization":
                authorization = value
            elif key == b"x-request-id":
                given_id = value
            elif key == b"inference-header-content-length":
                header_length = value.decode("latin-1")
            elif key == b"content-encoding":
                return None  # compressed: the ASGI path inflates it
        if length is None or not length.isdigit() or int(length) > self._fast_body:
            return None  # chunked, or large: the ASGI path reads it as it streams
        if given_id and _BAD_HEADER_VALUE.search(given_id):
            return None  # the ASGI path refuses it
        if self.tokens is not None:
            presented = None if authorization is None else authorization.decode("latin-1")
            try:
                if self.tokens.check_cached(presented, scope="predict", model=name) is None:
                    return None  # not cached: the ASGI path reads it
            except ModelyardError:
                return None  # refused: the ASGI path answers why, before the body
        request_id = given_id.decode("latin-1") if given_id else None
        return functools.partial(self._fast_infer, name, request_id, header_length)

    def _fast_infer(
        self, name: str, given_id: str | None, header_length: str | None, exchange: FastExchange
    ) -> None:
        """Decode, validate and queue the request now; answer it when its batch finishes."""
        try:
            received = time.perf_counter()
            door = V2Door(*codecs.decode_v2(bytes(exchange.body), header_length=header_length))
            served = self.hub.get(name)
            wanted = door.outputs(served)
            rows = door.rows(served)
            joined = time.perf_counter()
            call = _FastCall(
                exchange, name, served, door, rows, given_id or self.next_id(), joined - received
            )
            queued = served.enqueue(
                rows, wanted, timeout_s=self._timeout_s, reply=Reply(self._fast_answer, call)
            )
        except Exception:
            exchange.fallback()  # the ASGI path answers the error the same way as always
            return
        if not queued:
            exchange.fallback()

    def _fast_answer(
        self, call: _FastCall, result: BatchResult | None, error: BaseException | None
    ) -> None:
        exchange, name, served, request_id = call.exchange, call.name, call.served, call.request_id
        started = exchange.started
        try:
            if error is not None:
                raise error
            assert result is not None
            encode_started = time.perf_counter()
            payload = call.door.encode(name, served, result.outputs)
        except Exception as exc:
            status, message, extra = self._failure(exc, "POST", exchange.url)
            head = b"content-type: application/json\r\nx-request-id: %s\r\n%s" % (
                request_id.encode(),
                b"".join(b"%s: %s\r\n" % pair for pair in extra),
            )
            exchange.reply(status, head, codecs.encode_json({"error": message}))
            self.count(name, "v2_infer", status, started)
            self.record_error(name, "v2_infer", request_id, status, started)
            return
        json_length = call.door.json_length
        if json_length is None:
            head = (
                b"content-type: application/json\r\nx-request-id: %s\r\nx-model-version: %s\r\n"
                % (request_id.encode(), served.version.encode())
            )
        else:  # Triton's binary outputs, answered with the ASGI path's headers
            head = (
                b"content-type: application/octet-stream\r\nx-request-id: %s\r\n"
                b"x-model-version: %s\r\ninference-header-content-length: %d\r\n"
                % (request_id.encode(), served.version.encode(), json_length)
            )
        exchange.reply(200, head, payload)
        self.finish(
            Answer(
                payload, served, "v2_infer", None, None, result.inputs or call.rows,
                result.outputs, result.queue_wait_s, encode_started, result.cpu_s, call.decode_s,
            ),
            request_id, started, protocol="http",
        )  # fmt: skip

    def routed(self, name: str, version: str | None) -> bool:
        """Whether requests for ``name`` go through a deployment's routes."""
        router = self.hub.router
        return router is not None and version is None and name in router.slots

    async def _predict(
        self, call: Call, name: str, version: str | None, door: Door, *, large: bool
    ) -> None:
        """The HTTP answer of a decoded prediction request (every HTTP front door)."""
        answer = await self.predict(
            name, version, door, headers=call.headers, large=large, timeout_s=self._timeout_s,
            received=call.received,
        )  # fmt: skip
        extra = [(b"x-route", answer.route.encode())] if answer.route is not None else None
        content_type = JSON
        if isinstance(door, V2Door) and door.json_length is not None:
            # Triton's binary outputs: the JSON part's length, then the tensors' bytes
            content_type = OCTET_STREAM
            length = (b"inference-header-content-length", b"%d" % door.json_length)
            extra = [*extra, length] if extra else [length]
        await respond(
            call.send, 200, answer.payload, call.request_id, content_type=content_type,
            model_version=answer.served.version, extra=extra,
        )  # fmt: skip
        self.finish(answer, call.request_id, call.started, protocol="http")

    async def predict(
        self,
        name: str,
        version: str | None,
        door: Door,
        *,
        headers: dict[str, str],
        large: bool,
        timeout_s: float,
        received: float,
    ) -> Answer:
        """The one path every front door of every protocol takes once its body is decoded:
        a deployment's routes, or the model asked; ``finish`` records the answer once sent.
        ``received``: ``perf_counter`` when the request's body was complete."""
        if self.routed(name, version):
            return await self._predict_deployment(
                name, door, headers=headers, large=large, timeout_s=timeout_s, received=received
            )
        served = self.hub.get(name, version)
        if large:
            await asyncio.to_thread(door.rows, served)  # kept by the door for this model
            # Take the model after the last await before submitting: a hot swap closes the
            # old model only after every request that took it has joined its queue.
            served = self.hub.get(name, version)
        wanted = door.outputs(served)
        rows = door.rows(served)
        joined = time.perf_counter()
        result = await served.predict(rows, wanted, timeout_s=timeout_s)
        encode_started = time.perf_counter()
        payload = door.encode(name, served, result.outputs)
        return Answer(
            payload, served, door.route, None, None, result.inputs or rows, result.outputs,
            result.queue_wait_s, encode_started, result.cpu_s, joined - received,
        )  # fmt: skip

    async def _predict_deployment(
        self,
        name: str,
        door: Door,
        *,
        headers: dict[str, str],
        large: bool,
        timeout_s: float,
        received: float,
    ) -> Answer:
        router = self.hub.router
        assert router is not None
        if large:
            # the stable route's rows, off the loop; the router judges any error
            with contextlib.suppress(ModelyardError):
                await asyncio.to_thread(door.rows, router.slots[name].stable)
        slot = router.slots[name]  # after the last await: the deployment's current state
        stable = slot.stable
        wanted = door.outputs(stable)
        key = slot.sticky_key(headers, lambda field: door.field(field, stable))
        joined = time.perf_counter()
        route, served, result, rows = await router.predict(
            slot, door.rows, wanted=wanted, key=key, timeout_s=timeout_s
        )
        encode_started = time.perf_counter()
        outputs = {k: v for k, v in result.outputs.items() if k in wanted}
        payload = door.encode(name, served, outputs)
        return Answer(
            payload, served, door.route, route, name, result.inputs or rows, outputs,
            result.queue_wait_s, encode_started, result.cpu_s, joined - received,
        )  # fmt: skip

    def finish(self, answer: Answer, request_id: str, started: float, *, protocol: str) -> None:
        """Metrics and the prediction log of an answered prediction."""
        served = answer.served
        # A deployment's answers count under its name, as its failures do (``count``), so that
        # a ratio of the two is one deployment's; the model's own histograms keep its name.
        called = answer.deployment or served.name
        key = (answer.door_route, protocol, called)
        children = served.metric_children.get(key)
        if children is None:
            m = self.metrics
            route = answer.door_route
            children = served.metric_children[key] = (
                m.tally(m.requests, called, served.version, route, "200", protocol),
                m.tally(m.latency, called, route, protocol),
                m.tally(m.serialize, served.name),
                m.tally(m.queue_wait, served.name),
                m.tally(m.model_cpu, served.name, served.version),
            )
        requests, latency, serialize, queue_wait, cpu = children
        now = time.perf_counter()
        encoded_s = now - answer.encoded  # encoding and sending
        # the event loop's share: decoding and validating, then encoding and sending
        loop_s = answer.decode_s + encoded_s
        cpu.inc(loop_s)
        requests.inc()
        latency.observe(now - started)
        serialize.observe(encoded_s)
        queue_wait.observe(answer.queue_s)
        if answer.deployment is not None and answer.route is not None:
            m = self.metrics
            m.child(m.route_requests, answer.deployment, answer.route, served.version).inc()
        if isinstance(self.sink, NullSink):
            return
        rows = answer.rows
        if rows.n == 1 and rows.matrix is not None and self._lane_of is not None:
            lane_key = (answer.route or answer.door_route, answer.deployment, *answer.outputs)
            lane = served.log_lanes.get(lane_key)
            if lane is None:
                lane = served.log_lanes[lane_key] = self._lane_of(
                    model=served.name, version=served.version, route=lane_key[0],
                    deployment=answer.deployment, input_names=served.input_names,
                    output_names=tuple(answer.outputs),
                )  # fmt: skip
            if lane.add(
                request_id, time.time(), time.perf_counter() - started,
                answer.model_cpu_s + loop_s, served.memory_bytes, rows.matrix, answer.outputs,
            ):  # fmt: skip
                return
        self.sink.submit(
            PredictionRecord(
                request_id=request_id, time=time.time(), model=served.name,
                version=served.version, route=answer.route or answer.door_route,
                inputs=answer.rows, outputs=answer.outputs,
                latency_s=time.perf_counter() - started, input_names=served.input_names,
                deployment=answer.deployment, cpu_s=answer.model_cpu_s + loop_s,
                memory_bytes=served.memory_bytes,
            )
        )  # fmt: skip

    def count(
        self, model: str, route: str, status: int, started: float, *, protocol: str = "http"
    ) -> None:
        """Count an answer other than a prediction; ``model`` is a served name or ``""``;
        ``status`` is the HTTP status (or, for gRPC, the HTTP status of the same error)."""
        m = self.metrics
        m.child(m.requests, model, "", route, str(status), protocol).inc()
        if model:
            m.child(m.latency, model, route, protocol).observe(time.perf_counter() - started)

    def record_error(
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


def _route_view(route: str, served: ServedModel) -> dict[str, Any]:
    return {
        "route": route, "model": served.name, "version": served.version,
        "runtime": served.loaded.runtime, "kernel": served.loaded.kernel,
        "provider": served.loaded.provider,
        "queue_depth": served.batcher.depth,
    }  # fmt: skip


def _model_path(parts: list[str]) -> tuple[str, str | None, str]:
    # v2/models/NAME[/versions/V][/ready|/infer|/config|/stats]
    name = parts[2]
    rest = parts[3:]
    version = None
    if len(rest) >= 2 and rest[0] == "versions":
        version = rest[1]
        rest = rest[2:]
    if not rest:
        if name == "stats" and version is None:
            # v2/models/stats: Triton's every model's statistics (name "": a token for every
            # model); not on the way of /infer
            return "", None, "stats"
        return name, version, "metadata"
    if len(rest) == 1 and rest[0] in ("ready", "infer", "config", "stats"):
        return name, version, rest[0]
    raise NotFoundError(f"No route /{'/'.join(parts)}; see /docs for the API.")


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
