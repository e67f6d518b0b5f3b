"""Alias moves and their audit log. Every move happens in one transaction with its audit row,
under a lock on the model's row, so concurrent moves are serialized and each is recorded once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from modelyard.core.types import AliasEvent
from modelyard.errors import AliasNotFoundError, ConflictError
from modelyard.registry._rows import alias_event, last_alias_event, version_row
from modelyard.store.schema import alias_events, aliases


def current_target(conn: Connection, model: Row[Any], alias: str) -> int | None:
    value = conn.execute(
        sa.select(aliases.c.version).where(aliases.c.model_id == model.id, aliases.c.alias == alias)
    ).scalar()
    return int(value) if value is not None else None


def move_alias(
    conn: Connection,
    model: Row[Any],
    alias: str,
    to_version: int | None,
    *,
    actor: str,
    reason: str | None,
) -> AliasEvent:
    """Point ``alias`` at ``to_version`` (``None`` removes it) and record the move."""
    if to_version is not None:
        target = version_row(conn, model, to_version)
        if target.archived:
            raise ConflictError(
                f"Version {model.name}/{to_version} is archived and cannot take alias "
                f"{alias!r}; unarchive it first with 'yard models unarchive "
                f"{model.name}/{to_version}'."
            )
    before = current_target(conn, model, alias)
    if before is None and to_version is None:
        raise AliasNotFoundError(f"Model {model.name!r} has no alias {alias!r} to remove.")
    now = datetime.now(UTC)
    if to_version is None:
        conn.execute(
            sa.delete(aliases).where(aliases.c.model_id == model.id, aliases.c.alias == alias)
        )
    elif before is None:
        conn.execute(
            sa.insert(aliases).values(
                model_id=model.id, alias=alias, version=to_version, updated_at=now
            )
        )
    else:
        conn.execute(
            sa.update(aliases)
            .where(aliases.c.model_id == model.id, aliases.c.alias == alias)
            .values(version=to_version, updated_at=now)
        )
    event_id = conn.execute(
        sa.insert(alias_events)
        .values(
            model_id=model.id,
            alias=alias,
            from_version=before,
            to_version=to_version,
            actor=actor,
            reason=reason,
            at=now,
        )
        .returning(alias_events.c.id)
    ).scalar_one()
    return AliasEvent(
        id=event_id,
        name=model.name,
        alias=alias,
        from_version=before,
        to_version=to_version,
        actor=actor,
        reason=reason,
        at=now,
    )


def rollback_alias(
    conn: Connection, model: Row[Any], alias: str, *, actor: str, reason: str | None
) -> AliasEvent:
    """Move ``alias`` back to where it pointed before its last move."""
    last = last_alias_event(conn, model, alias)
    if last is None:
        raise AliasNotFoundError(
            f"Model {model.name!r} has no alias {alias!r}, so there is nothing to roll back; "
            f"run 'yard models history {model.name}'."
        )
    if last.from_version is None:
        raise ConflictError(
            f"Alias {alias!r} of {model.name!r} has no earlier version to roll back to (it was "
            f"first set to version {last.to_version}); move it with 'yard models alias'."
        )
    note = f"rollback from version {last.to_version}" + (f": {reason}" if reason else "")
    return move_alias(conn, model, alias, last.from_version, actor=actor, reason=note)


def history(
    conn: Connection, model: Row[Any], alias: str | None, *, limit: int
) -> list[AliasEvent]:
    query = sa.select(alias_events).where(alias_events.c.model_id == model.id)
    if alias is not None:
        query = query.where(alias_events.c.alias == alias)
    rows = conn.execute(query.order_by(alias_events.c.id.desc()).limit(limit))
    return [alias_event(row, model.name) for row in rows]
