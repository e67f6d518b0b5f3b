from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

import modelyard.store.db as db_module
from modelyard.settings import Settings
from modelyard.store.db import Database
from modelyard.store.schema import HEAD_REVISION, metadata


def test_head_revision_constant_matches_the_migrations() -> None:
    config = Config()
    config.set_main_option("script_location", str(Path(db_module.__file__).parent / "migrations"))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_migrations_create_the_tables_the_code_uses(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'm.db'}", upgrade=False)
    assert database.current_revision() is None
    assert database.upgrade() == HEAD_REVISION
    assert database.upgrade() == HEAD_REVISION  # idempotent
    inspector = sa.inspect(database.engine)
    for table in metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'w.db'}")
    with database.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000


def test_processes_opening_a_new_sqlite_database_at_once_all_get_in(tmp_path: Path) -> None:
    # The first connection of a new file switches it to WAL; one switching at the same time got
    # "database is locked" at once, whatever the busy timeout (seen in a fresh-clone check as
    # two alert engines starting together).
    failures: list[BaseException] = []
    for attempt in range(15):
        url = f"sqlite:///{tmp_path / f'new{attempt}.db'}"
        gate = threading.Barrier(4)

        def first_connection(url: str = url, gate: threading.Barrier = gate) -> None:
            database = Database(url)
            try:
                gate.wait(timeout=30)
                with database.read() as conn:  # the first one in creates the schema
                    assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            except BaseException as exc:
                failures.append(exc)
            finally:
                database.close()

        threads = [threading.Thread(target=first_connection) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert failures == []


def test_settings_defaults_and_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for key in ("MODELYARD_HOME", "MODELYARD_DATABASE_URL", "MODELYARD_ARTIFACT_ROOT"):
        monkeypatch.delenv(key, raising=False)
    defaults = Settings()
    assert defaults.resolved_database_url.endswith(".modelyard/modelyard.db")
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("MODELYARD_ONNX__INTRA_OP_THREADS", "3")
    s = Settings()
    assert s.resolved_database_url == f"sqlite:///{tmp_path / 'h' / 'modelyard.db'}"
    assert s.resolved_artifact_root == str(tmp_path / "h" / "artifacts")
    assert s.onnx.intra_op_threads == 3
    (tmp_path / "modelyard.toml").write_text('identity = "from-file"\nhome = "/ignored"\n')
    s = Settings()
    assert s.identity == "from-file"  # file below environment
    assert s.home == tmp_path / "h"  # environment wins over the file
    assert Settings(identity="explicit").identity == "explicit"
