"""Content-addressed artifact store on any fsspec filesystem.

A blob lives at ``<root>/sha256/<first two hex digits>/<sha256>``. Writes go to a temporary name
and are renamed into place (on object stores one PUT, which is atomic), so a reader never sees half
a file. Reads return bytes and check them against the address; the caller hands those same bytes to
the flavor.

Object stores. Nothing here lists folders, and the filesystem is opened without fsspec's listings
cache, so a blob another process wrote or removed is seen as it is now. No folder is created on an
object store: s3fs's ``makedirs`` would create a missing bucket, so a typo in the root would
silently make a new one. Every backend failure (OSError, and botocore's errors, which s3fs raises
untranslated when the endpoint cannot be reached) becomes a one-line ``StorageError`` naming the
root and ``MODELYARD_ARTIFACT_ROOT``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import uuid
from typing import Any

from modelyard.core.remote import check_url, url_to_fs
from modelyard.errors import IntegrityError, StorageError, first_line


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    """Blobs by sha256 under ``root`` (a folder or an fsspec URL such as ``s3://bucket/prefix``)."""

    def __init__(self, root: str) -> None:
        check_url(root, what="artifact root", variable="MODELYARD_ARTIFACT_ROOT")
        self.root = root
        try:
            fs, path = url_to_fs(root, use_listings_cache=False)
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

    def url_of(self, sha256: str) -> str:
        """Where the blob lives, as a user would type it (``s3://bucket/...`` or a local path)."""
        path = self.path_of(sha256)
        return path if self._local else str(self._fs.unstrip_protocol(path))

    def exists(self, sha256: str) -> bool:
        try:
            return bool(self._fs.exists(self.path_of(sha256)))
        except _backend_errors() as exc:
            raise self._failure("read", exc) from exc

    def put(self, data: bytes) -> tuple[str, bool]:
        """Store ``data``; returns its sha256 and whether this call created the blob."""
        digest = sha256_hex(data)
        target = self.path_of(digest)
        try:
            if self._fs.exists(target):
                return digest, False
            if self._local:
                self._fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
                tmp = f"{target}.{uuid.uuid4().hex}.tmp"
                with open(tmp, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, target)
            else:
                self._fs.pipe_file(target, data)
        except _backend_errors() as exc:
            raise self._failure("write to", exc) from exc
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
            if _missing_bucket(exc):
                raise self._failure("read", exc) from exc
            raise IntegrityError(
                f"{label} is missing from the artifact store (expected {self.url_of(sha256)}); "
                "nothing was loaded: restore the file or register the model again."
            ) from exc
        except _backend_errors() as exc:
            raise self._failure(f"read {label} from", exc) from exc
        actual = sha256_hex(data)
        if actual != sha256:
            raise IntegrityError(
                f"{label} was altered: its sha256 is {actual[:12]}..., recorded "
                f"{sha256[:12]}...; nothing was loaded: restore the file or register again."
            )
        return data

    def delete(self, sha256: str) -> None:
        try:
            self._fs.rm_file(self.path_of(sha256))
        except FileNotFoundError as exc:
            if _missing_bucket(exc):
                raise self._failure("delete from", exc) from exc
        except _backend_errors() as exc:
            raise self._failure("delete from", exc) from exc

    def _failure(self, action: str, exc: BaseException) -> StorageError:
        """The one-line error for a backend failure while doing ``action`` (``write to``...)."""
        if _missing_bucket(exc):
            bucket = self._base.split("/", 1)[0]
            return StorageError(
                f"The bucket {bucket!r} of the artifact root {self.root} does not exist; create "
                "it or fix MODELYARD_ARTIFACT_ROOT."
            )
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else first_line(exc)
        return StorageError(
            f"Cannot {action} the artifact root {self.root} ({reason}); check "
            "MODELYARD_ARTIFACT_ROOT, its permissions and that the store is reachable."
        )


def _backend_errors() -> tuple[type[BaseException], ...]:
    """What a filesystem raises when storage fails: OSError, and botocore's own errors (s3fs lets
    connection failures such as ``EndpointConnectionError`` through untranslated). botocore is
    only looked up when something already imported it: a local root never loads it."""
    errors: tuple[type[BaseException], ...] = (OSError,)
    boto = sys.modules.get("botocore.exceptions")
    if boto is not None:
        errors += (boto.BotoCoreError, boto.ClientError)
    return errors


def _missing_bucket(exc: BaseException) -> bool:
    """Whether S3 (or an S3-compatible store) answered that the bucket does not exist; s3fs turns
    that answer into a FileNotFoundError caused by botocore's ClientError."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code") == "NoSuchBucket":
            return True
        seen = seen.__cause__
    return False
