"""Migration 0005 adds exactly the pipeline tables; its downgrade removes exactly them."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import modelyard.store.db as db_module
from modelyard.store.db import Database
from modelyard.store.schema import HEAD_REVISION


def test_migration_0005_adds_and_removes_exactly_the_pipeline_tables(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'm.db'}", upgrade=False)
    config = Config()
    config.set_main_option("script_location", str(Path(db_module.__file__).parent / "migrations"))

    def migrate(step: str, revision: str) -> None:
        with database.engine.begin() as conn:
            config.attributes["connection"] = conn
            getattr(command, step)(config, revision)

    migrate("upgrade", "0004")
    before = set(sa.inspect(database.engine).get_table_names())
    migrate("upgrade", "0005")
    after = set(sa.inspect(database.engine).get_table_names())
    assert after - before == {"run_steps", "pipeline_artifacts"}
    indexes = {i["name"] for i in sa.inspect(database.engine).get_indexes("run_steps")}
    assert indexes == {"ix_run_steps_cache_key"}
    migrate("downgrade", "0004")
    assert set(sa.inspect(database.engine).get_table_names()) == before
    assert database.upgrade() == HEAD_REVISION == "0005"
    database.close()
