"""HPACK (RFC 7541) for the gRPC door's HTTP/2 (``serving.http2``): decoding header blocks with
a connection's dynamic table, and the two encodings its answers use (integers, and literals that
add nothing to the client's table). Huffman strings are decoded with ``hpack``'s table."""

from __future__ import annotations

from collections import deque

#: The largest header list a connection takes (SETTINGS_MAX_HEADER_LIST_SIZE, as announced).
MAX_HEADER_LIST = 16 * 1024


# -- decoding --------------------------------------------------------------------------------------

#: The header blocks a connection remembers decoded (``HpackDecoder``), and the largest kept.
_SEEN_BLOCKS = 64
_SEEN_BYTES = 4096


class HpackDecoder:
    """HPACK (RFC 7541) decoding with the connection's dynamic table: Huffman strings through
    ``hpack``'s table, the rest here. ``hpack``'s own decoder took about an eighth of the
    loop's time per call in a profile; this one does the same work in fewer Python steps."""

    def __init__(self, table_size: int = 4096) -> None:
        self.limit = table_size  # what this server allows (SETTINGS_HEADER_TABLE_SIZE)
        self.max_size = table_size
        self.size = 0
        self.dynamic: deque[tuple[str, str, int]] = deque()
        #: Blocks decoded since the dynamic table last changed, and their headers. A client
        #: sends the same block for every call once its headers are in the table (or are
        #: literals it does not index, as the Triton client's and h2load's custom headers are):
        #: py-spy put 14% of the gRPC door's loop time in decoding them again.
        self._seen: dict[bytes, tuple[tuple[str, str], ...]] = {}

    def decode(self, data: bytes) -> list[tuple[str, str]]:
        seen = self._seen.get(data)
        if seen is not None:
            return list(seen)
        table = self.dynamic.copy() if self.dynamic else None
        out = self._decode(data)
        if self._unchanged(table) and len(data) <= _SEEN_BYTES:
            if len(self._seen) >= _SEEN_BLOCKS:
                self._seen.clear()
            self._seen[data] = tuple(out)
        return out

    def _unchanged(self, before: deque[tuple[str, str, int]] | None) -> bool:
        """Whether the dynamic table is as it was (``None``: it was empty); a changed table
        also forgets the blocks decoded with the old one."""
        same = not self.dynamic if before is None else self.dynamic == before
        if not same:
            self._seen.clear()
        return same

    def _decode(self, data: bytes) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        i, end, total = 0, len(data), 0
        while i < end:
            first = data[i]
            if first & 0x80:  # indexed field
                index, i = _read_int(data, i, 7)
                name, value = self._entry(index)
            elif first & 0x40 or not first & 0x20:  # a literal, indexed (0x40) or not
                prefix = 6 if first & 0x40 else 4
                index, i = _read_int(data, i, prefix)
                if index:
                    name = self._entry(index)[0]
                else:
                    name, i = _read_str(data, i)
                value, i = _read_str(data, i)
                if first & 0x40:
                    self._add(name, value)
            else:  # a dynamic table size update
                size, i = _read_int(data, i, 5)
                if size > self.limit:
                    raise ValueError("a table size update past SETTINGS_HEADER_TABLE_SIZE")
                self.max_size = size
                self._evict(0)
                continue
            total += len(name) + len(value) + 32
            if total > MAX_HEADER_LIST:
                raise ValueError("a header list over MAX_HEADER_LIST_SIZE")
            out.append((name, value))
        return out

    def _entry(self, index: int) -> tuple[str, str]:
        if 0 < index <= len(_STATIC):
            return _STATIC[index - 1]
        position = index - len(_STATIC) - 1
        if index <= 0 or position >= len(self.dynamic):
            raise ValueError(f"header index {index} is not in the table")
        name, value, _ = self.dynamic[position]
        return name, value

    def _add(self, name: str, value: str) -> None:
        size = len(name.encode()) + len(value.encode()) + 32
        self._evict(size)
        if size <= self.max_size:
            self.dynamic.appendleft((name, value, size))
            self.size += size

    def _evict(self, room: int) -> None:
        while self.dynamic and self.size + room > self.max_size:
            self.size -= self.dynamic.pop()[2]


def _read_int(data: bytes, i: int, prefix: int) -> tuple[int, int]:
    mask = (1 << prefix) - 1
    value = data[i] & mask
    i += 1
    if value < mask:
        return value, i
    shift = 0
    while True:
        if shift > 28:
            raise ValueError("an HPACK integer too large")
        byte = data[i]
        i += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def _read_str(data: bytes, i: int) -> tuple[str, int]:
    huffman = data[i] & 0x80
    length, i = _read_int(data, i, 7)
    end = i + length
    if end > len(data):
        raise ValueError("an HPACK string past the end of its block")
    raw = data[i:end]
    if huffman:
        from hpack.huffman_table import decode_huffman

        try:
            raw = decode_huffman(raw)
        except Exception as exc:  # hpack's own error type
            raise ValueError(f"bad Huffman string: {exc}") from None
    return raw.decode("utf-8", "replace"), end


def _static_table() -> tuple[tuple[str, str], ...]:
    from hpack.table import HeaderTable

    return tuple((n.decode(), v.decode()) for n, v in HeaderTable.STATIC_TABLE)


_STATIC = _static_table()


# -- encoding --------------------------------------------------------------------------------------


def integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """An HPACK integer (RFC 7541, 5.1)."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(name: bytes, value: bytes) -> bytes:
    """A header field as a literal without indexing, new name, no Huffman coding: the answer
    adds nothing to the client's HPACK table."""
    return b"\x00" + integer(len(name), 7) + name + integer(len(value), 7) + value
