"""One write per answer: the gathering transport under uvicorn, on real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import uvicorn

from modelyard.serving._wire import GatheringHttpToolsProtocol, GatheringTransport


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
    body = scope["path"].encode()
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
async def _server() -> AsyncIterator[int]:
    config = uvicorn.Config(
        _app, host="127.0.0.1", port=0, http=GatheringHttpToolsProtocol, lifespan="off",
        log_level="error",
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


def test_pipelined_requests_are_answered_in_order_and_close_ends_the_connection() -> None:
    async def scenario() -> None:
        async with _server() as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"GET /one HTTP/1.1\r\nhost: x\r\n\r\n"
                b"GET /two HTTP/1.1\r\nhost: x\r\n\r\n"
                b"GET /three HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
            )
            await writer.drain()
            answers = await asyncio.wait_for(reader.read(), 5)  # until the server closes
            writer.close()
        assert _bodies(answers) == [b"/one", b"/two", b"/three"]

    asyncio.run(scenario())
