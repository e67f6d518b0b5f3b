"""Reading a prediction log kept on an object store, through a local mirror of its files.

DuckDB reads ``s3://`` only through its httpfs extension, which it downloads on first use (it
cannot here, offline, nor in an air-gapped cluster) and which knows S3 and GCS but not every
fsspec store. The log's files never change once written (each has a new name), so a mirror that
fetches the files it lacks and drops those the store no longer has is exact, and each read after
the first costs one listing. Every reader (``yard monitor``, ``yard labels``, the server's
monitoring loop) calls ``readable_root`` and reads the folder it returns as it reads a local log;
a server's label check calls ``newest_hour_root``, which brings only the newest hour up to date.

Mirror: ``<home>/cache/predictions/<slug of the root>/``, the store's layout below it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from modelyard.core.remote import check_url, url_to_fs
from modelyard.errors import ModelyardError, StorageError, first_line
from modelyard.monitoring.predlog import is_remote, root_slug
from modelyard.settings import Settings

_VARIABLE = "MODELYARD_MONITORING__LOG_ROOT"


def readable_root(settings: Settings, name: str) -> str:
    """A local folder holding deployment (or model) ``name``'s log and labels as they are on
    ``settings``' log root now: the root itself when it is local."""
    root = settings.resolved_log_root
    store = _store(settings)
    if store is None:
        return root
    fs, base, local = store
    for prefix in (
        f"deployment={name}",
        f"labels/deployment={name}",
        f"outcomes/deployment={name}",
    ):
        _sync(fs, f"{base}/{prefix}", local / prefix, root)
    return str(local)


def newest_hour_root(settings: Settings, name: str) -> str:
    """As ``readable_root``, but only the newest hour of ``name``'s log is brought up to date
    in the mirror: what the label check reads (the version that logged last), at the cost of
    one listing and that hour's new files, however long the log is."""
    root = settings.resolved_log_root
    store = _store(settings)
    if store is None:
        return root
    fs, base, local = store
    prefix = f"deployment={name}"
    try:
        listed = fs.ls(f"{base}/{prefix}", detail=False)
    except FileNotFoundError:
        listed = []
    except Exception as exc:
        raise _unreadable("list", root, exc) from exc
    folders = (str(path).rstrip("/").rsplit("/", 1)[-1] for path in listed)
    hours = sorted(f for f in folders if f.startswith("hour="))
    if hours:
        _sync(fs, f"{base}/{prefix}/{hours[-1]}", local / prefix / hours[-1], root)
    return str(local)


def check_log_root(root: str) -> None:
    """Fail, in one line, when ``root`` is on an object store whose bucket does not exist or
    cannot be reached (a server checks before it starts: its uploads would fail forever)."""
    check_url(root, what="prediction log root", variable=_VARIABLE)
    if not is_remote(root):
        return
    fs, base = _open(root)
    bucket = base.split("/", 1)[0]
    try:
        found = fs.exists(bucket)
    except Exception as exc:
        raise StorageError(
            f"Cannot reach the prediction log root {root} ({first_line(exc)}); check "
            "MODELYARD_MONITORING__LOG_ROOT, the store's endpoint and its credentials."
        ) from exc
    if not found:
        raise StorageError(
            f"The bucket {bucket!r} of the prediction log root {root} does not exist; create it "
            "or fix MODELYARD_MONITORING__LOG_ROOT."
        )


@contextmanager
def store_named(settings: Settings) -> Iterator[None]:
    """Errors raised inside name the store's URL where they would name the local mirror (what
    a user set and can look at)."""
    try:
        yield
    except ModelyardError as exc:
        root = settings.resolved_log_root
        local = str(mirror_folder(settings))
        if not is_remote(root) or local not in str(exc):
            raise
        raise type(exc)(str(exc).replace(local, root)) from exc


def mirror_folder(settings: Settings) -> Path:
    return settings.home_dir / "cache" / "predictions" / root_slug(settings.resolved_log_root)


def publish(settings: Settings, path: str | Path) -> None:
    """Upload ``path``, a new file in ``readable_root``'s folder, to the same place on the
    store; on failure the local file is removed too (a labels ingest is whole or absent)."""
    root = settings.resolved_log_root
    if not is_remote(root):
        return
    relative = Path(path).relative_to(mirror_folder(settings)).as_posix()
    fs, base = _open(root)
    try:
        fs.put_file(str(path), f"{base}/{relative}")
    except Exception as exc:  # the store's errors are not all OSError
        Path(path).unlink(missing_ok=True)
        raise StorageError(
            f"Cannot write {relative} to the prediction log at {root} ({first_line(exc)}); nothing "
            "was stored: check MODELYARD_MONITORING__LOG_ROOT and the store's credentials."
        ) from exc


def _store(settings: Settings) -> tuple[Any, str, Path] | None:
    """The log root's filesystem, its path there and its local mirror; ``None`` for a local
    root (a malformed URL is refused either way)."""
    root = settings.resolved_log_root
    check_url(root, what="prediction log root", variable=_VARIABLE)
    if not is_remote(root):
        return None
    fs, base = _open(root)
    return fs, base, mirror_folder(settings)


def _open(root: str) -> tuple[Any, str]:
    try:
        fs, base = url_to_fs(root)
    except (ImportError, ValueError) as exc:
        raise StorageError(
            f"Cannot open the prediction log root {root!r} ({exc}); check "
            "MODELYARD_MONITORING__LOG_ROOT (for s3:// install 'modelyard[s3]')."
        ) from exc
    fs.invalidate_cache()  # another process wrote since this one last listed
    return fs, str(base).rstrip("/")


def _sync(fs: Any, remote: str, local: Path, root: str) -> None:
    try:
        found = [p for p in fs.find(remote) if p.endswith(".parquet")]
    except FileNotFoundError:
        found = []
    except Exception as exc:
        raise _unreadable("list", root, exc) from exc
    wanted = {local / p[len(remote) + 1 :]: p for p in found}
    if local.is_dir():
        for path in local.rglob("*.parquet"):
            if path not in wanted:
                path.unlink(missing_ok=True)  # gone from the store (retention)
    missing = [(path, source) for path, source in wanted.items() if not path.exists()]
    if not missing:
        return
    temporaries = []
    for path, _ in missing:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporaries.append(path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp"))
    try:
        fs.get([source for _, source in missing], [str(t) for t in temporaries])
        for (path, _), temporary in zip(missing, temporaries, strict=True):
            os.replace(temporary, path)
    except Exception as exc:
        raise _unreadable("read", root, exc) from exc
    finally:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)


def _unreadable(action: str, root: str, exc: BaseException) -> StorageError:
    return StorageError(
        f"Cannot {action} the prediction log at {root} ({first_line(exc)}); check "
        "MODELYARD_MONITORING__LOG_ROOT and the store's credentials."
    )
