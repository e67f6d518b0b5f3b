"""ASGI plumbing of the HTTP edge: the request being answered, its headers, and answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = b"application/json"
#: The content type of an answer with Triton's binary tensors after its JSON part.
OCTET_STREAM = b"application/octet-stream"
#: The largest body the short path (``_wire.ServingProtocol``) takes; a larger one goes down the
#: ASGI path as it streams.
FAST_BODY_BYTES = 64 * 1024


@dataclass(slots=True)
class Call:
    """One HTTP request being answered."""

    receive: Receive
    send: Send
    headers: dict[str, str]
    request_id: str
    started: float
    #: The route label of the metrics (``v2_infer``...), ``other`` until the path is known.
    route: str = "other"
    #: The model label of the metrics: a served name once the token passed, else ``""``.
    model: str = ""
    #: ``perf_counter`` when the body was read (``ModelServer._body``).
    received: float = 0.0


class HttpError(Exception):
    """An answer decided by the HTTP layer itself (405, 413); ``close`` ends the connection
    (the rest of a refused body is not read)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        close: bool = False,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.close = close
        self.headers = headers or []


def too_large(limit: int) -> HttpError:
    return HttpError(
        413,
        f"The request body is larger than this server's limit of {limit} bytes "
        "(serving.max_body_bytes); send fewer rows per request.",
        close=True,
    )


def decoded_body(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` sent with ``Content-Encoding: encoding``, decompressed: ``gzip`` and
    ``deflate`` (zlib's format, or raw deflate) as Triton's clients send them, at most
    ``limit`` bytes once decompressed (413 past it, however small the compressed body)."""
    from modelyard.serving._inflate import ENCODINGS, CorruptError, TooLargeError, inflate

    name = encoding.strip().lower()
    if name in ("", "identity"):
        return body
    if name not in ENCODINGS:
        raise HttpError(
            415,
            f"Content-Encoding {encoding!r} is not supported; send the body uncompressed or "
            "with gzip or deflate.",
        )
    try:
        return inflate(body, name, limit)
    except TooLargeError:
        raise too_large(limit) from None
    except CorruptError:
        raise HttpError(
            400, f"The request body is not valid {name} data (Content-Encoding: {encoding})."
        ) from None


def expect(method: str, *allowed: str) -> None:
    """Refuse a method a route does not take with 405 and the ``Allow`` header RFC 9110 asks
    for; ``HEAD`` goes wherever ``GET`` does (uvicorn sends the head without the body)."""
    readable = "GET" in allowed
    if method in allowed or (method == "HEAD" and readable):
        return
    methods = [*allowed, "HEAD"] if readable else list(allowed)
    raise HttpError(
        405,
        f"Method {method} is not allowed here; use {' or '.join(allowed)}.",
        headers=[(b"allow", ", ".join(methods).encode())],
    )


def read_headers(scope: Scope, extra: set[bytes] | None = None) -> dict[str, str]:
    out = {}
    for key, value in scope["headers"]:
        if key in WANTED_HEADERS or (extra and key in extra):
            out[key.decode()] = value.decode("latin-1")
    return out


WANTED_HEADERS = {
    b"x-request-id", b"authorization", b"content-type", b"content-length",
    b"inference-header-content-length", b"content-encoding",
}  # fmt: skip


async def respond(
    send: Send,
    status: int,
    body: bytes,
    request_id: str,
    *,
    content_type: bytes = JSON,
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
