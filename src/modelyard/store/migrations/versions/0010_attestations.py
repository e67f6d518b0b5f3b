"""Attestations for ``yard assess``: a person's record that a test of the ML Test Score was done
by hand (who, when, what was done), scoped to one model or to the whole project.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attestations",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("test", sa.String(16), nullable=False),
        sa.Column("model", sa.String(128), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_attestations"),
    )
    op.create_index("ix_attestations_test", "attestations", ["test", "id"])


def downgrade() -> None:
    op.drop_index("ix_attestations_test", table_name="attestations")
    op.drop_table("attestations")
