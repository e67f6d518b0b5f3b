"""Reading registry rows back as domain records (batched: one query per table per page)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from modelyard.core.refs import ModelRef
from modelyard.core.types import (
    AliasEvent,
    ArtifactFile,
    Lineage,
    ModelVersion,
    RegisteredModel,
    Run,
    Signature,
)
from modelyard.errors import (
    AliasNotFoundError,
    ModelNotFoundError,
    RunNotFoundError,
    VersionNotFoundError,
)
from modelyard.store.schema import (
    alias_events,
    aliases,
    model_versions,
    models,
    runs,
    version_files,
    version_tags,
)

VERSION_COLUMNS = (model_versions, models.c.name)


def model_row(conn: Connection, name: str, *, lock: bool = False) -> Row[Any]:
    query = sa.select(models).where(models.c.name == name)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise ModelNotFoundError(
            f"No model named {name!r} is registered; run 'yard models list' to see the models."
        )
    return row


def resolve_version_number(conn: Connection, ref: ModelRef, model: Row[Any]) -> int:
    """The version number a reference points to (latest, pinned, or through an alias)."""
    if ref.version is not None:
        return ref.version
    if ref.alias is not None:
        target = conn.execute(
            sa.select(aliases.c.version).where(
                aliases.c.model_id == model.id, aliases.c.alias == ref.alias
            )
        ).scalar()
        if target is None:
            known = conn.execute(
                sa.select(aliases.c.alias).where(aliases.c.model_id == model.id)
            ).scalars()
            names = ", ".join(sorted(known)) or "none"
            raise AliasNotFoundError(
                f"Model {ref.name!r} has no alias {ref.alias!r} (aliases: {names}); "
                f"set one with 'yard models alias {ref.name}/VERSION {ref.alias}'."
            )
        return int(target)
    if model.latest_version == 0:
        raise VersionNotFoundError(f"Model {ref.name!r} has no versions yet; register one first.")
    return int(model.latest_version)


def version_row(conn: Connection, model: Row[Any], number: int) -> Row[Any]:
    row = conn.execute(
        sa.select(*VERSION_COLUMNS)
        .join(models, models.c.id == model_versions.c.model_id)
        .where(model_versions.c.model_id == model.id, model_versions.c.version == number)
    ).first()
    if row is None:
        raise VersionNotFoundError(
            f"Model {model.name!r} has no version {number} (latest is {model.latest_version}); "
            f"run 'yard models list {model.name}'."
        )
    return row


def fetch_version(conn: Connection, ref: ModelRef) -> ModelVersion:
    model = model_row(conn, ref.name)
    row = version_row(conn, model, resolve_version_number(conn, ref, model))
    return versions_from_rows(conn, [row])[0]


def versions_from_rows(conn: Connection, rows: Sequence[Row[Any]]) -> list[ModelVersion]:
    """Build ModelVersion records for ``rows`` with their files, tags and aliases in 3 queries."""
    if not rows:
        return []
    ids = [row.id for row in rows]
    files: dict[int, list[ArtifactFile]] = defaultdict(list)
    for f in conn.execute(
        sa.select(version_files)
        .where(version_files.c.version_id.in_(ids))
        .order_by(version_files.c.version_id, version_files.c.name)
    ):
        files[f.version_id].append(
            ArtifactFile(role=f.role, name=f.name, sha256=f.sha256, size_bytes=f.size_bytes)
        )
    tags: dict[int, dict[str, str]] = defaultdict(dict)
    for t in conn.execute(sa.select(version_tags).where(version_tags.c.version_id.in_(ids))):
        tags[t.version_id][t.key] = t.value
    alias_names: dict[tuple[int, int], list[str]] = defaultdict(list)
    model_ids = {row.model_id for row in rows}
    for a in conn.execute(
        sa.select(aliases).where(aliases.c.model_id.in_(model_ids)).order_by(aliases.c.alias)
    ):
        alias_names[(a.model_id, a.version)].append(a.alias)
    return [
        _version(row, files[row.id], tags[row.id], alias_names[(row.model_id, row.version)])
        for row in rows
    ]


def _version(
    row: Row[Any], files: list[ArtifactFile], tags: dict[str, str], alias_list: list[str]
) -> ModelVersion:
    return ModelVersion(
        name=row.name,
        version=row.version,
        flavor=row.flavor,
        files=tuple(files),
        signature=msgspec.convert(row.signature, Signature) if row.signature else None,
        input_example=row.input_example,
        flavor_meta=row.flavor_meta,
        metrics=row.metrics,
        params=row.params,
        tags=tags,
        description=row.description,
        lineage=msgspec.convert(row.lineage, Lineage),
        run_id=row.run_id,
        created_by=row.created_by,
        created_at=row.created_at,
        archived=row.archived,
        untrusted=row.untrusted,
        aliases=tuple(alias_list),
    )


def registered_model(conn: Connection, row: Row[Any]) -> RegisteredModel:
    alias_map = {
        a.alias: a.version
        for a in conn.execute(sa.select(aliases).where(aliases.c.model_id == row.id))
    }
    return RegisteredModel(
        name=row.name,
        latest_version=row.latest_version,
        description=row.description,
        created_at=row.created_at,
        updated_at=row.updated_at,
        aliases=alias_map,
    )


def alias_event(row: Row[Any], name: str) -> AliasEvent:
    return AliasEvent(
        id=row.id,
        name=name,
        alias=row.alias,
        from_version=row.from_version,
        to_version=row.to_version,
        actor=row.actor,
        reason=row.reason,
        at=row.at,
        undoes=row.undoes,
    )


def last_alias_event(conn: Connection, model: Row[Any], alias: str) -> Row[Any] | None:
    return conn.execute(
        sa.select(alias_events)
        .where(alias_events.c.model_id == model.id, alias_events.c.alias == alias)
        .order_by(alias_events.c.id.desc())
        .limit(1)
    ).first()


def run_record(row: Row[Any]) -> Run:
    return Run(
        id=row.id,
        name=row.name,
        status=row.status,
        start_time=row.start_time,
        end_time=row.end_time,
        params=row.params,
        metrics=row.metrics,
        tags=row.tags,
        user=row.user,
    )


def fetch_run(conn: Connection, run_id: str) -> Run:
    row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
    if row is None:
        raise RunNotFoundError(f"No run {run_id!r}; run 'yard runs list' to see the runs.")
    return run_record(row)
