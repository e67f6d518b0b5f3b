"""alembic environment: runs on the connection modelyard hands over (never reads alembic.ini)."""

from __future__ import annotations

from alembic import context

from modelyard.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
