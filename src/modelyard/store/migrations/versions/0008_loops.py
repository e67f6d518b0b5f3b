"""Retraining loops: each deployment's loop state and its recorded transitions.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_time = sa.DateTime(timezone=True)
_json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "loop_states",
        sa.Column("deployment", sa.String(128), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("loop", sa.Integer, nullable=False),
        sa.Column("since", _time, nullable=False),
        sa.Column("trigger_key", sa.String(256)),
        sa.Column("trigger", _json),
        sa.Column("run_id", sa.String(32)),
        sa.Column("candidate", sa.String(160)),
        sa.Column("detail", _json, nullable=False),
        sa.Column("decision", sa.String(16)),
        sa.Column("decided_by", sa.String(256)),
        sa.Column("decision_reason", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("ended_at", _time),
        sa.Column("notified", sa.Boolean),
        sa.Column("notify_error", sa.Text),
        sa.PrimaryKeyConstraint("deployment", name="pk_loop_states"),
    )
    op.create_table(
        "loop_transitions",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("deployment", sa.String(128), nullable=False),
        sa.Column("loop", sa.Integer, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("from_state", sa.String(32), nullable=False),
        sa.Column("to_state", sa.String(32), nullable=False),
        sa.Column("trigger_key", sa.String(256)),
        sa.Column("evidence", _json, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("at", _time, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_loop_transitions"),
        sa.UniqueConstraint(
            "deployment", "revision", name="uq_loop_transitions_deployment_revision"
        ),
        sa.UniqueConstraint(
            "deployment", "trigger_key", name="uq_loop_transitions_deployment_trigger_key"
        ),
    )


def downgrade() -> None:
    op.drop_table("loop_transitions")
    op.drop_table("loop_states")
