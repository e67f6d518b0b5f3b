"""One socket write per HTTP answer.

uvicorn writes an answer's status line and headers when the application sends
``http.response.start`` and the body when it sends ``http.response.body``: two ``send`` system
calls per answer. On a loopback or a pod network each of them also runs the receiving side's TCP
work, and a profile of ``yard serve`` under load (py-spy, ``--gil``, 1-row requests at c=32) put
30% of the event loop's time in those two writes. The protocol below hands uvicorn a transport
that gathers what is written in one turn of the event loop and writes it once at the end of that
turn, so that the head and the body of an answer leave in one call; everything else (reading,
flow control, closing, keep-alive) is uvicorn's own.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        kept = self._kept
        waiting = sum(len(data) for data in kept) if kept else 0
        return self._transport.get_write_buffer_size() + waiting

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GatheringHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a :class:`GatheringTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        gathering = GatheringTransport(transport, self.loop)
        super().connection_made(gathering)  # type: ignore[arg-type]
