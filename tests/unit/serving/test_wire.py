"""One write per answer: the gathering transport under uvicorn, on real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import uvicorn

from modelyard.serving._asgi import FAST_BODY_BYTES
from modelyard.serving._wire import (
    FastExchange,
    GatheringHttpToolsProtocol,
    GatheringTransport,
    ServingProtocol,
)


async def _pair() -> tuple[asyncio.Transport, socket.socket]:
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    return transport, peer  # type: ignore[return-value]


def _received(peer: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := peer.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_writes_of_one_turn_leave_together_in_order() -> None:
    async def scenario() -> None:
        transport, peer = await _pair()
        gathering = GatheringTransport(transport, asyncio.get_running_loop())
        gathering.write(b"HTTP/1.1 200 OK\r\n\r\n")
        gathering.write(b"body")
        assert gathering.get_write_buffer_size() == len(b"HTTP/1.1 200 OK\r\n\r\nbody")
        assert _received(peer) == b""  # kept until the turn ends
        await asyncio.sleep(0.01)
        assert _received(peer) == b"HTTP/1.1 200 OK\r\n\r\nbody"
        gathering.write(b"next")
        await asyncio.sleep(0.01)
        assert _received(peer) == b"next"
        transport.close()
        peer.close()

    asyncio.run(scenario())


def test_close_sends_what_is_kept_and_later_writes_are_dropped() -> None:
    async def scenario() -> None:
        transport, peer = await _pair()
        gathering = GatheringTransport(transport, asyncio.get_running_loop())
        gathering.write(b"last words")
        gathering.close()
        assert gathering.is_closing()
        gathering.write(b"after close")  # dropped, as a closed transport drops writes
        await asyncio.sleep(0.01)
        assert _received(peer) == b"last words"
        assert peer.recv(10) == b""  # the end of the stream
        peer.close()

    asyncio.run(scenario())


async def _app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    received = b""
    more = True
    while more:
        message = await receive()
        received += message.get("body", b"")
        more = message.get("more_body", False)
    body = scope["path"].encode() + (b" " + received if received else b"")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def _bodies(stream: bytes) -> list[bytes]:
    """The bodies of consecutive HTTP/1.1 answers (each with a Content-Length), all 200."""
    bodies = []
    while stream:
        head, _, rest = stream.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 200 OK"
        length = next(int(v) for k, _, v in (x.partition(b": ") for x in lines[1:])
                      if k.lower() == b"content-length")  # fmt: skip
        bodies.append(rest[:length])
        stream = rest[length:]
    return bodies


@contextlib.asynccontextmanager
async def _server(
    app: object = _app, protocol: type = GatheringHttpToolsProtocol, keep_alive_s: int = 5
) -> AsyncIterator[int]:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, http=protocol, lifespan="off",  # type: ignore[arg-type]
        log_level="error", timeout_keep_alive=keep_alive_s, access_log=False,
        proxy_headers=False,
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def _until_closed(port: int, requests: bytes) -> bytes:
    """Send ``requests`` on one connection at once (pipelined); what comes back until the
    server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(requests)
    await writer.drain()
    answers = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answers


def test_pipelined_requests_are_answered_in_order_and_close_ends_the_connection() -> None:
    async def scenario() -> None:
        async with _server() as port:
            answers = await _until_closed(
                port,
                b"GET /one HTTP/1.1\r\nhost: x\r\n\r\n"
                b"GET /two HTTP/1.1\r\nhost: x\r\n\r\n"
                b"GET /three HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            )
        assert _bodies(answers) == [b"/one", b"/two", b"/three"]

    asyncio.run(scenario())


class _FastApp:
    """``_app`` behind the short path: it claims ``/fast...`` and answers the path and body
    ``delay_s`` later (as a batch would); ``/fast/back`` it hands back to the ASGI path."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.claimed: list[bytes] = []

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        await _app(scope, receive, send)

    def fast_handler(self, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]]):  # type: ignore[no-untyped-def]
        return self._handle if url.startswith(b"/fast") else None

    def _handle(self, exchange: FastExchange) -> None:
        self.claimed.append(exchange.url)
        if exchange.url == b"/fast/back":
            exchange.fallback()
            return
        body = exchange.url + (b" " + bytes(exchange.body) if exchange.body else b"")
        answer = lambda: exchange.reply(200, b"content-type: text/plain\r\n", body)  # noqa: E731
        if self.delay_s:
            asyncio.get_running_loop().call_later(self.delay_s, answer)
        else:
            answer()


def test_the_short_path_and_the_asgi_path_answer_pipelined_requests_in_order() -> None:
    """Claimed requests answered later, requests handed back with their body, and ASGI requests
    on one connection: each answer in its request's place; ``connection: close`` ends it."""
    app = _FastApp(delay_s=0.05)

    async def scenario() -> None:
        async with _server(app, ServingProtocol) as port:
            answers = await _until_closed(
                port,
                b"POST /fast/1 HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc"
                b"GET /slow/2 HTTP/1.1\r\nhost: x\r\n\r\n"
                b"POST /fast/back HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nbody"
                b"GET /fast/4 HTTP/1.1\r\nhost: x\r\n\r\n"
                b"POST /fast/5 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
                b"content-length: 1\r\n\r\nz",
            )
        assert _bodies(answers) == [
            b"/fast/1 abc", b"/slow/2", b"/fast/back body", b"/fast/4", b"/fast/5 z"
        ]  # fmt: skip
        assert answers.count(b"connection: close") == 1
        # the requests behind a claimed one wait in uvicorn's queue and take its path
        assert app.claimed == [b"/fast/1"]

    asyncio.run(scenario())


def test_a_request_handed_back_reaches_the_asgi_path_with_its_body() -> None:
    app = _FastApp()

    async def scenario() -> None:
        async with _server(app, ServingProtocol) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            answers = []
            for request in (
                b"POST /fast/back HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nbody",
                b"POST /fast/2 HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi",
                b"GET /fast/back HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            ):
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                answers.append(await reader.readexactly(length))
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed after the last
            writer.close()
        assert answers == [b"/fast/back body", b"/fast/2 hi", b"/fast/back"]
        assert app.claimed == [b"/fast/back", b"/fast/2", b"/fast/back"]

    asyncio.run(scenario())


def test_a_claimed_body_past_the_short_paths_limit_streams_to_the_asgi_path() -> None:
    app = _FastApp()
    body = bytes(range(256)) * (FAST_BODY_BYTES // 128)

    async def scenario() -> None:
        async with _server(app, ServingProtocol) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /fast/big HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n"
                         b"connection: close\r\n\r\n" % len(body))  # fmt: skip
            for start in range(0, len(body), 10_000):  # in pieces, as a network delivers it
                writer.write(body[start : start + 10_000])
                await writer.drain()
                await asyncio.sleep(0.001)
            answers = await asyncio.wait_for(reader.read(), 5)
            writer.close()
        assert _bodies(answers) == [b"/fast/big " + body]

    asyncio.run(scenario())


def test_an_answer_for_a_client_that_left_is_dropped() -> None:
    app = _FastApp(delay_s=0.2)

    async def scenario() -> None:
        async with _server(app, ServingProtocol) as port:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /fast/gone HTTP/1.1\r\nhost: x\r\n\r\n")
            await writer.drain()
            writer.close()
            await asyncio.sleep(0.4)  # the answer comes and goes nowhere, without an error
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /fast/next HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            answers = await asyncio.wait_for(reader.read(), 5)
            writer.close()
        assert _bodies(answers) == [b"/fast/next"]

    asyncio.run(scenario())


def test_keep_alive_closes_idle_connections_and_never_one_with_a_request_in_progress() -> None:
    """One timer per connection: an answer that takes longer than the keep-alive period still
    arrives; the connection then closes once idle for the period."""
    app = _FastApp(delay_s=1.5)

    async def scenario() -> None:
        async with _server(app, ServingProtocol, keep_alive_s=1) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /slow/first HTTP/1.1\r\nhost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"/slow/first"), 5)
            assert head.startswith(b"HTTP/1.1 200")
            await asyncio.sleep(0.6)  # idle, but not for the whole period
            writer.write(b"GET /fast/late HTTP/1.1\r\nhost: x\r\n\r\n")  # answered 1.5 s on
            started = asyncio.get_running_loop().time()
            answer = await asyncio.wait_for(reader.readuntil(b"/fast/late"), 5)
            assert answer.startswith(b"HTTP/1.1 200")
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed once idle
            took = asyncio.get_running_loop().time() - started
            assert 2.3 <= took <= 3.5, took  # 1.5 s for the answer, then 1 s idle
            writer.close()

    asyncio.run(scenario())


def test_the_short_path_runs_only_on_the_uvicorn_releases_it_was_checked_against() -> None:
    from modelyard.serving._wire import http_protocol

    assert http_protocol(uvicorn.__version__) is ServingProtocol  # the installed one is checked
    assert http_protocol("0.55.3") is ServingProtocol
    assert http_protocol("0.56.0") is GatheringHttpToolsProtocol
    assert http_protocol("1.0") is GatheringHttpToolsProtocol
