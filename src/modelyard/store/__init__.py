"""Metadata database (SQLAlchemy + alembic) and content-addressed artifact store (fsspec)."""
