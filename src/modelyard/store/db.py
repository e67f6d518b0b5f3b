"""The metadata database: engine set-up, self-upgrading schema, read and write transactions.

SQLite (the default) runs in WAL mode with a busy timeout, and every write transaction starts with
``BEGIN IMMEDIATE`` so that two writers queue on the lock instead of failing half-way. PostgreSQL
takes row locks (``SELECT ... FOR UPDATE``) in the same places; both serialize version numbering
and alias moves per model.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from modelyard.errors import ConfigError, StorageError, first_line
from modelyard.store.schema import HEAD_REVISION

logger = logging.getLogger(__name__)

_SQLITE_BUSY_TIMEOUT_MS = 60_000
_PG_MIGRATION_LOCK = 7_202_611_001  # an arbitrary constant: modelyard's advisory lock for upgrades
_WRITE = "modelyard_write"


class Database:
    """One metadata database. Create it once per process and share it; it holds a pool."""

    def __init__(self, url: str, *, upgrade: bool = True) -> None:
        self.url = url
        self.engine = _create_engine(url)
        self._writer = self.engine.execution_options(**{_WRITE: True})
        self._checked = False
        self._auto_upgrade = upgrade

    @property
    def display_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (a snapshot on PostgreSQL and on SQLite in WAL mode)."""
        self._ensure_schema()
        with self._wrap(), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed when the block ends, rolled back on any error."""
        self._ensure_schema()
        with self._wrap(), self._writer.begin() as conn:
            yield conn

    def current_revision(self) -> str | None:
        with self._wrap(), self.engine.connect() as conn:
            return _revision(conn)

    def upgrade(self) -> str:
        """Bring the schema to the newest revision (idempotent, safe under concurrency)."""
        with self._wrap(), self._migration_lock():
            with self.engine.connect() as conn:
                if _revision(conn) == HEAD_REVISION:
                    self._checked = True
                    return HEAD_REVISION
            _run_alembic_upgrade(self.engine)
        self._checked = True
        return HEAD_REVISION

    def _ensure_schema(self) -> None:
        if self._checked:
            return
        revision = self.current_revision()
        if revision == HEAD_REVISION:
            self._checked = True
            return
        if not self._auto_upgrade:
            raise StorageError(
                f"The metadata database {self.display_url} is at schema revision "
                f"{revision or 'none'}, not {HEAD_REVISION}; run 'yard db upgrade'."
            )
        self.upgrade()

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self.dialect == "postgresql":
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(
                        sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK}
                    )
                    conn.commit()
            return
        path = self.engine.url.database
        if self.dialect != "sqlite" or not path or path == ":memory:":
            yield
            return
        with open(f"{path}.lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _wrap(self) -> Iterator[None]:
        """Turn driver failures into one StorageError that names the database."""
        try:
            yield
        except sa.exc.OperationalError as exc:
            reason = first_line(exc.orig) if exc.orig else str(exc)
            raise StorageError(
                f"Cannot use the metadata database {self.display_url} ({reason}); "
                "check MODELYARD_DATABASE_URL and that the server is running."
            ) from exc
        except sa.exc.InterfaceError as exc:
            raise StorageError(
                f"Lost the connection to the metadata database {self.display_url}; try again."
            ) from exc


def _revision(conn: Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    value = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    return str(value) if value is not None else None


def _run_alembic_upgrade(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    logger.info("metadata schema upgraded to %s", HEAD_REVISION)


def _create_engine(url: str) -> Engine:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(
            f"Invalid database URL {url!r}; use sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST:PORT/DB in MODELYARD_DATABASE_URL."
        ) from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        try:
            return sa.create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10)
        except ModuleNotFoundError as exc:
            raise ConfigError(
                "PostgreSQL needs the psycopg driver: pip install 'modelyard[postgres]'."
            ) from exc
    raise ConfigError(f"Unsupported database {backend!r} in {url!r}; use SQLite or PostgreSQL.")


def _wal(cursor: Any) -> None:
    """Put the database in WAL mode (the file keeps it once set). Connections opening a new
    database together, one of them creating the schema: another's switch can fail at once with
    "database is locked", whatever the busy timeout (measured: four threads opening a new file,
    15 times, failed within 1 s of the 60 s timeout; two alert engines starting together failed
    3 runs in 15), so it tries again, for as long as the busy timeout."""
    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(_WAL_RETRY_S)


#: How long a connection waits before it tries the switch to WAL again.
_WAL_RETRY_S = 0.01


def _sqlite_engine(url: sa.URL) -> Engine:
    path = url.database
    if path and path != ":memory:":
        try:
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"Cannot create the folder for the SQLite database {path} ({exc.strerror}); "
                "set MODELYARD_HOME or MODELYARD_DATABASE_URL to a writable place."
            ) from exc
    engine = sa.create_engine(url, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _on_begin)
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        _wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
