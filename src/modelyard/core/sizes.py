"""A number of bytes written for people, in binary units named as such (``KiB`` is 1024 bytes,
never ``KB``)."""

from __future__ import annotations

__all__ = ["format_size"]

_UNITS = ("KiB", "MiB", "GiB", "TiB")


def format_size(size_bytes: int) -> str:
    """``size_bytes`` in the largest binary unit it holds one of: ``812 B``, ``14.2 KiB``,
    ``3.1 MiB``, ``1.5 GiB`` (whole bytes; one decimal place above)."""
    if size_bytes < 1024:
        return f"{size_bytes} B"
    amount = float(size_bytes)
    for unit in _UNITS:
        amount /= 1024
        if round(amount, 1) < 1024 or unit == _UNITS[-1]:
            break
    return f"{amount:.1f} {unit}"
