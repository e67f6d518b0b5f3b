"""Deployment rows: reading them back as records, and writing a change with its audit row.

Every change goes through ``apply_change`` inside one write transaction that holds the
deployment's row (``FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite): the row is
updated, its revision grows by one and the event is recorded, or nothing happens at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from modelyard.errors import DeploymentNotFoundError
from modelyard.rollout.types import Deployment, DeploymentEvent, Policy
from modelyard.store.schema import deployment_events, deployments


def not_found(name: str) -> DeploymentNotFoundError:
    return DeploymentNotFoundError(
        f"No deployment named {name!r}; run 'yard rollout list' to see the deployments or "
        f"create it with 'yard deploy {name} --model REF'."
    )


def deployment_row(conn: Connection, name: str, *, lock: bool = False) -> Row[Any]:
    query = sa.select(deployments).where(deployments.c.name == name)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise not_found(name)
    return row


def deployment_record(row: Row[Any]) -> Deployment:
    return Deployment(
        name=row.name,
        stable_model=row.stable_model,
        stable_version=row.stable_version,
        stable_alias=row.stable_alias,
        candidate_model=row.candidate_model,
        candidate_version=row.candidate_version,
        mode=row.mode,
        weight=row.weight,
        sticky_header=row.sticky_header,
        sticky_field=row.sticky_field,
        shadow_sample=row.shadow_sample,
        retry_on_stable=row.retry_on_stable,
        steps=tuple(float(s) for s in row.steps),
        bake_s=row.bake_s,
        step_index=row.step_index,
        step_started_at=row.step_started_at,
        auto=row.auto,
        policy=msgspec.convert(row.policy, Policy),
        state=row.state,
        revision=row.revision,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def event_record(row: Row[Any], name: str) -> DeploymentEvent:
    return DeploymentEvent(
        id=row.id,
        deployment=name,
        revision=row.revision,
        action=row.action,
        detail=row.detail,
        actor=row.actor,
        reason=row.reason,
        at=row.at,
    )


#: The column values of a deployment without a candidate.
NO_CANDIDATE: dict[str, Any] = {
    "candidate_model": None,
    "candidate_version": None,
    "mode": None,
    "weight": 0.0,
    "sticky_header": None,
    "sticky_field": None,
    "shadow_sample": 1.0,
    "steps": [],
    "bake_s": 0.0,
    "step_index": 0,
    "step_started_at": None,
    "auto": False,
}


def apply_change(
    conn: Connection,
    row: Row[Any],
    values: dict[str, Any],
    *,
    action: str,
    detail: dict[str, Any],
    actor: str,
    reason: str | None,
    now: datetime,
) -> Deployment:
    """Update the (locked) deployment ``row`` with ``values``, bump its revision, record why."""
    revision = row.revision + 1
    conn.execute(
        sa.update(deployments)
        .where(deployments.c.id == row.id)
        .values(**values, revision=revision, updated_at=now)
    )
    record_event(
        conn, row.id, revision, action=action, detail=detail, actor=actor, reason=reason, now=now
    )
    return deployment_record(deployment_row(conn, row.name))


def record_event(
    conn: Connection,
    deployment_id: int,
    revision: int,
    *,
    action: str,
    detail: dict[str, Any],
    actor: str,
    reason: str | None,
    now: datetime,
) -> None:
    conn.execute(
        sa.insert(deployment_events).values(
            deployment_id=deployment_id,
            revision=revision,
            action=action,
            detail=detail,
            actor=actor,
            reason=reason,
            at=now,
        )
    )
