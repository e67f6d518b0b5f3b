"""Initial schema: models, versions, files, tags, aliases with their audit log, runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_json = sa.JSON().with_variant(JSONB(), "postgresql")
_time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("latest_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", _time, nullable=False),
        sa.Column("updated_at", _time, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("name", name="uq_models_name"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(256)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("start_time", _time, nullable=False),
        sa.Column("end_time", _time),
        sa.Column("params", _json, nullable=False),
        sa.Column("metrics", _json, nullable=False),
        sa.Column("tags", _json, nullable=False),
        sa.Column("user", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("ix_runs_start_time", "runs", ["start_time"])
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("model_id", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("flavor", sa.String(32), nullable=False),
        sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("untrusted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("description", sa.Text),
        sa.Column("signature", _json),
        sa.Column("input_example", _json),
        sa.Column("flavor_meta", _json, nullable=False),
        sa.Column("metrics", _json, nullable=False),
        sa.Column("params", _json, nullable=False),
        sa.Column("lineage", _json, nullable=False),
        sa.Column("run_id", sa.String(32)),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", _time, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_model_versions_model_id_models"
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_model_versions_run_id_runs"),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_model_id_version"),
    )
    op.create_index("ix_model_versions_created", "model_versions", ["created_at", "id"])
    op.create_index("ix_model_versions_flavor", "model_versions", ["flavor"])
    op.create_table(
        "version_files",
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("version_id", "name", name="pk_version_files"),
        sa.ForeignKeyConstraint(
            ["version_id"], ["model_versions.id"], name="fk_version_files_version_id_model_versions"
        ),
    )
    op.create_index("ix_version_files_sha256", "version_files", ["sha256"])
    op.create_table(
        "version_tags",
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("version_id", "key", name="pk_version_tags"),
        sa.ForeignKeyConstraint(
            ["version_id"], ["model_versions.id"], name="fk_version_tags_version_id_model_versions"
        ),
    )
    op.create_index("ix_version_tags_key_value", "version_tags", ["key", "value"])
    op.create_table(
        "aliases",
        sa.Column("model_id", sa.Integer, nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", _time, nullable=False),
        sa.PrimaryKeyConstraint("model_id", "alias", name="pk_aliases"),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_aliases_model_id_models"),
    )
    op.create_table(
        "alias_events",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("model_id", sa.Integer, nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("from_version", sa.Integer),
        sa.Column("to_version", sa.Integer),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("at", _time, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alias_events"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_alias_events_model_id_models"
        ),
    )
    op.create_index("ix_alias_events_model_alias", "alias_events", ["model_id", "alias", "id"])


def downgrade() -> None:
    for table in (
        "alias_events",
        "aliases",
        "version_tags",
        "version_files",
        "model_versions",
        "runs",
        "models",
    ):
        op.drop_table(table)
