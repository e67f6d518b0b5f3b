"""Migration 0003 creates the rollout tables and its downgrade removes exactly them."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import modelyard.store.db as db_module
from modelyard.store.db import Database
from modelyard.store.schema import HEAD_REVISION

ROLLOUT_TABLES = {"deployments", "deployment_events", "route_stats", "rollout_leases"}


def test_upgrade_and_downgrade(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'm.db'}", upgrade=False)
    config = Config()
    config.set_main_option("script_location", str(Path(db_module.__file__).parent / "migrations"))

    def migrate(step: str, revision: str) -> None:
        with database.engine.begin() as conn:
            config.attributes["connection"] = conn
            getattr(command, step)(config, revision)

    migrate("upgrade", "0003")
    assert database.current_revision() == "0003"
    before = set(sa.inspect(database.engine).get_table_names())
    assert before >= ROLLOUT_TABLES
    migrate("downgrade", "0002")
    assert database.current_revision() == "0002"
    assert set(sa.inspect(database.engine).get_table_names()) == before - ROLLOUT_TABLES
    assert database.upgrade() == HEAD_REVISION
    database.close()
