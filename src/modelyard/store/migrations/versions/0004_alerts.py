"""Alerts: each rule's evaluation state and the incidents it fired.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alert_states",
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("deployment", sa.String(128), nullable=False),
        sa.Column("pending_since", _time),
        sa.Column("incident_id", sa.Integer),
        sa.Column("last_value", sa.Float),
        sa.Column("last_evaluated_at", _time),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("rule", name="pk_alert_states"),
    )
    op.create_table(
        "alert_incidents",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("deployment", sa.String(128), nullable=False),
        sa.Column("metric", sa.Text, nullable=False),
        sa.Column("op", sa.String(2), nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("window", sa.String(32), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("last_value", sa.Float),
        sa.Column("started_at", _time, nullable=False),
        sa.Column("fired_at", _time, nullable=False),
        sa.Column("resolved_at", _time),
        sa.Column("notified", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("resolve_notified", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("notify_error", sa.Text),
        sa.Column("command_exit", sa.Integer),
        sa.Column("command_error", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_alert_incidents"),
    )
    op.create_index("ix_alert_incidents_rule", "alert_incidents", ["rule", "id"])


def downgrade() -> None:
    op.drop_index("ix_alert_incidents_rule", table_name="alert_incidents")
    for table in ("alert_incidents", "alert_states"):
        op.drop_table(table)
