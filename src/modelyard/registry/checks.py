"""The audit of verifications: each check of a version's files (who, when, which files failed) is
recorded, so that a verify, which changes nothing else, still leaves a trace with its actor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from modelyard.store.schema import version_checks


@dataclass(frozen=True, slots=True)
class VersionCheck:
    """One verification of a version's files: ``failed`` names the files that did not match."""

    actor: str
    at: datetime
    ok: bool
    failed: tuple[str, ...]


def record_check(
    conn: Connection, model_id: int, version: int, *, actor: str, failed: Sequence[str]
) -> VersionCheck:
    check = VersionCheck(actor, datetime.now(UTC), not failed, tuple(failed))
    conn.execute(
        sa.insert(version_checks).values(
            model_id=model_id, version=version, actor=actor, at=check.at, ok=check.ok,
            failed=list(check.failed),
        )
    )  # fmt: skip
    return check


def list_checks(conn: Connection, model_id: int, version: int, *, limit: int) -> list[VersionCheck]:
    """The latest ``limit`` checks of a version, newest first."""
    rows = conn.execute(
        sa.select(version_checks)
        .where(version_checks.c.model_id == model_id, version_checks.c.version == version)
        .order_by(version_checks.c.id.desc())
        .limit(limit)
    ).all()
    return [VersionCheck(r.actor, r.at, bool(r.ok), tuple(r.failed)) for r in rows]
