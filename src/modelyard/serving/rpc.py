"""The gRPC edge: the Open Inference Protocol's ``inference.GRPCInferenceService``.

It runs in the HTTP server's process and event loop (``serving.http2``) and answers through the same
``ModelServer``: the same models, deployments, batcher, validation, tokens (the
``authorization`` metadata), metrics (``protocol="grpc"``) and prediction log. The client's
deadline bounds a prediction as ``serving.timeout_ms`` does (the shorter wins). Errors are the
gRPC codes of the REST statuses; the status label of the metrics stays the HTTP status of the
same error, so that one error-ratio rule covers both protocols.

Messages are (de)serialized here, not by grpcio: a large request is parsed off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

from modelyard.errors import ModelyardError
from modelyard.serving import protobuf
from modelyard.serving._triton import load_refused, model_config, repository_index
from modelyard.serving.doors import GrpcDoor
from modelyard.serving.http import _OFF_LOOP_BYTES, _SERVER_METADATA, STATUS
from modelyard.serving.http2 import Context, GrpcServer, StatusCode

if TYPE_CHECKING:
    from modelyard.serving.http import ModelServer

logger = logging.getLogger(__name__)

#: The gRPC code of each HTTP status a domain error maps to.
CODES = {
    400: StatusCode.INVALID_ARGUMENT,
    401: StatusCode.UNAUTHENTICATED,
    403: StatusCode.PERMISSION_DENIED,
    404: StatusCode.NOT_FOUND,
    409: StatusCode.FAILED_PRECONDITION,
    413: StatusCode.RESOURCE_EXHAUSTED,
    415: StatusCode.INVALID_ARGUMENT,
    500: StatusCode.INTERNAL,
    503: StatusCode.UNAVAILABLE,
    504: StatusCode.DEADLINE_EXCEEDED,
}


class GrpcEdge:
    """The gRPC service of one ``ModelServer``, started and stopped with it."""

    def __init__(self, app: ModelServer, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.server: GrpcServer | None = None
        #: The metadata of the raw table calls seen lately (read once, not on every call).
        self.tables = protobuf.RawTables()

    async def start(self) -> None:
        handlers = {
            "ServerLive": self._server_live,
            "ServerReady": self._server_ready,
            "ModelReady": self._model_ready,
            "ServerMetadata": self._server_metadata,
            "ModelMetadata": self._model_metadata,
            "ModelInfer": self._model_infer,
            "ModelConfig": self._model_config,
            "ModelStatistics": self._model_statistics,
            "RepositoryIndex": self._repository_index,
            "RepositoryModelLoad": self._repository_load,
            "RepositoryModelUnload": self._repository_unload,
        }
        server = GrpcServer(
            {f"/{protobuf.SERVICE}/{name}": h for name, h in handlers.items()},
            max_message=self.app.settings.max_body_bytes,
        )
        await server.start(self.host, self.port, shared=self.app.settings.workers > 1)
        self.server = server
        logger.info("gRPC (Open Inference Protocol) on %s:%d", self.host, self.port)

    async def stop(self, grace_s: float) -> None:
        if self.server is not None:
            await self.server.stop(grace_s)
            self.server = None

    # -- health and metadata -----------------------------------------------------------------

    async def _server_live(self, body: bytes, context: Context) -> bytes:
        return _reply("ServerLive", live=True)

    async def _server_ready(self, body: bytes, context: Context) -> bytes:
        return _reply("ServerReady", ready=self.app.hub.ready)

    async def _model_ready(self, body: bytes, context: Context) -> bytes:
        async def answer(request: Any) -> bytes:
            self.app.hub.get(request.name, request.version or None)
            return _reply("ModelReady", ready=True)

        return await self._model_call("ModelReady", "v2_ready", body, context, answer)

    async def _server_metadata(self, body: bytes, context: Context) -> bytes:
        return _reply("ServerMetadata", **_SERVER_METADATA)

    async def _model_metadata(self, body: bytes, context: Context) -> bytes:
        async def answer(request: Any) -> bytes:
            served = self.app.hub.get(request.name, request.version or None)
            meta = served.metadata() | {"name": request.name}
            return _reply("ModelMetadata", **meta)

        return await self._model_call("ModelMetadata", "v2_metadata", body, context, answer)

    async def _model_config(self, body: bytes, context: Context) -> bytes:
        async def answer(request: Any) -> bytes:
            served = self.app.hub.get(request.name, request.version or None)
            config = model_config(request.name, served, self.app.settings)
            return _reply_from("ModelConfig", {"config": config})

        return await self._model_call("ModelConfig", "v2_config", body, context, answer)

    async def _model_statistics(self, body: bytes, context: Context) -> bytes:
        async def answer(request: Any) -> bytes:
            name = request.name or None  # no name: every served model (an unscoped token)
            stats = self.app.statistics(name, request.version or None if name else None)
            return _reply_from("ModelStatistics", stats)

        return await self._model_call("ModelStatistics", "v2_stats", body, context, answer)

    async def _repository_index(self, body: bytes, context: Context) -> bytes:
        started = time.perf_counter()
        try:
            request = _parse("RepositoryIndex", body)
            await self.app.authorize(_metadata(context), "predict", None)
        except ModelyardError as exc:
            await self._failed(context, "", "v2_repository", exc, started)
        index = repository_index(self.app.served_versions(), ready_only=request.ready)
        return _reply_from("RepositoryIndex", {"models": index})

    async def _repository_load(self, body: bytes, context: Context) -> bytes:
        return await self._refuse("load", context)

    async def _repository_unload(self, body: bytes, context: Context) -> bytes:
        return await self._refuse("unload", context)

    async def _refuse(self, action: str, context: Context) -> NoReturn:
        """RepositoryModelLoad and RepositoryModelUnload (for an admin token): UNIMPLEMENTED,
        Triton's answer where models are not loaded on request, naming what moves a model."""
        started = time.perf_counter()
        try:
            await self.app.authorize(_metadata(context), "admin", None)
        except ModelyardError as exc:
            await self._failed(context, "", "v2_repository", exc, started)
        # counted as REST counts it (400), answered with Triton's code for it
        self.app.count("", "v2_repository", 400, started, protocol="grpc")
        await context.abort(StatusCode.UNIMPLEMENTED, load_refused(action, self.app.served_names))

    async def _failed(
        self, context: Context, model: str, route: str, exc: ModelyardError, started: float
    ) -> NoReturn:
        """A call other than a prediction refused with ``exc``: counted as REST counts it (the
        HTTP status of the same error), then aborted with that status's gRPC code."""
        status = STATUS.get(exc.kind, 500)
        self.app.count(model, route, status, started, protocol="grpc")
        await _abort(context, status, str(exc))

    async def _model_call(
        self,
        method: str,
        route: str,
        body: bytes,
        context: Context,
        answer: Callable[[Any], Awaitable[bytes]],
    ) -> bytes:
        started = time.perf_counter()
        app = self.app
        model = ""
        try:
            request = _parse(method, body)
            await app.authorize(_metadata(context), "predict", request.name)
            model = app.label(request.name)
            reply = await answer(request)
        except ModelyardError as exc:
            await self._failed(context, model, route, exc, started)
        return reply  # answers other than predictions are counted only when they fail, as REST

    # -- inference ---------------------------------------------------------------------------

    async def _model_infer(self, body: bytes, context: Context) -> bytes:
        started = time.perf_counter()
        app = self.app
        headers = _metadata(context)
        request_id = headers.get("x-request-id") or app.next_id()
        model = ""
        route = "v2_infer"
        try:
            large = len(body) > _OFF_LOOP_BYTES
            hit = None if large else self.tables.match(body)
            if large:
                request = await asyncio.to_thread(_parse, "ModelInfer", body)
            elif hit is not None:
                request = hit[0].request  # the call's metadata, as kept; its tensors are in hit
            else:
                request = _parse("ModelInfer", body)
            name, version = request.model_name, request.model_version or None
            await app.authorize(headers, "predict", name)  # before the tensors are decoded
            model = app.label(name)
            if not app.routed(name, version):
                app.hub.get(name, version)  # an unknown model or version: before the tensors
            # the door decodes its tensors with its rows (off the loop if large)
            door = GrpcDoor(request) if hit is None else GrpcDoor(request, body, *hit)
            answer = await app.predict(
                name, version, door, headers=headers, large=large,
                timeout_s=_timeout(app.settings.timeout_ms / 1000, context), received=started,
            )  # fmt: skip
            if door.columnar and not large:
                self.tables.learn(body, request)
        except ModelyardError as exc:
            status = STATUS.get(exc.kind, 500)
            app.count(model, route, status, started, protocol="grpc")
            app.record_error(model, route, request_id, status, started)
            await _abort(context, status, str(exc), request_id)
        except asyncio.CancelledError:
            # grpc cancels the call when its deadline passes (504) or the client goes (499,
            # "client closed request"), which may come before the prediction's own timeout
            remaining = context.time_remaining()
            status = 504 if remaining is not None and remaining <= 0 else 499
            app.count(model, route, status, started, protocol="grpc")
            app.record_error(model, route, request_id, status, started)
            raise
        except Exception as exc:
            logger.exception("unexpected failure on gRPC ModelInfer")
            app.count(model, route, 500, started, protocol="grpc")
            app.record_error(model, route, request_id, 500, started)
            await _abort(context, 500, f"Internal error: {type(exc).__name__}.", request_id)
        # in the trailers: sending initial metadata on its own costs the call a round of grpc
        # operations (about a tenth of its time in a profile of 1-row calls)
        sent = [("x-request-id", request_id), ("x-model-version", answer.served.version)]
        if answer.route is not None:
            sent.append(("x-route", answer.route))
        context.set_trailing_metadata(sent)
        app.finish(answer, request_id, started, protocol="grpc")
        return answer.payload


def _parse(method: str, body: bytes) -> Any:
    from google.protobuf.message import DecodeError

    from modelyard.errors import InvalidInputError

    try:
        return protobuf.METHODS[method][0].FromString(body)
    except DecodeError:
        raise InvalidInputError(
            f"The {method} request is not a valid inference.{method}Request protobuf message."
        ) from None


def _reply(method: str, **fields: Any) -> bytes:
    data: bytes = protobuf.METHODS[method][1](**fields).SerializeToString()
    return data


def _reply_from(method: str, fields: dict[str, Any]) -> bytes:
    """A reply filled from the dict REST answers (Triton's JSON form of the same message)."""
    from google.protobuf import json_format

    message = protobuf.METHODS[method][1]()
    json_format.ParseDict(fields, message)
    data: bytes = message.SerializeToString()
    return data


def _metadata(context: Context) -> dict[str, str]:
    """The request's metadata as headers (the last value of a key wins; binary keys dropped)."""
    out: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if isinstance(value, str):
            out[key] = value
    return out


def _timeout(limit_s: float, context: Context) -> float:
    remaining = context.time_remaining()
    return limit_s if remaining is None else max(min(limit_s, remaining), 0.0)


async def _abort(
    context: Context, status: int, message: str, request_id: str | None = None
) -> NoReturn:
    if status >= 500:
        logger.warning("gRPC %d %r", status, message)  # %r: a message may quote client input
    if request_id is not None:
        context.set_trailing_metadata((("x-request-id", request_id),))
    await context.abort(CODES.get(status, StatusCode.INTERNAL), message)
    raise AssertionError("context.abort raises")  # pragma: no cover
