"""Rollouts: deployments with their audit log, per-route traffic statistics, controller leases.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_json = sa.JSON().with_variant(JSONB(), "postgresql")
_time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("stable_model", sa.String(128), nullable=False),
        sa.Column("stable_version", sa.Integer, nullable=False),
        sa.Column("stable_alias", sa.String(64)),
        sa.Column("candidate_model", sa.String(128)),
        sa.Column("candidate_version", sa.Integer),
        sa.Column("mode", sa.String(16)),
        sa.Column("weight", sa.Float, nullable=False, server_default="0"),
        sa.Column("sticky_header", sa.String(128)),
        sa.Column("sticky_field", sa.String(128)),
        sa.Column("shadow_sample", sa.Float, nullable=False, server_default="1"),
        sa.Column("retry_on_stable", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("steps", _json, nullable=False),
        sa.Column("bake_s", sa.Float, nullable=False, server_default="0"),
        sa.Column("step_index", sa.Integer, nullable=False, server_default="0"),
        sa.Column("step_started_at", _time),
        sa.Column("auto", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("policy", _json, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("created_at", _time, nullable=False),
        sa.Column("updated_at", _time, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deployments"),
        sa.UniqueConstraint("name", name="uq_deployments_name"),
    )
    op.create_table(
        "deployment_events",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.Integer, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("detail", _json, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("at", _time, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deployment_events"),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name="fk_deployment_events_deployment_id_deployments",
        ),
    )
    op.create_index("ix_deployment_events_deployment", "deployment_events", ["deployment_id", "id"])
    op.create_table(
        "route_stats",
        sa.Column("deployment_id", sa.Integer, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("route", sa.String(16), nullable=False),
        sa.Column("replica", sa.String(128), nullable=False),
        sa.Column("window_start", _time, nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("latency_counts", _json, nullable=False),
        sa.Column("output_counts", _json, nullable=False),
        sa.Column("updated_at", _time, nullable=False),
        sa.PrimaryKeyConstraint(
            "deployment_id", "revision", "route", "replica", "window_start", name="pk_route_stats"
        ),
        sa.ForeignKeyConstraint(
            ["deployment_id"], ["deployments.id"], name="fk_route_stats_deployment_id_deployments"
        ),
    )
    op.create_table(
        "rollout_leases",
        sa.Column("deployment", sa.String(128), nullable=False),
        sa.Column("holder", sa.String(256), nullable=False),
        sa.Column("expires_at", _time, nullable=False),
        sa.PrimaryKeyConstraint("deployment", name="pk_rollout_leases"),
    )


def downgrade() -> None:
    for table in ("rollout_leases", "route_stats", "deployment_events", "deployments"):
        op.drop_table(table)
