"""Each migration adds exactly its tables and its downgrade removes exactly them; the schema
then upgrades back to the head revision."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import modelyard.store.db as db_module
from modelyard.store.db import Database
from modelyard.store.schema import HEAD_REVISION

ADDED = {
    "0003": {"deployments", "deployment_events", "route_stats", "rollout_leases"},
    "0004": {"alert_states", "alert_incidents"},
    "0005": {"run_steps", "pipeline_artifacts"},
    "0007": {"alert_deliveries"},
    "0008": {"loop_states", "loop_transitions"},
    "0009": {"version_checks"},
    "0010": {"attestations"},
}


@pytest.mark.parametrize("revision", sorted(ADDED))
def test_a_migration_adds_and_removes_exactly_its_tables(tmp_path: Path, revision: str) -> None:
    database = Database(f"sqlite:///{tmp_path / 'm.db'}", upgrade=False)
    config = Config()
    config.set_main_option("script_location", str(Path(db_module.__file__).parent / "migrations"))

    def migrate(step: str, target: str) -> set[str]:
        with database.engine.begin() as conn:
            config.attributes["connection"] = conn
            getattr(command, step)(config, target)
        assert database.current_revision() == target
        return set(sa.inspect(database.engine).get_table_names())

    previous = f"{int(revision) - 1:04d}"
    before = migrate("upgrade", previous)
    assert migrate("upgrade", revision) - before == ADDED[revision]
    assert migrate("downgrade", previous) == before
    assert database.upgrade() == HEAD_REVISION
    database.close()


def test_the_pipeline_steps_are_indexed_by_cache_key(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'm.db'}", upgrade=False)
    database.upgrade()
    indexes = {i["name"] for i in sa.inspect(database.engine).get_indexes("run_steps")}
    assert indexes == {"ix_run_steps_cache_key"}
    database.close()
