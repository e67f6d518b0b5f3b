"""Lean listings for overviews (the dashboard's model and version tables): the few columns a
table shows, never a version's signature, lineage, flavor metadata or input example, in a fixed
number of queries per page whatever the registry's size.

``model_summaries`` lists models with their latest version's flavor, tags and time;
``version_summaries`` lists one model's versions with their metrics; ``alias_spans`` turns an
alias history into which version held each alias from when to when.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from modelyard.core.types import AliasEvent, Page
from modelyard.errors import InvalidInputError
from modelyard.registry._rows import model_row
from modelyard.store.db import Database
from modelyard.store.schema import aliases, model_versions, models, version_tags

MAX_PAGE_SIZE = 1000


class ModelSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One model as a listing shows it: its latest version's flavor, tags and registration
    time, its aliases and how many versions it has."""

    name: str
    latest_version: int
    versions: int
    aliases: dict[str, int]
    flavor: str | None
    registered_at: datetime | None
    tags: dict[str, str]


class VersionSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One version as a table row shows it."""

    version: int
    flavor: str
    metrics: dict[str, float]
    created_at: datetime
    created_by: str
    archived: bool
    aliases: tuple[str, ...]


class AliasSpan(msgspec.Struct, frozen=True, kw_only=True):
    """``alias`` pointed at ``version`` (``None``: removed) from ``start`` until ``end`` (``None``:
    still does), set by ``actor`` for ``reason``."""

    alias: str
    version: int | None
    start: datetime
    end: datetime | None
    actor: str
    reason: str | None
    rollback: bool


def model_summaries(
    db: Database,
    *,
    search: str | None = None,
    prefix: str | None = None,
    tag: str | None = None,
    alias: str | None = None,
    flavor: str | None = None,
    page: int = 1,
    page_size: int = 50,
) -> Page:
    """Models matching every filter, most recently registered first: ``search`` anywhere in the
    name (any case), ``prefix`` at its start, ``tag`` (``key`` or ``key=value``) or ``flavor`` on
    any of its versions, ``alias`` among its aliases. Items are ``ModelSummary``."""
    _check_page(page, page_size)
    query = sa.select(models.c.id, models.c.name, models.c.latest_version, models.c.updated_at)
    if search:
        query = query.where(models.c.name.icontains(search, autoescape=True))
    if prefix:
        query = query.where(models.c.name.startswith(prefix, autoescape=True))
    if tag:
        key, sep, value = tag.partition("=")
        match = (
            sa.select(model_versions.c.model_id)
            .join(version_tags, version_tags.c.version_id == model_versions.c.id)
            .where(version_tags.c.key == key)
        )
        if sep:
            match = match.where(version_tags.c.value == value)
        query = query.where(models.c.id.in_(match))
    if alias:
        query = query.where(
            models.c.id.in_(sa.select(aliases.c.model_id).where(aliases.c.alias == alias))
        )
    if flavor:
        query = query.where(
            models.c.id.in_(
                sa.select(model_versions.c.model_id).where(model_versions.c.flavor == flavor)
            )
        )
    with db.read() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
        rows = conn.execute(
            query.order_by(models.c.updated_at.desc(), models.c.id.desc())
            .limit(page_size)
            .offset((page - 1) * page_size)
        ).all()
        items = _summaries(conn, rows)
    return Page(items=tuple(items), page=page, page_size=page_size, total=int(total))


def _summaries(conn: Connection, rows: Sequence[Any]) -> list[ModelSummary]:
    """The page's latest versions, aliases, tags and version counts in four queries."""
    ids = [row.id for row in rows]
    if not ids:
        return []
    latest = {
        r.model_id: r
        for r in conn.execute(
            sa.select(
                model_versions.c.id,
                model_versions.c.model_id,
                model_versions.c.flavor,
                model_versions.c.created_at,
            )
            .join(
                models,
                sa.and_(
                    models.c.id == model_versions.c.model_id,
                    models.c.latest_version == model_versions.c.version,
                ),
            )
            .where(models.c.id.in_(ids))
        )
    }
    held: dict[int, dict[str, int]] = defaultdict(dict)
    for a in conn.execute(
        sa.select(aliases.c.model_id, aliases.c.alias, aliases.c.version)
        .where(aliases.c.model_id.in_(ids))
        .order_by(aliases.c.alias)
    ):
        held[a.model_id][a.alias] = a.version
    tags: dict[int, dict[str, str]] = defaultdict(dict)
    version_ids = [r.id for r in latest.values()]
    for t in conn.execute(
        sa.select(version_tags).where(version_tags.c.version_id.in_(version_ids))
    ):
        tags[t.version_id][t.key] = t.value
    counts: dict[int, int] = {
        r.model_id: int(r.n)
        for r in conn.execute(
            sa.select(model_versions.c.model_id, sa.func.count().label("n"))
            .where(model_versions.c.model_id.in_(ids))
            .group_by(model_versions.c.model_id)
        )
    }
    out = []
    for row in rows:
        top = latest.get(row.id)
        out.append(
            ModelSummary(
                name=row.name,
                latest_version=row.latest_version,
                versions=int(counts.get(row.id, 0)),
                aliases=dict(sorted(held[row.id].items())),
                flavor=top.flavor if top is not None else None,
                registered_at=top.created_at if top is not None else None,
                tags=dict(sorted(tags[top.id].items())) if top is not None else {},
            )
        )
    return out


def version_summaries(db: Database, name: str, *, page: int = 1, page_size: int = 50) -> Page:
    """``name``'s versions, newest first, with metrics and aliases (items are
    ``VersionSummary``); an unknown model raises ``ModelNotFoundError``."""
    _check_page(page, page_size)
    with db.read() as conn:
        model = model_row(conn, name)
        total = conn.execute(
            sa.select(sa.func.count()).where(model_versions.c.model_id == model.id)
        ).scalar_one()
        rows = conn.execute(
            sa.select(
                model_versions.c.version,
                model_versions.c.flavor,
                model_versions.c.metrics,
                model_versions.c.created_at,
                model_versions.c.created_by,
                model_versions.c.archived,
            )
            .where(model_versions.c.model_id == model.id)
            .order_by(model_versions.c.version.desc())
            .limit(page_size)
            .offset((page - 1) * page_size)
        ).all()
        held: dict[int, list[str]] = defaultdict(list)
        for a in conn.execute(
            sa.select(aliases.c.alias, aliases.c.version)
            .where(aliases.c.model_id == model.id)
            .order_by(aliases.c.alias)
        ):
            held[a.version].append(a.alias)
    items = tuple(
        VersionSummary(
            version=r.version,
            flavor=r.flavor,
            metrics=dict(r.metrics or {}),
            created_at=r.created_at,
            created_by=r.created_by,
            archived=bool(r.archived),
            aliases=tuple(held[r.version]),
        )
        for r in rows
    )
    return Page(items=items, page=page, page_size=page_size, total=int(total))


def alias_spans(events: Sequence[AliasEvent]) -> list[AliasSpan]:
    """Which version each alias held from when to when, newest first, from its moves (in any
    order; ``Registry.history`` gives them newest first)."""
    spans: list[AliasSpan] = []
    by_alias: dict[str, list[AliasEvent]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e.id):
        by_alias[event.alias].append(event)
    for alias, moves in by_alias.items():
        for i, move in enumerate(moves):
            end = moves[i + 1].at if i + 1 < len(moves) else None
            spans.append(
                AliasSpan(
                    alias=alias, version=move.to_version, start=move.at, end=end,
                    actor=move.actor, reason=move.reason, rollback=move.undoes is not None,
                )
            )  # fmt: skip
    spans.sort(key=lambda s: (s.start, s.alias), reverse=True)
    return spans


def _check_page(page: int, page_size: int) -> None:
    if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInputError(
            f"Page {page} of size {page_size} is out of range; pages start at 1 and hold 1 to "
            f"{MAX_PAGE_SIZE} items."
        )
