"""Compressed bodies and messages, inflated within a size limit: REST's ``Content-Encoding``
(``serving._asgi``) and gRPC's ``grpc-encoding`` (``serving.http2``) share it."""

from __future__ import annotations

import zlib

#: The encodings ``inflate`` takes (``x-gzip`` is HTTP's old name of gzip).
ENCODINGS = frozenset({"gzip", "x-gzip", "deflate"})


class TooLargeError(ValueError):
    """The data inflates past the limit (however small it came)."""


class CorruptError(ValueError):
    """The data is not what its encoding says, or is cut short."""


def inflate(data: bytes, encoding: str, limit: int) -> bytes:
    """``data`` as ``encoding`` (one of ``ENCODINGS``) inflated, at most ``limit`` bytes: zlib
    stops at ``limit + 1`` bytes, so a small body that would inflate to gigabytes costs no more
    memory than the limit. ``deflate`` is zlib's format, or raw deflate, which some clients
    send under that name."""
    # 47: a gzip or zlib header, told apart by zlib; -15: raw deflate
    for wbits in (47,) if encoding != "deflate" else (47, -15):
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(data, limit + 1)
        except zlib.error:
            continue
        if len(out) > limit or inflater.unconsumed_tail:
            raise TooLargeError(f"inflates past {limit} bytes")
        if not inflater.eof:
            break  # cut short
        return out
    raise CorruptError(f"not valid {encoding} data")
