"""A bundle: the served versions of one target as a registry of their own, in one folder.

```
bundle/
  manifest.json           format, target, versions, and every other file with its sha256
  modelyard.db            SQLite at the schema head: only the served versions, the aliases that
                          point at them, their runs, and the deployment (when the target is one)
  artifacts/sha256/ab/... the versions' files, content-addressed as in any artifact root
```

It is a registry in the layout modelyard already reads, so ``yard serve`` needs nothing new to
serve it: the artifacts are read in place (read-only is fine), and only the small database is
copied to a writable place first, because SQLite writes beside its file (WAL) and the server
records rollout statistics. Version numbers, aliases and the deployment keep their names, so a
client calls the container exactly as it called the registry's server.

Every blob is checked against its sha256 while copied out of the registry (``yard build
--bake``), and every file against the manifest when the container starts (``open_bundle``).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import msgspec

from modelyard.core.remote import url_to_fs
from modelyard.deploy.target import Target
from modelyard.errors import IntegrityError, InvalidInputError, StorageError

if TYPE_CHECKING:
    from modelyard.registry import Registry

MANIFEST = "manifest.json"
DATABASE = "modelyard.db"
ARTIFACTS = "artifacts"
FORMAT = "modelyard-bundle/1"
_CHUNK_BYTES = 1 << 20


class BundleFile(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    sha256: str
    size_bytes: int


class BundleTarget(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    ref: str | None
    deployment: str | None


class BundleManifest(msgspec.Struct, frozen=True, kw_only=True):
    format: str
    created_at: datetime
    modelyard: str
    target: BundleTarget
    versions: tuple[str, ...]
    files: tuple[BundleFile, ...]

    @property
    def size_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)


def write_bundle(registry: Registry, target: Target, dest: Path) -> BundleManifest:
    """Write ``target``'s bundle into ``dest`` (a new folder); every blob is verified on read."""
    from importlib import metadata

    from modelyard.store.artifacts import ArtifactStore

    dest.mkdir()
    store = ArtifactStore(str(dest / ARTIFACTS))
    for version in target.versions:
        for f in version.files:
            data = registry.artifacts.get(f.sha256, label=f"File {f.name!r} of {version.ref}")
            store.put(data)
    _write_database(registry, target, dest / DATABASE)
    files = tuple(
        BundleFile(
            path=rel, sha256=_file_sha256(dest / rel), size_bytes=(dest / rel).stat().st_size
        )
        for rel in sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    )
    manifest = BundleManifest(
        format=FORMAT,
        created_at=datetime.now(UTC),
        modelyard=metadata.version("modelyard"),
        target=BundleTarget(name=target.name, ref=target.ref, deployment=target.deployment),
        versions=tuple(v.ref for v in target.versions),
        files=files,
    )
    (dest / MANIFEST).write_bytes(msgspec.json.format(msgspec.json.encode(manifest)) + b"\n")
    return manifest


def read_manifest(root: Path) -> BundleManifest:
    """The manifest of the bundle at ``root``, its paths checked to stay inside the bundle."""
    path = root / MANIFEST
    if not path.is_file():
        raise InvalidInputError(
            f"{str(root)!r} is not a modelyard bundle (it has no {MANIFEST}); make one with "
            "'yard build REF -o DIR --bake' (the bundle is DIR/bundle)."
        )
    try:
        manifest = msgspec.json.decode(path.read_bytes(), type=BundleManifest)
    except msgspec.ValidationError as exc:
        raise IntegrityError(
            f"The bundle manifest {path} is malformed ({exc}); build the bundle again."
        ) from None
    if manifest.format != FORMAT:
        raise IntegrityError(
            f"The bundle at {root} has format {manifest.format!r}; this modelyard reads "
            f"{FORMAT!r}: build the bundle again with this version."
        )
    for f in manifest.files:
        pure = PurePosixPath(f.path)
        if pure.is_absolute() or ".." in pure.parts or f.path == MANIFEST:
            raise IntegrityError(
                f"The bundle manifest {path} names {f.path!r}, outside the bundle; build the "
                "bundle again."
            )
    if DATABASE not in {f.path for f in manifest.files}:
        raise IntegrityError(f"The bundle manifest {path} lists no {DATABASE}; build it again.")
    return manifest


def verify_bundle(root: Path) -> BundleManifest:
    """Re-hash every file the manifest lists; the first missing or altered one is the error."""
    manifest = read_manifest(root)
    for f in manifest.files:
        _check(root / f.path, f, root)
    return manifest


def open_bundle(root: Path, workdir: Path) -> tuple[BundleManifest, str, str]:
    """Verify the bundle at ``root`` and copy its database into ``workdir`` (writable); returns
    the manifest, the database URL of that copy and the artifact root (the bundle's, read in
    place)."""
    manifest = verify_bundle(root)
    db_copy = workdir / DATABASE
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        for stale in _sqlite_files(db_copy):
            stale.unlink(missing_ok=True)
        shutil.copyfile(root / DATABASE, db_copy)
    except OSError as exc:
        raise StorageError(
            f"Cannot copy the bundle's database to {workdir} ({exc.strerror or exc}); the "
            "container needs a writable /tmp (HOME): mount an emptyDir there."
        ) from exc
    entry = next(f for f in manifest.files if f.path == DATABASE)
    _check(db_copy, entry, root)  # what is opened is what was verified
    return manifest, f"sqlite:///{db_copy}", str(root / ARTIFACTS)


def fetch_bundle(url: str, dest: Path) -> Path:
    """Copy a bundle folder from an fsspec URL (``s3://...``, ``gs://...``) into ``dest``."""
    try:
        fs, path = url_to_fs(url)
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        base = path.rstrip("/")
        for remote in fs.find(base):
            rel = remote[len(base) :].lstrip("/")
            local = dest / rel
            local.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(remote, str(local))
    except (ImportError, ValueError, OSError) as exc:
        raise StorageError(
            f"Cannot copy the bundle from {url} ({exc}); check the URL and its credentials "
            "(s3:// needs 'modelyard[s3]')."
        ) from exc
    return dest


def _write_database(registry: Registry, target: Target, path: Path) -> None:
    """Copy the target's rows, ids and all, into a new SQLite database at ``path``."""
    import sqlite3

    from modelyard.store.db import Database

    bundle_db = Database(f"sqlite:///{path}")
    try:
        with registry.db.read() as src:
            rows = _target_rows(src, target)
        with bundle_db.write() as conn:
            for table, values in rows:
                if values:
                    conn.execute(table.insert(), values)
    finally:
        bundle_db.close()
    # One self-contained file: fold the write-ahead log back in and drop the migration lock.
    folded = sqlite3.connect(path)
    try:
        folded.execute("PRAGMA journal_mode=DELETE")
        folded.execute("VACUUM")  # the schema's empty pages, of no use to a read-mostly copy
    finally:
        folded.close()
    for extra in _sqlite_files(path):
        extra.unlink(missing_ok=True)


def _target_rows(conn: Any, target: Target) -> list[tuple[Any, list[dict[str, Any]]]]:
    """(table, rows) in foreign-key order: runs, models, versions, files, tags, aliases,
    deployment."""
    import sqlalchemy as sa

    from modelyard.store.schema import (
        aliases,
        deployments,
        model_versions,
        models,
        runs,
        version_files,
        version_tags,
    )

    served: dict[str, set[int]] = {}
    for version in target.versions:
        served.setdefault(version.name, set()).add(version.version)
    model_rows = [
        dict(r._mapping) for r in conn.execute(sa.select(models).where(models.c.name.in_(served)))
    ]
    for row in model_rows:
        # "NAME" (the latest version) means the newest version the bundle holds
        row["latest_version"] = max(served[row["name"]])
    names = {row["id"]: row["name"] for row in model_rows}
    version_rows = [
        dict(r._mapping)
        for r in conn.execute(sa.select(model_versions).where(model_versions.c.model_id.in_(names)))
        if r.version in served[names[r.model_id]]
    ]
    ids = [row["id"] for row in version_rows]
    run_ids = sorted({row["run_id"] for row in version_rows if row["run_id"] is not None})
    alias_rows = [
        dict(r._mapping)
        for r in conn.execute(sa.select(aliases).where(aliases.c.model_id.in_(names)))
        if r.version in served[names[r.model_id]]
    ]
    deployment_rows: list[dict[str, Any]] = []
    if target.deployment is not None:
        deployment_rows = [
            dict(r._mapping)
            for r in conn.execute(
                sa.select(deployments).where(deployments.c.name == target.deployment)
            )
        ]
    return [
        (runs, _select(conn, runs, runs.c.id, run_ids)),
        (models, model_rows),
        (model_versions, version_rows),
        (version_files, _select(conn, version_files, version_files.c.version_id, ids)),
        (version_tags, _select(conn, version_tags, version_tags.c.version_id, ids)),
        (aliases, alias_rows),
        (deployments, deployment_rows),
    ]


def _select(conn: Any, table: Any, column: Any, values: Iterable[Any]) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    wanted = list(values)
    if not wanted:
        return []
    return [dict(r._mapping) for r in conn.execute(sa.select(table).where(column.in_(wanted)))]


def _check(path: Path, entry: BundleFile, root: Path) -> None:
    if not path.is_file():
        raise IntegrityError(
            f"The bundle at {root} is missing {entry.path} (its manifest lists it); nothing "
            "was served: build the bundle again."
        )
    actual = _file_sha256(path)
    if actual != entry.sha256:
        raise IntegrityError(
            f"{entry.path} of the bundle at {root} was altered: its sha256 is {actual[:12]}..., "
            f"the manifest says {entry.sha256[:12]}...; nothing was served: build it again."
        )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _sqlite_files(path: Path) -> list[Path]:
    return [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal", ".lock")]
