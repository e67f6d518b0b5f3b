"""DuckDB connections for reading the prediction log: a cursor of one in-memory database per
process instead of a new database per query.

A new database costs 18-32 ms of CPU (its buffer manager and thread pool), and 70-620 ms of wall
time on a busy 2-core machine, where a cursor costs under 1 ms (``benchmarks/ui.py``; a
dashboard page reads the log several times). A cursor has its own session: its settings (``SET
TimeZone``), temporary views and registered frames are its own, as with a fresh connection. The
external file cache is off, so a query reads the files as they are now and the database holds
no file data between queries.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.Lock()
_database: Any = None
_pid: int | None = None


def _shared() -> Any:
    """The process's database (made again in a forked child: a DuckDB instance is not
    fork-safe)."""
    global _database, _pid
    with _lock:
        if _database is None or _pid != os.getpid():
            import duckdb

            _database = duckdb.connect(config={"enable_external_file_cache": False})
            _pid = os.getpid()
        return _database


@contextmanager
def connect() -> Iterator[Any]:
    """A fresh session (cursor) on the process's in-memory database, closed on exit."""
    database = _shared()
    with _lock:
        cursor = database.cursor()
    try:
        yield cursor
    finally:
        cursor.close()
