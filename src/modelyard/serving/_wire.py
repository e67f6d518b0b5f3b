"""The HTTP/1.1 edge under uvicorn: one socket write per answer, a short path for predictions,
one keep-alive timer per connection.

uvicorn writes an answer's status line and headers when the application sends
``http.response.start`` and the body when it sends ``http.response.body``: two ``send`` system
calls per answer. On a loopback or a pod network each of them also runs the receiving side's TCP
work, and a profile of ``yard serve`` under load (py-spy, ``--gil``, 1-row requests at c=32) put
30% of the event loop's time in those two writes. The protocol below hands uvicorn a transport
that gathers what is written in one turn of the event loop and writes it once at the end of that
turn, so that the head and the body of an answer leave in one call; everything else (reading,
flow control, closing) is uvicorn's own.

``ServingProtocol`` adds a short path: a prediction request the application claims once its
headers are in (``ModelServer.fast_handler``) is answered from callbacks, without the ASGI
cycle's task, scope, receive and send, and the coroutines of the request path. Measured on one
core with 1-row requests at c=32 (wrk on another core): the short path cut the server's CPU per
request from about 76 us to 57 us; of what is left, the socket reads and writes take most.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from modelyard.serving._asgi import FAST_BODY_BYTES


class GatheringTransport:
    """A transport whose ``write`` keeps the bytes until the end of the loop's current turn.

    Writes keep their order; ``close`` and ``write_eof`` send what is kept first; a transport
    that closed in the meantime drops it, as a closed transport drops writes.
    """

    __slots__ = ("_kept", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._kept: list[bytes | bytearray | memoryview] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        kept = self._kept
        if kept is None:
            self._kept = [data]
            self._loop.call_soon(self.flush)
        else:
            kept.append(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        kept = self._kept
        if kept is None:
            return
        self._kept = None
        if self._transport.is_closing():
            return
        self._transport.write(kept[0] if len(kept) == 1 else b"".join(kept))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_now(self, data: bytes) -> None:
        """Write ``data`` at once, after what is kept: a complete answer needs no gathering."""
        if self._kept is None:
            self._transport.write(data)
        else:
            self._kept.append(data)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def is_closing(self) -> bool:
        # asked on every answer: through ``__getattr__`` each call first raised and discarded
        # an AttributeError
        return self._transport.is_closing()

    def get_write_buffer_size(self) -> int:
        kept = self._kept
        waiting = sum(len(data) for data in kept) if kept else 0
        return self._transport.get_write_buffer_size() + waiting

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GatheringHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a :class:`GatheringTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.gathering = GatheringTransport(transport, self.loop)
        super().connection_made(self.gathering)  # type: ignore[arg-type]


class FastExchange:
    """One request that the application answers without an ASGI cycle: no task, no scope, no
    receive and send coroutines (:class:`ServingProtocol`).

    It stands where uvicorn keeps its ``RequestResponseCycle`` (``protocol.cycle``) and has the
    attributes uvicorn's protocol reads there (``response_complete``, ``keep_alive``,
    ``disconnected``, ``message_event``). The application calls exactly one of ``reply`` (now or
    from a later callback) or ``fallback`` (hand the request, body and all, to the ASGI path).
    """

    __slots__ = (
        "body", "disconnected", "handler", "keep_alive", "message_event", "method", "protocol",
        "response_complete", "started", "url",
    )  # fmt: skip

    def __init__(
        self,
        protocol: ServingProtocol,
        *,
        handler: Any,
        method: bytes,
        url: bytes,
        keep_alive: bool,
        started: float,
    ) -> None:
        self.protocol = protocol
        self.handler = handler
        self.method = method
        self.url = url
        self.keep_alive = keep_alive
        self.started = started
        self.body = bytearray()
        self.response_complete = False
        self.disconnected = False
        self.message_event = _NO_EVENT

    def reply(self, status: int, headers: bytes, body: bytes) -> None:
        """Write the answer: ``headers`` are complete ``name: value\\r\\n`` lines without
        Content-Length (added here) or the server's defaults (added here). A client that went
        away gets nothing; the protocol moves on to its next request either way."""
        if self.response_complete:
            return
        self.response_complete = True
        protocol = self.protocol
        transport = protocol.gathering
        if not self.disconnected and not transport.is_closing():
            head = _HEADS.get(status, protocol.server_state.default_headers)
            ending = b"\r\n" if self.keep_alive else b"connection: close\r\n\r\n"
            transport.write_now(b"%s%scontent-length: %d\r\n%s%s" % (
                head, headers, len(body), ending, body
            ))  # fmt: skip
            if not self.keep_alive:
                transport.close()
        protocol.on_response_complete()

    def fallback(self) -> None:
        """Answer the request the ASGI way, with the body read so far (the rest follows)."""
        self.protocol.to_asgi(self, more_body=False)


class _Heads:
    """The status line and the server's default headers of an answer, by status, kept while
    the defaults are the same list (uvicorn makes a new one each second, for ``date``)."""

    def __init__(self) -> None:
        self._defaults: list[tuple[bytes, bytes]] | None = None
        self._heads: dict[int, bytes] = {}

    def get(self, status: int, defaults: list[tuple[bytes, bytes]]) -> bytes:
        if defaults is not self._defaults:
            self._defaults = defaults
            self._heads = {}
        head = self._heads.get(status)
        if head is None:
            lines = b"".join(b"%s: %s\r\n" % pair for pair in defaults)
            head = self._heads[status] = STATUS_LINE[status] + lines
        return head


_HEADS = _Heads()


class _NoEvent:
    """``message_event`` of a fast exchange: nothing waits on it."""

    __slots__ = ()

    def set(self) -> None:
        return None


_NO_EVENT = _NoEvent()


class ServingProtocol(GatheringHttpToolsProtocol):
    """uvicorn's protocol with a short path for the application's hot requests.

    At the end of a request's headers the application may claim it (its
    ``fast_handler(method, url, headers)`` returns a handler); the protocol then buffers its
    body and calls the handler with a :class:`FastExchange` once the body is complete.
    Everything it does not claim, and every claimed request the handler gives back with
    ``fallback``, is uvicorn's own ASGI cycle. A claimed request takes uvicorn's place in the
    connection's order: a request pipelined behind it waits in uvicorn's queue until the answer
    is written.
    """

    _idle_since: float | None = None
    _idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        fast = getattr(self.app, "fast_handler", None)
        if self.access_log or self.limit_concurrency is not None or self.root_path:
            fast = None  # what the ASGI cycle does for them is not repeated here
        self._fast = fast

    def on_message_begin(self) -> None:
        if self._fast is None:
            super().on_message_begin()
            return
        # uvicorn's scope (a dict of ten entries and a copy of the app's state) is built only
        # for a request that takes the ASGI path (``_begin_scope``)
        self.url = b""
        self.expect_100_continue = False
        self.headers = []

    def _begin_scope(self) -> None:
        """uvicorn's ``on_message_begin``, late: the scope of the request being read."""
        url, headers, expect = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()
        self.url, self.expect_100_continue = url, expect
        self.headers = self.scope["headers"] = headers

    def on_headers_complete(self) -> None:
        fast = self._fast
        cycle = self.cycle
        if fast is not None and (cycle is None or cycle.response_complete):
            parser = self.parser
            handler = None
            if (
                not self.expect_100_continue
                and not parser.should_upgrade()
                and parser.get_http_version() == "1.1"
            ):
                method = parser.get_method()
                handler = fast(method, self.url, self.headers)
            if handler is not None:
                self.cycle = FastExchange(  # type: ignore[assignment]
                    self, handler=handler, method=method, url=self.url,
                    keep_alive=parser.should_keep_alive(), started=time.perf_counter(),
                )  # fmt: skip
                return
        if fast is not None:
            self._begin_scope()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        cycle: Any = self.cycle
        if type(cycle) is FastExchange:
            cycle.body += body
            if len(cycle.body) > FAST_BODY_BYTES:
                self.to_asgi(cycle, more_body=True)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        cycle: Any = self.cycle
        if type(cycle) is FastExchange:
            cycle.handler(cycle)
            return
        super().on_message_complete()

    def to_asgi(self, exchange: FastExchange, *, more_body: bool) -> None:
        """Hand a claimed request to uvicorn's ASGI cycle, as if it had never been claimed."""
        self._begin_scope()
        url = exchange.url
        parsed = httptools.parse_url(url)
        path = parsed.path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        scope = self.scope
        scope["method"] = exchange.method.decode("ascii")
        scope["path"] = path
        scope["raw_path"] = parsed.path
        scope["query_string"] = parsed.query or b""
        cycle = RequestResponseCycle(
            scope=scope, transport=self.transport, flow=self.flow, logger=self.logger,
            access_logger=self.access_logger, access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(), expect_100_continue=False,
            keep_alive=exchange.keep_alive, on_response=self.on_response_complete,
        )  # fmt: skip
        cycle.body = exchange.body
        cycle.more_body = more_body
        cycle.message_event.set()  # what was read is there to receive
        current: Any = self.cycle
        if current is exchange:
            self.cycle = cycle
        exchange.response_complete = True  # it answers nothing more
        self._start_asgi_task(cycle, self.app)

    # -- keep-alive: one timer per connection, not one per answer --------------------------------
    # uvicorn arms a timer after each answer and cancels it when the next request's first bytes
    # arrive: a call_later and a cancel per request, 1.8 us under uvloop (measured). Here the
    # connection keeps one timer; it closes the connection once it has been idle (no request in
    # progress) for ``timeout_keep_alive``, and otherwise sets itself again for the rest.

    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None  # uvicorn calls this as bytes arrive: a request is in progress

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_since = None
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self._idle_timer is None:
            self._idle_timer = self.loop.call_later(self.timeout_keep_alive, self._idle_check)

    def _idle_check(self) -> None:
        self._idle_timer = None
        if self.transport.is_closing():
            return
        since = self._idle_since
        wait: float = self.timeout_keep_alive
        if since is not None:
            wait += since - self.loop.time()
            if wait <= 0:
                self.timeout_keep_alive_handler()
                return
        self._idle_timer = self.loop.call_later(wait, self._idle_check)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None


#: The uvicorn releases whose protocol internals ``ServingProtocol`` was checked against (it
#: takes uvicorn's place in the request cycle and the keep-alive timer).
SHORT_PATH_UVICORN = ((0, 55),)


def http_protocol(uvicorn_version: str) -> type[GatheringHttpToolsProtocol]:
    """``ServingProtocol`` on a uvicorn release it was checked against, else only the one-write
    transport: another release may move what the short path relies on."""
    release = tuple(int(part) for part in uvicorn_version.split(".")[:2] if part.isdigit())
    return ServingProtocol if release in SHORT_PATH_UVICORN else GatheringHttpToolsProtocol
