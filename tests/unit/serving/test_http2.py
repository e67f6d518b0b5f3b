"""The gRPC door's HTTP/2 (serving/http2.py) on a real loopback socket, driven by ``h2`` (a
raw HTTP/2 client) to send what well-behaved gRPC clients never send: small flow-control
windows, resets, split header blocks, padding, garbage, oversize and compressed messages."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from hpack import Encoder

from modelyard.serving import http2
from modelyard.serving.http2 import DECODE_AHEAD, AbortError, Context, GrpcServer, StatusCode

LIMIT = 64 * 1024


class Running:
    """A ``GrpcServer`` in a thread of its own, with a few handlers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self.release = asyncio.Event()
        self.deadlines: list[float | None] = []
        self.hanging = 0  # Hang calls started
        self.server = GrpcServer(
            {"/t.S/Echo": self.echo, "/t.S/Big": self.big, "/t.S/Hang": self.hang,
             "/t.S/Fail": self.fail},
            max_message=LIMIT,
        )  # fmt: skip
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.server.start("127.0.0.1", self.port))

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def echo(self, body: bytes, context: Context) -> bytes:
        self.deadlines.append(context.time_remaining())
        metadata = dict(context.invocation_metadata())
        context.set_trailing_metadata([("x-echo", metadata.get("x-tag", "none"))])
        return body

    async def big(self, body: bytes, context: Context) -> bytes:
        return bytes(range(256)) * 400  # 102,400 bytes: past a 65,535-byte window

    async def hang(self, body: bytes, context: Context) -> bytes:
        self.hanging += 1
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return b"released"

    async def fail(self, body: bytes, context: Context) -> bytes:
        await context.abort(StatusCode.NOT_FOUND, "No model 'é%'; check the name.")
        raise AssertionError  # abort raises

    def stop(self) -> None:
        self.call(self.server.stop(1.0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def server() -> Iterator[Running]:
    running = Running()
    yield running
    running.stop()


class Client:
    """An h2 client connection; ``call`` sends one unary gRPC call and reads its answer."""

    def __init__(self, port: int, window: int | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        if window is not None:
            self.h2.local_settings = h2.settings.Settings(
                client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
            )
        self.h2.initiate_connection()
        self.flush()
        self.events: list[Any] = []
        seen: set[type] = set()  # the server's SETTINGS and its connection window's opening
        while not {h2.events.RemoteSettingsChanged, h2.events.WindowUpdated} <= seen:
            received = self.h2.receive_data(self.sock.recv(65536))
            seen |= {type(e) for e in received}
            self.flush()

    def flush(self) -> None:
        self.sock.sendall(self.h2.data_to_send())

    def headers(self, path: str, **extra: str) -> list[tuple[str, str]]:
        return request_headers(path, **extra)

    def call(
        self, path: str, message: bytes = b"hi", *, ack: bool = True, **headers: str
    ) -> dict[str, Any]:
        stream = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream, self.headers(path, **headers))
        self.h2.send_data(stream, grpc_frame(message), end_stream=True)
        self.flush()
        return self.answer(stream, ack=ack)

    def unended(self, path: str, message: bytes, chunk: int = 16384) -> dict[str, Any]:
        """A call whose half stays open (no END_STREAM) after ``message``, sent in DATA frames
        of ``chunk`` bytes; its answer."""
        stream = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream, self.headers(path))
        for start in range(0, len(message), chunk):
            self.h2.send_data(stream, message[start : start + chunk])
            self.flush()
        return self.answer(stream)

    def answer(self, stream: int, *, ack: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"headers": [], "data": b"", "reset": None}
        while True:
            data = self.sock.recv(1 << 20)
            if not data:
                out["closed"] = True
                return out
            for event in self.h2.receive_data(data):
                self.events.append(event)
                if getattr(event, "stream_id", None) != stream:
                    continue
                if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    out["headers"] += [(k.decode(), v.decode()) for k, v in event.headers]
                elif isinstance(event, h2.events.DataReceived):
                    out["data"] += event.data
                    if ack:
                        self.h2.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, h2.events.StreamReset):
                    out["reset"] = event.error_code
                    return out
                elif isinstance(event, h2.events.StreamEnded):
                    self.flush()
                    return out
            self.flush()

    def answers(self, streams: list[int]) -> dict[int, bytes]:
        """The DATA of each of ``streams``, read until all of them have ended."""
        data = dict.fromkeys(streams, b"")
        ended: set[int] = set()
        while ended < set(streams):
            chunk = self.sock.recv(1 << 20)
            assert chunk, "the server closed the connection"
            for event in self.h2.receive_data(chunk):
                stream = getattr(event, "stream_id", None)
                if isinstance(event, h2.events.DataReceived) and stream in data:
                    data[stream] += event.data
                    self.h2.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    ended.add(event.stream_id)
            self.flush()
        return data

    def close(self) -> None:
        self.sock.close()


def request_headers(path: str, **extra: str) -> list[tuple[str, str]]:
    base = {":method": "POST", ":scheme": "http", ":path": path, ":authority": "t",
            "content-type": "application/grpc", "te": "trailers"}  # fmt: skip
    return list((base | extra).items())


def grpc_frame(message: bytes, compressed: bool = False) -> bytes:
    return bytes((int(compressed),)) + len(message).to_bytes(4, "big") + message


def header(answer: dict[str, Any], name: str) -> str | None:
    return next((v for k, v in answer["headers"] if k == name), None)


def test_a_call_round_trips_with_metadata_deadline_and_trailers(server: Running) -> None:
    client = Client(server.port)
    answer = client.call("/t.S/Echo", b"payload", **{"x-tag": "abc", "grpc-timeout": "1500m"})
    assert header(answer, ":status") == "200" and header(answer, "grpc-status") == "0"
    assert header(answer, "content-type") == "application/grpc"
    assert answer["data"] == grpc_frame(b"payload") and header(answer, "x-echo") == "abc"
    assert 1.0 < server.deadlines[-1] <= 1.5  # type: ignore[operator]
    again = client.call("/t.S/Echo", b"")  # the same connection, a second stream
    assert again["data"] == grpc_frame(b"") and server.deadlines[-1] is None
    client.close()


def test_errors_are_trailers_only_with_a_percent_encoded_message(server: Running) -> None:
    client = Client(server.port)
    failed = client.call("/t.S/Fail")
    assert header(failed, "grpc-status") == str(StatusCode.NOT_FOUND.value)
    assert header(failed, "grpc-message") == "No model '%C3%A9%25'; check the name."
    assert failed["data"] == b""
    unknown = client.call("/t.S/Nope")
    assert header(unknown, "grpc-status") == str(StatusCode.UNIMPLEMENTED.value)
    compressed = client.call("/t.S/Echo", b"x", **{"grpc-encoding": "gzip"})
    assert header(compressed, "grpc-status") == str(StatusCode.OK.value)  # not compressed
    stream = client.h2.get_next_available_stream_id()
    client.h2.send_headers(stream, client.headers("/t.S/Echo"))
    client.h2.send_data(stream, b"\x00\x00\x00\x00\x09short", end_stream=True)
    client.flush()
    cut = client.answer(stream)
    assert header(cut, "grpc-status") == str(StatusCode.INVALID_ARGUMENT.value)
    stream = client.h2.get_next_available_stream_id()
    client.h2.send_headers(stream, client.headers("/t.S/Echo", **{"content-type": "text/plain"}))
    client.h2.send_data(stream, b"hello", end_stream=True)
    client.flush()
    assert header(client.answer(stream), ":status") == "415"
    assert client.call("/t.S/Echo", b"still fine")["data"] == grpc_frame(b"still fine")
    client.close()


def compressed_call(client: Client, message: bytes, encoding: str) -> dict[str, Any]:
    """A call whose one message is compressed (flag 1) and sent as ``encoding``."""
    stream = client.h2.get_next_available_stream_id()
    client.h2.send_headers(stream, client.headers("/t.S/Echo", **{"grpc-encoding": encoding}))
    client.h2.send_data(stream, grpc_frame(message, compressed=True), end_stream=True)
    client.flush()
    return client.answer(stream)


def test_compressed_messages_are_inflated_within_the_body_limit(server: Running) -> None:
    """gzip and deflate (zlib's format, as grpc sends it; raw deflate too) are inflated and
    answered uncompressed; what inflates past the limit is refused however small it came, an
    unknown encoding is UNIMPLEMENTED naming it, and every answer says what the server takes."""
    client = Client(server.port)
    payload = b"tensor bytes " * 1000
    raw_deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    for encoding, body in (("gzip", gzip.compress(payload)), ("deflate", zlib.compress(payload))):
        answer = compressed_call(client, body, encoding)
        assert header(answer, "grpc-status") == "0", answer
        assert answer["data"] == grpc_frame(payload)  # flag 0: the answer is not compressed
        accepted = (header(answer, "grpc-accept-encoding") or "").split(",")
        assert {"identity", "gzip", "deflate"} <= set(accepted)
    raw = raw_deflate.compress(payload) + raw_deflate.flush()
    assert compressed_call(client, raw, "deflate")["data"] == grpc_frame(payload)
    bomb = gzip.compress(bytes(LIMIT + 1))  # about 100 bytes that inflate past the limit
    assert len(bomb) < 1000
    refused = compressed_call(client, bomb, "gzip")
    assert header(refused, "grpc-status") == str(StatusCode.RESOURCE_EXHAUSTED.value)
    assert "serving.max_body_bytes" in (header(refused, "grpc-message") or "")
    exact = compressed_call(client, gzip.compress(bytes(LIMIT)), "gzip")
    assert exact["data"] == grpc_frame(bytes(LIMIT))
    broken = compressed_call(client, b"not gzip at all", "gzip")
    assert header(broken, "grpc-status") == str(StatusCode.INVALID_ARGUMENT.value)
    assert "gzip" in (header(broken, "grpc-message") or "")
    cut = compressed_call(client, gzip.compress(payload)[:-20], "gzip")
    assert header(cut, "grpc-status") == str(StatusCode.INVALID_ARGUMENT.value)
    flagged = compressed_call(client, b"x", "identity")  # flag 1 without an encoding
    assert header(flagged, "grpc-status") == str(StatusCode.INVALID_ARGUMENT.value)
    assert "grpc-encoding" in (header(flagged, "grpc-message") or "")
    unknown = compressed_call(client, b"x", "snappy")
    assert header(unknown, "grpc-status") == str(StatusCode.UNIMPLEMENTED.value)
    assert "'snappy'" in (header(unknown, "grpc-message") or "")
    assert "gzip" in (header(unknown, "grpc-accept-encoding") or "")
    assert client.call("/t.S/Echo", b"still fine")["data"] == grpc_frame(b"still fine")
    client.close()


def test_an_unknown_method_is_answered_before_the_client_ends_its_half(server: Running) -> None:
    """A streaming call (tritonclient's ``start_stream``: ``ModelStreamInfer``) keeps its half
    open while it waits for answers: it is refused on its headers, not left waiting."""
    client = Client(server.port)
    answer = client.unended("/t.S/Stream", grpc_frame(b"first"))  # more may follow
    assert header(answer, "grpc-status") == str(StatusCode.UNIMPLEMENTED.value)
    assert "No method /t.S/Stream" in (header(answer, "grpc-message") or "")
    assert client.call("/t.S/Echo", b"next")["data"] == grpc_frame(b"next")
    client.close()


def test_a_message_over_the_limit_is_refused_and_the_connection_lives_on(
    server: Running,
) -> None:
    client = Client(server.port)
    answer = client.unended("/t.S/Echo", grpc_frame(b"x" * (LIMIT + 10)))
    assert header(answer, "grpc-status") == str(StatusCode.RESOURCE_EXHAUSTED.value)
    assert "serving.max_body_bytes" in (header(answer, "grpc-message") or "")
    assert client.call("/t.S/Echo", b"next")["data"] == grpc_frame(b"next")
    client.close()


def test_answers_wait_for_the_clients_flow_control_window(server: Running) -> None:
    client = Client(server.port, window=1000)
    stream = client.h2.get_next_available_stream_id()
    client.h2.send_headers(stream, client.headers("/t.S/Big"))
    client.h2.send_data(stream, grpc_frame(b""), end_stream=True)
    client.flush()
    answer = client.answer(stream)  # acknowledges each DATA frame as it comes
    assert answer["data"] == grpc_frame(bytes(range(256)) * 400)
    sizes = [len(e.data) for e in client.events if isinstance(e, h2.events.DataReceived)]
    assert max(sizes) <= 16384 and len(sizes) > 100  # windows of 1,000 bytes at a time
    client.close()


def test_a_reset_stream_cancels_its_call(server: Running) -> None:
    client = Client(server.port)
    stream = client.h2.get_next_available_stream_id()
    client.h2.send_headers(stream, client.headers("/t.S/Hang"))
    client.h2.send_data(stream, grpc_frame(b""), end_stream=True)
    client.flush()
    assert server.started.wait(5)
    client.h2.reset_stream(stream)
    client.flush()
    assert server.cancelled.wait(5)
    assert client.call("/t.S/Echo", b"after")["data"] == grpc_frame(b"after")
    client.close()


def test_split_padded_and_prioritized_frames(server: Running) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    block = Encoder().encode(request_headers("/t.S/Echo"))
    first, rest = block[:5], block[5:]
    priority = b"\x00\x00\x00\x00\x10"
    body = grpc_frame(b"split")
    sock.sendall(
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + raw_frame(4, 0, 0, b"")
        + raw_frame(1, 0x20 | 0x08, 1, b"\x02" + priority + first + b"\x00\x00")  # PADDED
        + raw_frame(9, 0x04, 1, rest)  # CONTINUATION, END_HEADERS
        + raw_frame(6, 0, 0, b"12345678")  # PING
        + raw_frame(0, 0x08 | 0x01, 1, b"\x03" + body + b"\x00" * 3)  # padded DATA, END_STREAM
    )  # fmt: skip
    received = read_until(sock, b"split")
    assert raw_frame(6, 1, 0, b"12345678") in received  # the PING's ACK
    sock.close()


def test_blocks_on_finished_streams_keep_the_hpack_table_in_step(server: Running) -> None:
    """Every header block changes the client's HPACK table, so the server decodes each, even
    one for a stream it already answered; and nothing of a finished stream is kept."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    encoder = Encoder()  # indexes every field: later blocks point into the table
    first = encoder.encode([*request_headers("/t.S/Echo"), ("x-tag", "one")])
    late = encoder.encode([("x-tag", "two")])  # trailers on stream 1, after its answer
    second = encoder.encode([*request_headers("/t.S/Echo"), ("x-tag", "two")])
    sock.sendall(
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + raw_frame(4, 0, 0, b"")
        + raw_frame(1, 0x04, 1, first) + raw_frame(0, 0x01, 1, grpc_frame(b"a"))
    )  # fmt: skip
    read_until(sock, b"x-echo")
    sock.sendall(
        raw_frame(1, 0x04 | 0x01, 1, late)
        + raw_frame(1, 0x04, 3, second) + raw_frame(0, 0x01, 3, grpc_frame(b"b"))
    )  # fmt: skip
    frames = parse_frames(read_until(sock, b"two"))  # stream 3's x-echo trailer
    assert any(kind == 1 and stream == 3 for kind, _, stream, _ in frames)
    (connection,) = server.server.connections
    assert connection.streams == {} and connection._calls == {}
    sock.close()


def test_a_connection_holds_at_most_four_messages_in_flight(server: Running) -> None:
    """Every call under the message limit, but more held at once than a connection may: the
    connection is closed with ENHANCE_YOUR_CALM, and held bytes are let go as calls end."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    encoder = Encoder()
    frames = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + raw_frame(4, 0, 0, b"")
    for stream in (1, 3, 5, 7, 9):
        frames += raw_frame(1, 0x04, stream, encoder.encode(request_headers("/t.S/Echo")))
        frames += raw_frame(0, 0, stream, b"\x00" * LIMIT)  # no END_STREAM: held
    sock.sendall(frames)
    received = parse_frames(read_until(sock, None))
    goaway = [payload for kind, _, _, payload in received if kind == 7]
    assert goaway and int.from_bytes(goaway[0][4:8], "big") == 0xB
    sock.close()
    client = Client(server.port)  # whole calls, one after another, hold nothing after them
    for _ in range(6):
        assert client.call("/t.S/Echo", b"y" * (LIMIT - 10))["data"].endswith(b"y")
    (connection,) = server.server.connections
    assert connection.held == 0
    client.close()


def test_refused_and_reset_streams_leave_nothing_behind(server: Running) -> None:
    client = Client(server.port)
    for _ in range(20):
        stream = client.h2.get_next_available_stream_id()
        client.h2.send_headers(stream, client.headers("/t.S/Echo", **{"content-type": "a/b"}))
        client.h2.send_data(stream, b"x", end_stream=True)
        client.flush()
        client.answer(stream)
        client.call("/t.S/Nope")
    (connection,) = server.server.connections
    assert connection.streams == {} and connection._calls == {} and connection.blocked == {}
    client.close()


def test_protocol_violations_close_the_connection_with_goaway(server: Running) -> None:
    for garbage in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + raw_frame(0, 0, 0, b"data on 0"),
                    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + raw_frame(1, 0x04, 2, b"\x82"),
                    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + raw_frame(1, 0x00, 1, b"\x82")
                    + raw_frame(0, 0, 1, b"x")):  # fmt: skip
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(garbage)
        received = read_until(sock, None)
        assert b"\x00\x00\x08\x07" in received, garbage  # a GOAWAY frame
        sock.close()
    huge = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    frames = b"".join(raw_frame(9 if i else 1, 0, 1, b"\x00" * 8000) for i in range(4))
    huge.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frames)
    assert b"\x00\x00\x08\x07" in read_until(huge, None)
    huge.close()
    client = Client(server.port)  # the server itself is unharmed
    assert client.call("/t.S/Echo", b"ok")["data"] == grpc_frame(b"ok")
    client.close()


def test_a_graceful_stop_finishes_calls_in_flight(server: Running) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    block = Encoder().encode(request_headers("/t.S/Hang"))
    sock.sendall(
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + raw_frame(4, 0, 0, b"")
        + raw_frame(1, 0x04, 1, block) + raw_frame(0, 0x01, 1, grpc_frame(b""))
    )  # fmt: skip
    assert server.started.wait(5)
    stopping = asyncio.run_coroutine_threadsafe(server.server.stop(5.0), server.loop)
    server.loop.call_soon_threadsafe(server.release.set)
    frames = parse_frames(read_until(sock, None))  # the server closes the connection at the end
    stopping.result(10)
    kinds = [kind for kind, _, _, _ in frames]
    assert 7 in kinds and 3 not in kinds  # a GOAWAY, no stream reset
    data = b"".join(payload for kind, _, stream, payload in frames if kind == 0 and stream == 1)
    assert data == grpc_frame(b"released")
    assert kinds.index(7) < max(i for i, k in enumerate(kinds) if k == 1)  # answered after it
    sock.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2)


def parse_frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    frames = []
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        frames.append((data[3], data[4], int.from_bytes(data[5:9], "big"), data[9 : 9 + length]))
        data = data[9 + length :]
    return frames


def raw_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload
    )


def read_until(sock: socket.socket, needle: bytes | None) -> bytes:
    """Read until ``needle`` arrives or the server closes the connection."""
    data = b""
    while needle is None or needle not in data:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return data


def test_abort_error_carries_its_code() -> None:
    error = AbortError(StatusCode.INTERNAL, "boom")
    assert (error.code, error.message) == (StatusCode.INTERNAL, "boom")


def test_hpack_decoding_matches_the_hpack_package_across_blocks() -> None:
    """Blocks from hpack's encoder (Huffman or not, indexed, never-indexed, table size
    changes and evictions) decode as hpack's own decoder decodes them, block after block."""
    import random

    from hpack import Decoder, HeaderTuple, NeverIndexedHeaderTuple

    from modelyard.serving._hpack import HpackDecoder

    rng = random.Random(0)
    encoder, reference, ours = Encoder(), Decoder(), HpackDecoder()
    for block_number in range(300):
        if block_number % 50 == 49:
            encoder.header_table_size = rng.choice((0, 256, 4096))
        fields: list[Any] = [(":method", "POST"), (":path", f"/t.S/M{rng.randint(0, 5)}")]
        for _ in range(rng.randint(0, 6)):
            name = rng.choice(("x-a", "x-b", "grpc-timeout", "authorization", "x-é"))
            value = "".join(rng.choice("abcé%~ 09") for _ in range(rng.randint(0, 40)))
            kind = rng.choice((tuple, NeverIndexedHeaderTuple, HeaderTuple))
            fields.append(kind(name, value) if kind is not tuple else (name, value))
        block = encoder.encode(fields, huffman=rng.random() < 0.5)
        expected = [(str(k), str(v)) for k, v in reference.decode(block)]
        assert ours.decode(block) == expected, block_number


def test_hpack_decoding_refuses_bad_blocks() -> None:
    from modelyard.serving._hpack import HpackDecoder

    for bad in (
        b"\x80",
        b"\xff\xff\xff\xff\xff\xff\xff",
        b"\x00\x05ab",
        b"\xbf\x00",
        b"\x3f\xe2\x1f",
    ):
        with pytest.raises((ValueError, IndexError)):
            HpackDecoder().decode(bad)


def test_remembered_header_blocks_decode_as_the_table_stands_now() -> None:
    """A block decoded before is answered from memory only while the dynamic table is as it
    was: the same bytes naming dynamic entry 62 decode to whatever entry 62 holds now."""
    import random

    from hpack import Decoder, HeaderTuple, NeverIndexedHeaderTuple

    from modelyard.serving._hpack import HpackDecoder

    newest = b"\xbe"  # indexed field 62: the newest entry of the dynamic table
    add = b"\x40" + bytes((1,)) + b"x" + bytes((1,))  # literal with indexing, name "x"
    ours = HpackDecoder()
    ours.decode(add + b"1")
    assert ours.decode(newest) == [("x", "1")]
    assert ours.decode(newest) == [("x", "1")]  # answered from memory
    ours.decode(add + b"2")  # the table changes: entry 62 is now x: 2
    assert ours.decode(newest) == [("x", "2")]

    # a few header lists sent again and again, some added to the table, some never indexed,
    # with table size changes and evictions between: every block as hpack decodes it
    rng = random.Random(1)
    lists = [
        [(":method", "POST"), (":path", f"/s.S/M{i}"), HeaderTuple("x-key", f"v{i}"),
         NeverIndexedHeaderTuple("authorization", f"Bearer {i}")]
        for i in range(4)
    ]  # fmt: skip
    encoder, reference, ours = Encoder(), Decoder(), HpackDecoder()
    for block_number in range(400):
        if block_number % 97 == 96:
            encoder.header_table_size = rng.choice((0, 64, 4096))
        block = encoder.encode(rng.choice(lists), huffman=rng.random() < 0.5)
        expected = [(str(k), str(v)) for k, v in reference.decode(block)]
        assert ours.decode(block) == expected, block_number


def test_calls_sent_together_past_the_decode_limit_are_all_answered(
    server: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One write with more calls than a connection decodes ahead of their answers: the rest
    wait in the buffer and are decoded as answers leave (not when the wait for slow calls
    ends: that is put out of reach), each answered on its own stream."""
    monkeypatch.setattr(http2, "AHEAD_WAIT_S", 600.0)
    client = Client(server.port)
    streams = {}
    for i in range(DECODE_AHEAD * 2 + 5):
        stream = client.h2.get_next_available_stream_id()
        client.h2.send_headers(stream, client.headers("/t.S/Echo"))
        client.h2.send_data(stream, grpc_frame(b"call %d" % i), end_stream=True)
        streams[stream] = grpc_frame(b"call %d" % i)
    client.flush()  # all of them in one go
    assert client.answers(list(streams)) == streams
    client.close()


def test_slow_calls_past_the_decode_limit_all_start(server: Running) -> None:
    """Calls that stay running (a slow model) lift the limit: every call the client sent runs
    before any is answered, instead of waiting for the first ones' answers."""
    client = Client(server.port)
    count = DECODE_AHEAD + 6
    streams = []
    for _ in range(count):
        stream = client.h2.get_next_available_stream_id()
        client.h2.send_headers(stream, client.headers("/t.S/Hang"))
        client.h2.send_data(stream, grpc_frame(b""), end_stream=True)
        streams.append(stream)
    client.flush()
    deadline = time.monotonic() + 5
    while server.hanging < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.hanging == count  # none waited for another's answer
    server.loop.call_soon_threadsafe(server.release.set)
    assert client.answers(streams) == dict.fromkeys(streams, grpc_frame(b"released"))
    client.close()
