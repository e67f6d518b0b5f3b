"""``yard db``: the metadata schema."""

from __future__ import annotations

import typer

from modelyard.cli._output import console
from modelyard.cli._registry import load_settings

app = typer.Typer(help="The metadata database.", no_args_is_help=True)


@app.command()
def upgrade() -> None:
    """Upgrade the metadata schema to the newest revision (it also upgrades itself on use)."""
    from modelyard.store.db import Database

    database = Database(load_settings().resolved_database_url, upgrade=False)
    revision = database.upgrade()
    console().print(f"{database.display_url} is at schema revision {revision}")


@app.command()
def current() -> None:
    """Print the schema revision of the metadata database."""
    from modelyard.store.db import Database

    database = Database(load_settings().resolved_database_url, upgrade=False)
    console().print(database.current_revision() or "none (run 'yard db upgrade')")
