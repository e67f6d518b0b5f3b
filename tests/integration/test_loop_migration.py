"""Migration 0008 on PostgreSQL (SQLite: ``tests/unit/store/test_migrations.py``): it adds exactly
the loop tables, with their unique keys, on a database at 0007, its downgrade removes them, and
the schema upgrades back to the head; run in a database of its own, created and dropped here."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import modelyard.store.db as db_module
from modelyard.store.db import Database
from modelyard.store.schema import HEAD_REVISION
from tests.conftest import POSTGRES_URL, SKIP_POSTGRES

pytestmark = [pytest.mark.postgres, SKIP_POSTGRES]


@pytest.fixture
def fresh_url() -> Iterator[str]:
    assert POSTGRES_URL is not None
    name = f"modelyard_mig_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_migration_0008_adds_and_removes_the_loop_tables_on_postgresql(fresh_url: str) -> None:
    database = Database(fresh_url, upgrade=False)
    config = Config()
    config.set_main_option("script_location", str(Path(db_module.__file__).parent / "migrations"))

    def migrate(step: str, target: str) -> set[str]:
        with database.engine.begin() as conn:
            config.attributes["connection"] = conn
            getattr(command, step)(config, target)
        assert database.current_revision() == target
        return set(sa.inspect(database.engine).get_table_names())

    before = migrate("upgrade", "0007")
    assert migrate("upgrade", "0008") - before == {"loop_states", "loop_transitions"}
    inspector = sa.inspect(database.engine)
    unique = {
        tuple(u["column_names"]) for u in inspector.get_unique_constraints("loop_transitions")
    }
    assert unique == {("deployment", "revision"), ("deployment", "trigger_key")}
    assert inspector.get_pk_constraint("loop_states")["constrained_columns"] == ["deployment"]
    columns = {c["name"]: c for c in inspector.get_columns("loop_transitions")}
    assert type(columns["evidence"]["type"]).__name__ == "JSONB"
    assert migrate("downgrade", "0007") == before
    assert database.upgrade() == HEAD_REVISION
    database.close()
