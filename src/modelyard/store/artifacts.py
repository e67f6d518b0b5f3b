"""Content-addressed artifact store on any fsspec filesystem.

A blob lives at ``<root>/sha256/<first two hex digits>/<sha256>``. Writes go to a temporary name
and are renamed into place, so a reader never sees half a file. Reads return bytes and check them
against the address; the caller hands those same bytes to the flavor.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from typing import Any

from modelyard.errors import IntegrityError, StorageError


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    """Blobs by sha256 under ``root`` (a folder or an fsspec URL such as ``s3://bucket/prefix``)."""

    def __init__(self, root: str) -> None:
        import fsspec

        self.root = root
        try:
            fs, path = fsspec.core.url_to_fs(root)
        except (ImportError, ValueError) as exc:
            raise StorageError(
                f"Cannot open the artifact root {root!r} ({exc}); check MODELYARD_ARTIFACT_ROOT "
                "(for s3:// install 'modelyard[s3]')."
            ) from exc
        self._fs: Any = fs
        self._base = path.rstrip("/")
        self._local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))

    def path_of(self, sha256: str) -> str:
        return f"{self._base}/sha256/{sha256[:2]}/{sha256}"

    def exists(self, sha256: str) -> bool:
        return bool(self._fs.exists(self.path_of(sha256)))

    def put(self, data: bytes) -> tuple[str, bool]:
        """Store ``data``; returns its sha256 and whether this call created the blob."""
        digest = sha256_hex(data)
        target = self.path_of(digest)
        try:
            if self._fs.exists(target):
                return digest, False
            self._fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            if self._local:
                tmp = f"{target}.{uuid.uuid4().hex}.tmp"
                with open(tmp, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, target)
            else:
                self._fs.pipe_file(target, data)
        except OSError as exc:
            raise StorageError(
                f"Cannot write to the artifact root {self.root} ({exc.strerror or exc}); "
                "check MODELYARD_ARTIFACT_ROOT and its permissions."
            ) from exc
        return digest, True

    def get(self, sha256: str, *, label: str) -> bytes:
        """The blob's bytes after checking them against ``sha256``; ``label`` names it in errors."""
        path = self.path_of(sha256)
        try:
            if self._local:
                with open(path, "rb") as handle:
                    data = handle.read()
            else:
                data = self._fs.cat_file(path)
        except FileNotFoundError as exc:
            raise IntegrityError(
                f"{label} is missing from the artifact store (expected {path}); nothing was "
                "loaded: restore the file or register the model again."
            ) from exc
        except OSError as exc:
            raise StorageError(
                f"Cannot read {label} from the artifact root {self.root} ({exc}); "
                "check MODELYARD_ARTIFACT_ROOT."
            ) from exc
        actual = sha256_hex(data)
        if actual != sha256:
            raise IntegrityError(
                f"{label} was altered: its sha256 is {actual[:12]}..., recorded "
                f"{sha256[:12]}...; nothing was loaded: restore the file or register again."
            )
        return data

    def delete(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._fs.rm_file(self.path_of(sha256))
