"""Deployments that follow an alias move with it, in the alias move's own transaction.

A deployment created from ``churn@production`` remembers the alias (``stable_alias``). When the
alias moves (``yard models alias``, ``yard models rollback``, a promotion), every deployment
following it gets the new stable version as a new revision with a ``follow`` event, which
servers load, warm and swap in as for any other change. The move is refused while a following
deployment rolls out a candidate (its promotion is what moves the alias) and when the alias
would be removed.

This writes the rollout layer's tables from below it: the alias move and the deployment change
must be one commit, and the registry cannot import ``modelyard.rollout``. Only the columns a
stable route needs are touched; ``modelyard.rollout._rows`` owns the rest.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from modelyard.errors import ConflictError
from modelyard.store.schema import deployment_events, deployments


def follow_alias(
    conn: Connection,
    name: str,
    alias: str,
    to_version: int | None,
    *,
    actor: str,
    reason: str | None,
    now: datetime,
) -> list[str]:
    """Point the deployments that follow ``name@alias`` at ``to_version``; their names."""
    rows = conn.execute(
        sa.select(deployments)
        .where(deployments.c.stable_model == name, deployments.c.stable_alias == alias)
        .order_by(deployments.c.name)
        .with_for_update()
    ).all()
    moved = []
    for row in rows:
        if to_version is None:
            raise ConflictError(
                f"Deployment {row.name!r} follows {name}@{alias}; pin it to a version first with "
                f"'yard deploy {row.name} --model {name}/{row.stable_version}', then remove the "
                "alias."
            )
        if row.candidate_model is not None:
            raise ConflictError(
                f"Deployment {row.name!r} follows {name}@{alias} and is rolling out candidate "
                f"{row.candidate_model}/{row.candidate_version} ({row.state}); promote it with "
                f"'yard rollout promote {row.name}' or abort it with 'yard rollout abort "
                f"{row.name} --reason ...' before moving the alias."
            )
        if row.stable_version == to_version:
            continue
        revision = row.revision + 1
        conn.execute(
            sa.update(deployments)
            .where(deployments.c.id == row.id)
            .values(stable_version=to_version, revision=revision, updated_at=now)
        )
        conn.execute(
            sa.insert(deployment_events).values(
                deployment_id=row.id,
                revision=revision,
                action="follow",
                detail={
                    "alias": f"{name}@{alias}",
                    "from": f"{name}/{row.stable_version}",
                    "to": f"{name}/{to_version}",
                },
                actor=actor,
                reason=reason,
                at=now,
            )
        )
        moved.append(row.name)
    return moved
