"""Pipelines: the steps of a pipeline run and the artifacts they produced.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_json = sa.JSON().with_variant(JSONB(), "postgresql")
_time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "run_steps",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("function", sa.String(512), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("upstream", _json, nullable=False),
        sa.Column("params", _json, nullable=False),
        sa.Column("inputs", _json, nullable=False),
        sa.Column("outputs", _json, nullable=False),
        sa.Column("metrics", _json, nullable=False),
        sa.Column("cache_key", sa.String(64)),
        sa.Column("key_parts", _json),
        sa.Column("cached_from", sa.String(32)),
        sa.Column("cache_note", sa.Text),
        sa.Column("started_at", _time),
        sa.Column("ended_at", _time),
        sa.Column("duration_s", sa.Float),
        sa.Column("log", sa.Text),
        sa.Column("error", sa.Text),
        sa.PrimaryKeyConstraint("run_id", "name", name="pk_run_steps"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_steps_run_id_runs"),
        sa.ForeignKeyConstraint(["cached_from"], ["runs.id"], name="fk_run_steps_cached_from_runs"),
    )
    op.create_index("ix_run_steps_cache_key", "run_steps", ["cache_key", "status"])
    op.create_table(
        "pipeline_artifacts",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("python_type", sa.String(256), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("meta", _json, nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("step", sa.String(128), nullable=False),
        sa.Column("output", sa.String(128), nullable=False),
        sa.Column("created_at", _time, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pipeline_artifacts"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_pipeline_artifacts_run_id_runs"),
        sa.UniqueConstraint(
            "run_id", "step", "output", name="uq_pipeline_artifacts_run_id_step_output"
        ),
    )
    op.create_index("ix_pipeline_artifacts_sha256", "pipeline_artifacts", ["sha256"])


def downgrade() -> None:
    op.drop_index("ix_pipeline_artifacts_sha256", table_name="pipeline_artifacts")
    op.drop_table("pipeline_artifacts")
    op.drop_index("ix_run_steps_cache_key", table_name="run_steps")
    op.drop_table("run_steps")
