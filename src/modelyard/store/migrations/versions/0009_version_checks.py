"""Version checks: each verification of a version's files (who, when, and which files failed),
so that a verify (``yard models verify``, the dashboard's button) is part of the audit.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "version_checks",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("model_id", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("failed", _json, nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_version_checks_model_id_models"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_version_checks"),
    )
    op.create_index(
        "ix_version_checks_model_version", "version_checks", ["model_id", "version", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_version_checks_model_version", table_name="version_checks")
    op.drop_table("version_checks")
