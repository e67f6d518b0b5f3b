"""Reading deployments: the whole record, the cheap revision poll servers use, the audit log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa

from modelyard.rollout._rows import deployment_record, deployment_row, event_record, not_found
from modelyard.rollout.types import Deployment, DeploymentEvent
from modelyard.store.schema import deployment_events, deployments

if TYPE_CHECKING:
    from modelyard.store.db import Database


def get_deployment(db: Database, name: str) -> Deployment:
    """The deployment ``name``; ``DeploymentNotFoundError`` when there is none."""
    with db.read() as conn:
        return deployment_record(deployment_row(conn, name))


def deployment_revision(db: Database, name: str) -> int:
    """The deployment's revision (one indexed lookup): it grows by one on every change, so a
    server polls this and reloads the deployment only when the number moved."""
    with db.read() as conn:
        value = conn.execute(
            sa.select(deployments.c.revision).where(deployments.c.name == name)
        ).scalar()
    if value is None:
        raise not_found(name)
    return int(value)


def deployment_revisions(db: Database, names: Sequence[str] | None = None) -> dict[str, int]:
    """Revisions of several deployments in one query (all of them when ``names`` is ``None``);
    names without a deployment are left out."""
    query = sa.select(deployments.c.name, deployments.c.revision)
    if names is not None:
        query = query.where(deployments.c.name.in_(list(names)))
    with db.read() as conn:
        return {row.name: int(row.revision) for row in conn.execute(query)}


def list_deployments(db: Database) -> list[Deployment]:
    """Every deployment, by name."""
    with db.read() as conn:
        rows = conn.execute(sa.select(deployments).order_by(deployments.c.name))
        return [deployment_record(row) for row in rows]


def history(db: Database, name: str, *, limit: int = 100) -> list[DeploymentEvent]:
    """The deployment's audited changes, newest first."""
    with db.read() as conn:
        row = deployment_row(conn, name)
        events = conn.execute(
            sa.select(deployment_events)
            .where(deployment_events.c.deployment_id == row.id)
            .order_by(deployment_events.c.id.desc())
            .limit(limit)
        )
        return [event_record(event, name) for event in events]
