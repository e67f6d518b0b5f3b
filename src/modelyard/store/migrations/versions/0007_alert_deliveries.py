"""Alert deliveries: the outbox that makes alert notifications at-least-once.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", _time, nullable=False),
        sa.Column("claimed_by", sa.String(128)),
        sa.Column("claimed_until", _time),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("delivered_at", _time),
        sa.Column("last_error", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_alert_deliveries"),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["alert_incidents.id"],
            name="fk_alert_deliveries_incident_id_alert_incidents",
        ),
        sa.UniqueConstraint("key", name="uq_alert_deliveries_key"),
    )  # fmt: skip
    op.create_index("ix_alert_deliveries_pending", "alert_deliveries", ["delivered_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_alert_deliveries_pending", table_name="alert_deliveries")
    op.drop_table("alert_deliveries")
