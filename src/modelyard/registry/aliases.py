"""Alias moves and their audit log. Every move happens in one transaction with its audit row,
under a lock on the model's row, so concurrent moves are serialized and each is recorded once.

``Registry.set_alias`` and ``Registry.rollback`` open that transaction; ``set_alias_in`` makes
the move inside a caller's write transaction, so that the rollout layer moves an alias, changes
a deployment and records both in one commit.

Deployments that follow an alias move with it in the same transaction (``_followers``).

Rollbacks form a stack: each records the move it undid (``undoes``), and the next rollback skips
the moves already undone, so after 1->2->3 rollbacks give 3->2, then 2->1, then an error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from modelyard.core.types import AliasEvent
from modelyard.errors import AliasNotFoundError, ConflictError
from modelyard.registry._followers import follow_alias
from modelyard.registry._rows import alias_event, model_row, version_row
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
    undoes: int | None = None,
) -> AliasEvent:
    """Point ``alias`` at ``to_version`` (``None`` removes it) and record the move
    (``undoes``: the id of the move a rollback undoes)."""
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
            undoes=undoes,
        )
        .returning(alias_events.c.id)
    ).scalar_one()
    follow_alias(conn, model.name, alias, to_version, actor=actor, reason=reason, now=now)
    return AliasEvent(
        id=event_id,
        name=model.name,
        alias=alias,
        from_version=before,
        to_version=to_version,
        actor=actor,
        reason=reason,
        at=now,
        undoes=undoes,
    )


def lock_model(conn: Connection, name: str) -> None:
    """Lock ``name``'s row in the caller's write transaction, as an alias move does; a caller
    that also locks other rows takes this lock first, so that two writers cannot deadlock."""
    model_row(conn, name, lock=True)


def set_alias_in(
    conn: Connection, name: str, version: int, alias: str, *, actor: str, reason: str | None
) -> AliasEvent:
    """Point ``name``'s ``alias`` at ``version`` inside the caller's write transaction ``conn``
    (the model's row is locked until it ends)."""
    return move_alias(conn, model_row(conn, name, lock=True), alias, version, actor=actor,
                      reason=reason)  # fmt: skip


def rollback_alias(
    conn: Connection, model: Row[Any], alias: str, *, actor: str, reason: str | None
) -> AliasEvent:
    """Undo the latest move of ``alias`` that no rollback has undone yet."""
    _, row = _move_to_undo(conn, model, alias)
    note = f"rollback from version {row.to_version}" + (f": {reason}" if reason else "")
    return move_alias(conn, model, alias, row.from_version, actor=actor, reason=note, undoes=row.id)


def rollback_target(conn: Connection, model: Row[Any], alias: str) -> tuple[int, int]:
    """``(current, earlier)``: the version ``alias`` points at and the one a rollback would move
    it back to now (what a confirmation shows); the same errors as ``rollback_alias``."""
    current, row = _move_to_undo(conn, model, alias)
    return current, int(row.from_version)


def _move_to_undo(conn: Connection, model: Row[Any], alias: str) -> tuple[int, Row[Any]]:
    """The alias's current version and its latest move that no rollback has undone (one with an
    earlier version to go back to), or the error that says why there is none."""
    current = current_target(conn, model, alias)
    if current is None:
        raise AliasNotFoundError(
            f"Model {model.name!r} has no alias {alias!r}, so there is nothing to roll back; "
            f"run 'yard models history {model.name}'."
        )
    rows = conn.execute(
        sa.select(alias_events)
        .where(alias_events.c.model_id == model.id, alias_events.c.alias == alias)
        .order_by(alias_events.c.id.desc())
    ).all()
    undone: set[int] = set()
    for row in rows:
        if row.undoes is not None:
            undone.add(row.undoes)
        elif row.id not in undone:
            if row.from_version is None:
                raise _nothing_earlier(model.name, alias, current, moved=row is not rows[0])
            return current, row
    raise _nothing_earlier(model.name, alias, current, moved=True)  # the first move sets it


def _nothing_earlier(name: str, alias: str, version: int, *, moved: bool) -> ConflictError:
    where = (
        f"nothing earlier than version {version}, where it was first set, and every move since "
        "has been rolled back"
        if moved
        else f"it was set to version {version} and has not moved since"
    )
    return ConflictError(
        f"Alias {alias!r} of {name!r} has no earlier version to roll back to: {where}; move it "
        f"with 'yard models alias {name}/VERSION {alias}' (modelyard.set_alias)."
    )


def history(
    conn: Connection, model: Row[Any], alias: str | None, *, limit: int
) -> list[AliasEvent]:
    query = sa.select(alias_events).where(alias_events.c.model_id == model.id)
    if alias is not None:
        query = query.where(alias_events.c.alias == alias)
    rows = conn.execute(query.order_by(alias_events.c.id.desc()).limit(limit))
    return [alias_event(row, model.name) for row in rows]
