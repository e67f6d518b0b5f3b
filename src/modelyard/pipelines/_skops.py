"""The same skops bytes for the same model, in every process.

skops names the arrays of an archive after ``id()`` of the objects and stamps each zip entry with
the current time, so saving one model twice gives two different files (and two sha256). This
rewrites an archive into a canonical one: every ``__id__`` (and each ``<id>.npy`` file name) is
renumbered in the order it first appears in ``schema.json``, entries are written in a fixed
order with a fixed timestamp. Equal ids stay equal, so shared objects stay shared when loaded.
Anything unexpected returns the archive unchanged (still correct, just not reproducible).
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

__all__ = ["canonical_skops"]

_SCHEMA = "schema.json"
_EPOCH = (1980, 1, 1, 0, 0, 0)


def canonical_skops(data: bytes) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = {info.filename: info for info in archive.infolist()}
            schema = json.loads(archive.read(_SCHEMA))
            numbers: dict[int, int] = {}
            renamed = _renumber(schema, numbers)
            files: dict[str, bytes] = {}
            for name in infos:
                if name == _SCHEMA:
                    continue
                stem, dot, suffix = name.partition(".")
                if not stem.isdigit() or int(stem) not in numbers:
                    return data
                files[f"{numbers[int(stem)]}{dot}{suffix}"] = archive.read(name)
            compression = infos[_SCHEMA].compress_type
    except (zipfile.BadZipFile, KeyError, ValueError):
        return data
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in sorted(files, key=_order):
            archive.writestr(_entry(name, compression), files[name])
        archive.writestr(_entry(_SCHEMA, compression), json.dumps(renamed, indent=2))
    return out.getvalue()


def _renumber(node: Any, numbers: dict[int, int]) -> Any:
    if isinstance(node, list):
        return [_renumber(item, numbers) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "__id__" and isinstance(value, int) and not isinstance(value, bool):
            out[key] = numbers.setdefault(value, len(numbers) + 1)
        elif key == "file" and isinstance(value, str) and value.partition(".")[0].isdigit():
            stem, dot, suffix = value.partition(".")
            out[key] = f"{numbers.setdefault(int(stem), len(numbers) + 1)}{dot}{suffix}"
        else:
            out[key] = _renumber(value, numbers)
    return out


def _order(name: str) -> tuple[int, str]:
    stem = name.partition(".")[0]
    return (int(stem) if stem.isdigit() else 0, name)


def _entry(name: str, compression: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = compression
    info.external_attr = 0o644 << 16
    return info
