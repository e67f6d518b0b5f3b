"""A small HTTP/2 server for unary gRPC calls, in the server's event loop.

Why not grpcio's ``grpc.aio`` server: measured on one pinned core with a 1-row model, it answered
about 1,300-1,600 calls/s, spending two thirds of the loop's time in grpcio's own machinery
(completion-queue events handed from its poller thread to the loop), against about 9,000
requests/s for the same model over REST on the same machine. Unary gRPC needs a small part of
HTTP/2: this module speaks that part on the loop's transports (as uvicorn's httptools does for
HTTP/1.1); HPACK decoding is ``serving._hpack``, with ``hpack``'s Huffman table.

What it does: the connection preface and SETTINGS, HEADERS (+ CONTINUATION, padding, priority),
DATA, flow control both ways (it opens its receive windows as data arrives and holds answers
while the peer's windows are shut), PING, RST_STREAM (the call is cancelled), GOAWAY (a graceful
stop sends one and lets calls in flight finish), ``grpc-timeout``, and one uncompressed message
per call each way; a message compressed with gzip or deflate (``grpc-encoding``) is inflated
within the body limit, answers go uncompressed. What it refuses: a method it lacks
(UNIMPLEMENTED, on the call's headers, so that a streaming call is not left waiting), another
``grpc-encoding`` (UNIMPLEMENTED), a message over the body limit, once inflated too
(RESOURCE_EXHAUSTED), a content type other than ``application/grpc*`` (HTTP 415),
more concurrent calls than it announced (REFUSED_STREAM), and protocol violations (GOAWAY with
PROTOCOL_ERROR, then the connection closes). No TLS: put it behind a mesh or ingress, as the
REST port. Calls that arrive together are decoded at most ``DECODE_AHEAD`` ahead of their
answers, so that answers leave while the rest are decoded.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NoReturn

from modelyard.serving._hpack import MAX_HEADER_LIST, HpackDecoder, integer, literal
from modelyard.serving._inflate import CorruptError, TooLargeError, inflate
from modelyard.serving._wire import GatheringTransport

logger = logging.getLogger(__name__)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE = range(9)
CONTINUATION = 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR = 0x0, 0x1, 0x3, 0x6
REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 0x7, 0x8, 0x9, 0xB

#: What this server announces: concurrent calls per connection, the largest frame it takes,
#: the header list it takes, and a stream window as large as HTTP/2 allows (it is opened again
#: as data arrives; the body limit bounds what one call may send).
MAX_STREAMS = 1024
#: A connection decodes at most this many calls ahead of their answers; each answer lets it
#: decode one more. A gRPC channel sends its calls together, and a client that sends its next
#: calls as answers come back (h2load; a channel with a fixed number of calls in flight) then
#: waits idle while all of them are decoded, batched and answered at once: at 32 streams of
#: 1-row calls the server sat idle 11-13% of the time. With calls decoded as answers leave,
#: answers are on their way while the rest is decoded (measured in paired runs on one core:
#: 24 ahead, 13% more calls a second than none, 16 ahead 7%, the idle share down to 4%).
DECODE_AHEAD = 24
#: Only calls this small count toward ``DECODE_AHEAD``: a large call's own work dwarfs the idle
#: wait, and holding its frames back cost 1000-row calls 4-13% of their rate (paired runs).
AHEAD_BYTES = 16 * 1024
#: Frames that waited this long for the calls ahead of them (a slow model: a fast one answers
#: 24 calls in about 1 ms here) lift the limit until no call runs, so that a slow model's
#: batches take every call the connection has sent.
AHEAD_WAIT_S = 0.02
MAX_FRAME = 1 << 20
WINDOW = (1 << 31) - 1
_DEFAULT_WINDOW = 65535
#: The message encodings this server takes (gRPC's names), as it announces them.
_ENCODINGS = ("identity", "gzip", "deflate")
#: A compressed message larger than this is inflated in a thread (``Connection._inflated``).
_INFLATE_ON_LOOP_BYTES = 64 * 1024
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


class StatusCode(enum.IntEnum):
    """gRPC status codes."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class AbortError(Exception):
    """Ends a call with a status other than OK."""

    def __init__(self, code: StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Context:
    """One call's metadata, deadline and trailing metadata (the part of grpcio's servicer
    context that modelyard's handlers use)."""

    __slots__ = ("_deadline", "_metadata", "trailing")

    def __init__(self, metadata: list[tuple[str, str]], deadline: float | None) -> None:
        self._metadata = metadata
        self._deadline = deadline
        self.trailing: list[tuple[str, str]] = []

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self._metadata

    def time_remaining(self) -> float | None:
        """Seconds left before the client's deadline, or ``None`` when it set none."""
        return None if self._deadline is None else self._deadline - time.monotonic()

    def set_trailing_metadata(self, metadata: Iterable[tuple[str, str]]) -> None:
        self.trailing = list(metadata)

    async def abort(self, code: StatusCode, message: str) -> NoReturn:
        raise AbortError(code, message)


Handler = Callable[[bytes, Context], Awaitable[bytes]]


class _ProtocolError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Stream:
    __slots__ = (
        "block", "chunks", "closed", "ended", "headers_done", "id", "path", "received", "refused",
        "send_window", "task", "waiting",
    )  # fmt: skip

    def __init__(self, stream_id: int, send_window: int) -> None:
        self.id = stream_id
        self.block = bytearray()  # a header block still arriving in CONTINUATION frames
        self.chunks: list[bytes] = []
        self.received = 0
        self.headers_done = False
        self.ended = False  # the client's half is closed
        self.closed = False  # answered, reset or refused
        self.refused = False  # answered early (too large): its data is dropped
        self.path = ""
        self.send_window = send_window
        self.task: asyncio.Task[None] | None = None
        #: Answer bytes held by flow control: [data frames' payload left, trailers block].
        self.waiting: list[Any] | None = None


class GrpcServer:
    """Unary gRPC over HTTP/2 on one port: ``handlers`` maps ``/package.Service/Method``."""

    def __init__(self, handlers: dict[str, Handler], *, max_message: int) -> None:
        self.handlers = handlers
        self.max_message = max_message
        #: What one connection may hold of messages still arriving, over all its calls: the
        #: windows are wide open, so this (not flow control) bounds a client's memory here.
        self.max_held = 4 * max_message
        self.connections: set[Connection] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int, *, shared: bool = False) -> None:
        """Listen on ``host:port``; ``shared``: the worker processes of one server each bind
        it (SO_REUSEPORT), and the kernel spreads connections over them."""
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: Connection(self), host, port, reuse_port=shared, backlog=2048
            )
        except OSError as exc:
            raise OSError(
                f"gRPC cannot listen on {host}:{port} ({exc.strerror or exc}); choose another "
                "--grpc-port or stop what holds it."
            ) from None

    async def stop(self, grace_s: float) -> None:
        """Stop taking connections, send GOAWAY, let calls in flight finish for ``grace_s``."""
        if self._server is None:
            return
        self._server.close()
        for connection in list(self.connections):
            connection.go_away(NO_ERROR)
        deadline = time.monotonic() + grace_s
        while any(c.busy for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.connections:
            # a moment for the last answers to be read: a socket closed with the client's
            # late frames unread is reset, and a reset can drop what was sent just before
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            connection.close()
        await self._server.wait_closed()
        self._server = None


class Connection(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: GrpcServer) -> None:
        self.server = server
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport
        self.buffer = bytearray()
        self.preface = False
        self.streams: dict[int, _Stream] = {}
        self.last_id = 0
        self.continuing: _Stream | None = None
        self.decoder = HpackDecoder()
        self.send_window = _DEFAULT_WINDOW  # the connection's, toward the client
        self.peer_window = _DEFAULT_WINDOW  # the initial window of each new stream
        self.peer_frame = 16384
        self.unacked = 0  # bytes received since the connection's window was last opened
        self.held = 0  # message bytes held for calls whose messages are not whole yet
        self.going_away = False
        #: Streams whose answers wait for the client's flow-control windows to open.
        self.blocked: dict[int, _Stream] = {}
        #: Each open call's metadata, grpc-encoding and deadline, until its message is whole.
        self._calls: dict[int, tuple[list[tuple[str, str]], str, float | None]] = {}
        #: Calls running (decoded, not answered), how many may run before the frames after
        #: them wait in ``buffer`` (``DECODE_AHEAD``), since when frames have waited (``None``:
        #: they do not), and whether reading is paused while they wait.
        self.running = 0
        self.ahead = DECODE_AHEAD
        self.read_from = 0  # where the frames not decoded yet start in ``buffer``
        self.waiting_since: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reading = True

    @property
    def busy(self) -> bool:
        return any(not s.closed for s in self.streams.values())

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The answers of one batch finish in one turn of the loop: one write for all of them
        self.transport = GatheringTransport(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        self.server.connections.add(self)
        settings = b"".join(
            key.to_bytes(2, "big") + value.to_bytes(4, "big")
            for key, value in ((0x3, MAX_STREAMS), (0x4, WINDOW), (0x5, MAX_FRAME),
                               (0x6, MAX_HEADER_LIST))
        )  # fmt: skip
        self._write(
            _frame(SETTINGS, 0, 0, settings)
            + _frame(WINDOW_UPDATE, 0, 0, (WINDOW - _DEFAULT_WINDOW).to_bytes(4, "big"))
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.waiting_since = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for stream in self.streams.values():
            if stream.task is not None and not stream.task.done():
                stream.task.cancel()
        self.streams.clear()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if self.waiting_since is not None:  # frames wait for the calls ahead of them
            if self._reading and len(buffer) > self.server.max_held:
                self._reading = False
                self.transport.pause_reading()
            return
        try:
            if not self.preface:
                if len(buffer) < len(PREFACE):
                    if not PREFACE.startswith(bytes(buffer)):
                        raise _ProtocolError(PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                    return
                if buffer[: len(PREFACE)] != PREFACE:
                    raise _ProtocolError(PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                del buffer[: len(PREFACE)]
                self.preface = True
            offset = self.read_from
            size = len(buffer)
            while size - offset >= 9:
                length = int.from_bytes(buffer[offset : offset + 3], "big")
                if length > MAX_FRAME:
                    raise _ProtocolError(FRAME_SIZE_ERROR, "a frame larger than MAX_FRAME_SIZE")
                end = offset + 9 + length
                if end > size:
                    break
                kind = buffer[offset + 3]
                flags = buffer[offset + 4]
                stream_id = int.from_bytes(buffer[offset + 5 : offset + 9], "big") & 0x7FFFFFFF
                payload = bytes(buffer[offset + 9 : end])
                offset = end
                self._frame(kind, flags, stream_id, payload)
                if self.running >= self.ahead and size - offset >= 9:
                    self._wait()
                    break
            if self.waiting_since is not None and offset <= size >> 1:
                # frames wait: read on from here later, not move the rest to the front each
                # time one call goes (with 1000-row calls, megabytes per call)
                self.read_from = offset
            else:
                del buffer[:offset]
                self.read_from = 0
        except _ProtocolError as exc:
            logger.info("gRPC connection closed: %s", exc)
            self.go_away(exc.code)
            self.close()

    # -- decoding ahead of the answers (``DECODE_AHEAD``) --------------------------------------

    def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        self.waiting_since = loop.time()
        if self._timer is None:  # at most one timer at a time, not one per wait
            self._timer = loop.call_later(AHEAD_WAIT_S, self._waited)

    def _waited(self) -> None:
        self._timer = None
        since = self.waiting_since
        if since is None:
            return
        loop = asyncio.get_running_loop()
        left = since + AHEAD_WAIT_S - loop.time()
        if left > 0:
            self._timer = loop.call_later(left, self._waited)
            return
        self.ahead = MAX_STREAMS  # slow calls: let every call the client sent join them
        self._go_on()

    def _go_on(self) -> None:
        if self.waiting_since is None or self.transport is None or self.running >= self.ahead:
            return
        self.waiting_since = None
        if not self._reading:
            self._reading = True
            self.transport.resume_reading()
        self.data_received(b"")

    def _ran(self, task: asyncio.Task[None]) -> None:
        self.running -= 1
        if not self.running:
            self.ahead = DECODE_AHEAD
        if self.waiting_since is not None and self.running < self.ahead:
            # after the answer's write (the transport flushes at the end of this turn)
            asyncio.get_running_loop().call_soon(self._go_on)

    # -- frames in ---------------------------------------------------------------------------

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self.continuing is not None and (
            kind != CONTINUATION or stream_id != self.continuing.id
        ):
            raise _ProtocolError(PROTOCOL_ERROR, "a header block was interrupted")
        if kind == DATA:
            self._data(flags, stream_id, payload)
        elif kind == HEADERS:
            self._headers(flags, stream_id, payload)
        elif kind == CONTINUATION:
            stream = self.continuing
            if stream is None:
                raise _ProtocolError(PROTOCOL_ERROR, "CONTINUATION without HEADERS")
            self._block(stream, payload, flags, ended=stream.ended)
        elif kind == SETTINGS:
            self._settings(flags, stream_id, payload)
        elif kind == WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif kind == PING:
            if len(payload) != 8 or stream_id:
                raise _ProtocolError(FRAME_SIZE_ERROR, "a PING must carry 8 bytes on stream 0")
            if not flags & ACK:
                self._write(_frame(PING, ACK, 0, payload))
        elif kind == RST_STREAM:
            stream = self.streams.pop(stream_id, None)
            self.blocked.pop(stream_id, None)
            if stream is not None:
                stream.closed = True
                self._drop(stream)
                if stream.task is not None and not stream.task.done():
                    stream.task.cancel()
        elif kind == GOAWAY:
            self.going_away = True
        elif kind == PUSH_PROMISE:
            raise _ProtocolError(PROTOCOL_ERROR, "a client may not push")
        # PRIORITY and unknown frame types are ignored, as HTTP/2 asks

    def _headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0 or stream_id % 2 == 0:
            raise _ProtocolError(PROTOCOL_ERROR, "HEADERS on a stream a client cannot open")
        payload = _unpad(flags, payload)
        if flags & PRIORITY_FLAG:
            payload = payload[5:]
        stream = self.streams.get(stream_id)
        if stream is None:
            stream = _Stream(stream_id, self.peer_window)
            if stream_id <= self.last_id:
                stream.closed = True  # a stream already closed: its block is decoded, dropped
            else:
                self.last_id = stream_id
                self.streams[stream_id] = stream
                if self.going_away or len(self.streams) > MAX_STREAMS:
                    self._reset(stream, REFUSED_STREAM)
        self._block(stream, payload, flags, ended=bool(flags & END_STREAM))

    def _block(self, stream: _Stream, payload: bytes, flags: int, *, ended: bool) -> None:
        """A header block, whole or in parts; every block is decoded, whatever its stream's
        state, so that the HPACK table stays in step with the client's."""
        stream.block += payload
        stream.ended = ended
        if len(stream.block) > MAX_HEADER_LIST:
            raise _ProtocolError(ENHANCE_YOUR_CALM, "a header block over MAX_HEADER_LIST_SIZE")
        if not flags & END_HEADERS:
            self.continuing = stream
            return
        self.continuing = None
        block = bytes(stream.block)
        stream.block = bytearray()
        try:
            headers = self.decoder.decode(block)
        except (ValueError, IndexError) as exc:
            raise _ProtocolError(COMPRESSION_ERROR, f"bad header block: {exc}") from None
        trailers = stream.headers_done
        stream.headers_done = True
        if stream.closed:
            self._forget(stream)
        elif trailers:  # the client's trailers: only the end of its half
            stream.ended = True
            self._maybe_run(stream)
        else:
            self._open(stream, headers)

    def _open(self, stream: _Stream, headers: list[tuple[str, str]]) -> None:
        pseudo = {k: v for k, v in headers if k.startswith(":")}
        content_type = next((v for k, v in headers if k == "content-type"), "")
        if pseudo.get(":method") != "POST" or not content_type.startswith("application/grpc"):
            stream.closed = stream.refused = True
            self._write(_headers_frame(stream.id, _HTTP_415, END_STREAM))
            self._forget(stream)
            return
        stream.path = pseudo.get(":path", "")
        if stream.path not in self.server.handlers:
            # now, not once the client's half ends: a streaming call (ModelStreamInfer) keeps
            # its half open while it waits for answers, and would wait for ever
            self._finish(
                stream, StatusCode.UNIMPLEMENTED,
                f"No method {stream.path}; this server has inference.GRPCInferenceService.",
            )  # fmt: skip
            return
        metadata = [(k, v) for k, v in headers if not k.startswith(":") and k not in _RESERVED]
        encoding = next((v for k, v in headers if k == "grpc-encoding"), "identity")
        if encoding not in _ENCODINGS:
            # as the gRPC spec asks: UNIMPLEMENTED, with grpc-accept-encoding (in every answer)
            self._finish(
                stream, StatusCode.UNIMPLEMENTED,
                f"grpc-encoding {encoding[:40]!r} is not supported; send messages uncompressed "
                "or compressed with gzip or deflate.",
            )  # fmt: skip
            return
        timeout = next((v for k, v in headers if k == "grpc-timeout"), None)
        stream.task = None
        stream.chunks = []
        self._calls[stream.id] = (metadata, encoding, _deadline(timeout))
        self._maybe_run(stream)

    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise _ProtocolError(PROTOCOL_ERROR, "DATA on stream 0")
        # The windows this server announced are as large as HTTP/2 allows: a stream's never
        # runs out before the body limit, and the connection's is opened again once half of it
        # is used, in one frame (not one per DATA frame: a write per call showed in profiles).
        self.unacked += len(payload)
        if self.unacked > WINDOW // 2:
            self._write(_window_frame(0, self.unacked))
            self.unacked = 0
        stream = self.streams.get(stream_id)
        if stream is None or stream.ended or not stream.headers_done:
            if stream is None and stream_id > self.last_id:
                raise _ProtocolError(PROTOCOL_ERROR, "DATA on a stream never opened")
            return
        payload = _unpad(flags, payload)
        if not stream.refused:
            stream.received += len(payload)
            if stream.received > self.server.max_message + 5:
                stream.refused = True
                self._drop(stream)
                self._finish(stream, StatusCode.RESOURCE_EXHAUSTED, _too_large(self.server))
            else:
                stream.chunks.append(payload)
                self.held += len(payload)
                if self.held > self.server.max_held:
                    raise _ProtocolError(
                        ENHANCE_YOUR_CALM, "messages held for calls in flight over the limit"
                    )
        if flags & END_STREAM:
            stream.ended = True
            self._maybe_run(stream)

    def _settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise _ProtocolError(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            return
        if len(payload) % 6:
            raise _ProtocolError(FRAME_SIZE_ERROR, "SETTINGS of a length not a multiple of 6")
        for i in range(0, len(payload), 6):
            key = int.from_bytes(payload[i : i + 2], "big")
            value = int.from_bytes(payload[i + 2 : i + 6], "big")
            if key == 0x4:
                if value > WINDOW:
                    raise _ProtocolError(FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE too large")
                delta = value - self.peer_window
                self.peer_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
            elif key == 0x5:
                if not 16384 <= value <= (1 << 24) - 1:
                    raise _ProtocolError(PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range")
                self.peer_frame = value
        self._write(_frame(SETTINGS, ACK, 0, b""))
        self._flush_blocked()

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ProtocolError(FRAME_SIZE_ERROR, "WINDOW_UPDATE must carry 4 bytes")
        increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if stream_id == 0:
            self.send_window += increment
        else:
            stream = self.streams.get(stream_id)
            if stream is None:
                return
            stream.send_window += increment
        self._flush_blocked()

    # -- calls -------------------------------------------------------------------------------

    def _maybe_run(self, stream: _Stream) -> None:
        if not stream.ended or stream.closed or stream.task is not None or stream.refused:
            return
        call = self._calls.pop(stream.id, None)
        if call is None:
            return
        metadata, encoding, deadline = call
        body = b"".join(stream.chunks)
        self._drop(stream)
        handler = self.server.handlers[stream.path]  # a known method (``_open``)
        if len(body) < 5 or int.from_bytes(body[1:5], "big") != len(body) - 5:
            self._finish(
                stream, StatusCode.INVALID_ARGUMENT,
                "The call must carry exactly one length-prefixed gRPC message.",
            )  # fmt: skip
            return
        context = Context(metadata, deadline)
        if body[0]:
            if encoding == "identity":
                self._finish(
                    stream, StatusCode.INVALID_ARGUMENT,
                    "The message is marked compressed but the call has no grpc-encoding; send "
                    "grpc-encoding gzip or deflate with it, or send it uncompressed.",
                )  # fmt: skip
                return
            run = self._inflated(stream, handler, body[5:], context, encoding)
        else:
            run = self._run(stream, handler, body[5:], context)
        stream.task = asyncio.get_running_loop().create_task(run)
        if len(body) <= AHEAD_BYTES:
            self.running += 1
            stream.task.add_done_callback(self._ran)

    async def _inflated(
        self, stream: _Stream, handler: Handler, message: bytes, ctx: Context, encoding: str
    ) -> None:
        """A compressed message, inflated (off the loop when large: what it inflates to is
        bounded by the body limit, not by what came), then run as any other."""
        limit = self.server.max_message
        try:
            if len(message) > _INFLATE_ON_LOOP_BYTES:
                message = await asyncio.to_thread(inflate, message, encoding, limit)
            else:
                message = inflate(message, encoding, limit)
        except TooLargeError:
            self._finish(stream, StatusCode.RESOURCE_EXHAUSTED, _too_large(self.server))
            return
        except CorruptError:
            self._finish(
                stream, StatusCode.INVALID_ARGUMENT,
                f"The message is not valid {encoding} data (grpc-encoding: {encoding}); "
                "compress it again or send it uncompressed.",
            )  # fmt: skip
            return
        await self._run(stream, handler, message, ctx)

    async def _run(self, stream: _Stream, handler: Handler, message: bytes, ctx: Context) -> None:
        try:
            reply = await handler(message, ctx)
        except AbortError as exc:
            self._finish(stream, exc.code, exc.message, ctx.trailing)
            return
        except asyncio.CancelledError:
            return  # the client reset the stream or left
        except Exception:
            logger.exception("unexpected failure in gRPC %s", stream.path)
            self._finish(stream, StatusCode.INTERNAL, "Internal error.")
            return
        if stream.closed:
            return
        data = len(reply).to_bytes(5, "big") + reply  # flag 0, then the 4-byte length
        trailers = _trailers(StatusCode.OK, "", ctx.trailing)
        self._answer(stream, data, trailers)

    def _finish(
        self, stream: _Stream, code: StatusCode, message: str,
        trailing: list[tuple[str, str]] | None = None,
    ) -> None:  # fmt: skip
        """A trailers-only answer (an error), which closes the stream."""
        if stream.closed:
            return
        stream.closed = True
        block = _OK_HEADERS + _trailers(code, message, trailing or [])
        frames = _headers_frame(stream.id, block, END_STREAM)
        if not stream.ended:  # the client may stop sending: its message is not needed
            frames += _frame(RST_STREAM, 0, stream.id, NO_ERROR.to_bytes(4, "big"))
        self._write(frames)
        self._forget(stream)

    def _answer(self, stream: _Stream, data: bytes, trailers: bytes) -> None:
        stream.closed = True
        stream.waiting = [memoryview(data), trailers]
        self._send(stream, [_OK_HEADERS_FRAME_HEAD + stream.id.to_bytes(4, "big") + _OK_HEADERS])

    def _send(self, stream: _Stream, out: list[bytes] | None = None) -> None:
        """Send what flow control lets through (after ``out``, in the same write); the rest
        waits for a WINDOW_UPDATE."""
        assert stream.waiting is not None
        data, trailers = stream.waiting
        out = out or []
        while data:
            room = min(self.send_window, stream.send_window, self.peer_frame, len(data))
            if room <= 0:
                break
            out.append(_frame(DATA, 0, stream.id, data[:room].tobytes()))
            data = data[room:]
            self.send_window -= room
            stream.send_window -= room
        if data:
            stream.waiting = [data, trailers]
            self.blocked[stream.id] = stream
        else:
            out.append(_headers_frame(stream.id, trailers, END_STREAM))
            stream.waiting = None
            self.blocked.pop(stream.id, None)
            self._forget(stream)
        if out:
            self._write(b"".join(out))

    def _flush_blocked(self) -> None:
        for stream in list(self.blocked.values()):
            if self.send_window <= 0:
                return
            self._send(stream)

    def _drop(self, stream: _Stream) -> None:
        """Let go of a stream's message parts (and their share of ``held``)."""
        self.held -= sum(map(len, stream.chunks))
        stream.chunks = []

    def _forget(self, stream: _Stream) -> None:
        self._drop(stream)
        if stream.waiting is None:
            self.streams.pop(stream.id, None)
            self._calls.pop(stream.id, None)

    def _reset(self, stream: _Stream, code: int) -> None:
        stream.closed = stream.refused = True
        self._write(_frame(RST_STREAM, 0, stream.id, code.to_bytes(4, "big")))

    # -- the connection ----------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def go_away(self, code: int) -> None:
        self.going_away = True
        self._write(_frame(GOAWAY, 0, 0, self.last_id.to_bytes(4, "big") + code.to_bytes(4, "big")))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


# -- frames and header blocks out -----------------------------------------------------------


def _frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream_id.to_bytes(4, "big")
        + payload
    )  # fmt: skip


def _headers_frame(stream_id: int, block: bytes, flags: int) -> bytes:
    return _frame(HEADERS, flags | END_HEADERS, stream_id, block)


def _window_frame(stream_id: int, increment: int) -> bytes:
    return _frame(WINDOW_UPDATE, 0, stream_id, increment.to_bytes(4, "big"))


def _unpad(flags: int, payload: bytes) -> bytes:
    if not flags & PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise _ProtocolError(PROTOCOL_ERROR, "padding longer than the frame")
    return payload[1 : len(payload) - payload[0]]


#: ``:status: 200`` (static table entry 8), ``content-type: application/grpc``, and the message
#: encodings this server takes (the gRPC spec's ``grpc-accept-encoding``; it answers identity).
_OK_HEADERS = (
    b"\x88" + literal(b"content-type", b"application/grpc")
    + literal(b"grpc-accept-encoding", ",".join(_ENCODINGS).encode())
)  # fmt: skip
_OK_HEADERS_FRAME_HEAD = len(_OK_HEADERS).to_bytes(3, "big") + bytes((HEADERS, END_HEADERS))
#: ``:status: 415`` (the name from static entry 8): not a gRPC request.
_HTTP_415 = b"\x08" + integer(3, 7) + b"415"
_RESERVED = frozenset({"te", "content-type", "grpc-timeout", "grpc-encoding",
                       "grpc-accept-encoding"})  # fmt: skip


def _trailers(code: StatusCode, message: str, metadata: list[tuple[str, str]]) -> bytes:
    block = literal(b"grpc-status", str(int(code)).encode())
    if message:
        block += literal(b"grpc-message", _percent(message[:4096]))
    for key, value in metadata:
        if _safe(key) and _safe(value):
            block += literal(key.lower().encode(), value.encode())
    return block


def _percent(text: str) -> bytes:
    """grpc-message's encoding: bytes outside printable ASCII, and ``%``, as ``%XX``."""
    return "".join(
        chr(b) if 0x20 <= b <= 0x7E and b != 0x25 else f"%{b:02X}" for b in text.encode()
    ).encode()


def _safe(text: str) -> bool:
    return text.isascii() and text.isprintable()


def _deadline(timeout: str | None) -> float | None:
    """The monotonic deadline of a ``grpc-timeout`` header (``100m``, ``5S``...)."""
    if not timeout or len(timeout) > 9 or not timeout[:-1].isdigit():
        return None
    unit = _TIMEOUT_UNITS.get(timeout[-1])
    return None if unit is None else time.monotonic() + int(timeout[:-1]) * unit


def _too_large(server: GrpcServer) -> str:
    return (
        f"The message is larger than this server's limit of {server.max_message} bytes "
        "(serving.max_body_bytes); send fewer rows per call."
    )
