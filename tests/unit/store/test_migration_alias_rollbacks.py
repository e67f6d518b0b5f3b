"""Migration 0006 adds ``alias_events.undoes`` (the move a rollback undid) and its downgrade
removes it, keeping the rows."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import modelyard.store.db as db_module
from modelyard.store.db import Database


def test_0006_adds_and_removes_the_undoes_column(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'm.db'}", upgrade=False)
    config = Config()
    config.set_main_option("script_location", str(Path(db_module.__file__).parent / "migrations"))

    def migrate(step: str, target: str) -> set[str]:
        with database.engine.begin() as conn:
            config.attributes["connection"] = conn
            getattr(command, step)(config, target)
        return {c["name"] for c in sa.inspect(database.engine).get_columns("alias_events")}

    before = migrate("upgrade", "0005")
    with database.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO models (name, latest_version, created_at, updated_at) "
                             "VALUES ('churn', 1, '2026-12-04', '2026-12-04')"))  # fmt: skip
        conn.execute(sa.text("INSERT INTO alias_events (model_id, alias, to_version, actor, at) "
                             "VALUES (1, 'production', 1, 'ann', '2026-12-04')"))  # fmt: skip
    assert migrate("upgrade", "0006") - before == {"undoes"}
    assert migrate("downgrade", "0005") == before
    with database.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT actor FROM alias_events")).scalars().all() == ["ann"]
    database.close()
