"""Alias rollbacks: each rollback names the move it undid, so rollbacks walk back a stack.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alias_events") as batch:
        batch.add_column(sa.Column("undoes", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("alias_events") as batch:
        batch.drop_column("undoes")
