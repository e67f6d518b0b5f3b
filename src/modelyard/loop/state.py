"""The loop's state in the metadata store: one row per deployment (``loop_states``) and every
transition with its evidence (``loop_transitions``).

Every change is conditional on the revision read: of two controllers (or a controller and a
person) acting on the same state, one records the transition and the other is told it lost
(``None``). The transition that starts a loop carries the trigger's key, unique per deployment,
so one trigger starts at most one loop, ever.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import sqlalchemy as sa

from modelyard.errors import ConcurrentUpdateError, ConflictError, NotFoundError
from modelyard.store.schema import loop_states, loop_transitions

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from modelyard.store.db import Database

__all__ = [
    "ACTIVE",
    "ENDED",
    "LoopState",
    "LoopStatus",
    "State",
    "Transition",
    "advance",
    "approve",
    "ensure_state",
    "loop_status",
    "read_state",
    "reject",
    "trigger",
]

State = Literal[
    "idle", "triggered", "training", "gating", "canary", "waiting_approval", "promoted",
    "rejected",
]  # fmt: skip
#: States in which a loop is under way (a new trigger is ignored).
ACTIVE: tuple[State, ...] = ("triggered", "training", "gating", "canary", "waiting_approval")
#: States a loop ends in (the cooldown runs from ``ended_at``).
ENDED: tuple[State, ...] = ("promoted", "rejected")


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    """One recorded change (``from_state == to_state`` for a person's decision or a rerun)."""

    loop: int
    revision: int
    from_state: str
    to_state: str
    trigger_key: str | None
    evidence: dict[str, Any]
    actor: str
    reason: str | None
    at: datetime


class LoopState(msgspec.Struct, frozen=True, kw_only=True):
    """A deployment's loop as stored: ``detail`` is what the current loop has gathered."""

    deployment: str
    state: State
    revision: int
    loop: int
    since: datetime
    trigger_key: str | None
    trigger: dict[str, Any] | None
    run_id: str | None
    candidate: str | None
    detail: dict[str, Any]
    decision: str | None
    decided_by: str | None
    decision_reason: str | None
    reason: str | None
    ended_at: datetime | None
    notified: bool | None
    notify_error: str | None


class LoopStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What ``yard loop status`` shows: the state and the current (or last) loop's
    transitions, oldest first."""

    deployment: str
    state: State
    since: datetime
    loop: int
    trigger: dict[str, Any] | None
    trigger_key: str | None
    candidate: str | None
    run_id: str | None
    reason: str | None
    ended_at: datetime | None
    decision: str | None
    decided_by: str | None
    notified: bool | None
    notify_error: str | None
    transitions: tuple[Transition, ...]


# -- reading ------------------------------------------------------------------------------------


def read_state(db: Database, deployment: str) -> LoopState | None:
    with db.read() as conn:
        row = conn.execute(
            sa.select(loop_states).where(loop_states.c.deployment == deployment)
        ).first()
    return _state(row) if row is not None else None


def ensure_state(db: Database, deployment: str, *, now: datetime | None = None) -> LoopState:
    """The deployment's state, created ``idle`` on first use (first writer wins)."""
    found = read_state(db, deployment)
    if found is not None:
        return found
    values = {
        "deployment": deployment, "state": "idle", "revision": 0, "loop": 0,
        "since": now or datetime.now(UTC), "detail": {},
    }  # fmt: skip
    with db.write() as conn:
        conn.execute(_insert_new(db.dialect).values(**values))
    created = read_state(db, deployment)
    assert created is not None
    return created


def loop_status(db: Database, deployment: str | None = None) -> list[LoopStatus]:
    """Each deployment's loop (one when ``deployment`` is given: ``NotFoundError`` when it has
    none yet), with the transitions of its current or last loop."""
    query = sa.select(loop_states).order_by(loop_states.c.deployment)
    if deployment is not None:
        query = query.where(loop_states.c.deployment == deployment)
    with db.read() as conn:
        states = [_state(row) for row in conn.execute(query)]
        if deployment is not None and not states:
            raise NotFoundError(
                f"Deployment {deployment!r} has no loop yet; configure [loops.{deployment}] and "
                f"run 'yard loop run', or start one with 'yard loop trigger {deployment}'."
            )
        return [
            LoopStatus(
                deployment=s.deployment,
                state=s.state,
                since=s.since,
                loop=s.loop,
                trigger=s.trigger,
                trigger_key=s.trigger_key,
                ended_at=s.ended_at,
                candidate=s.candidate,
                run_id=s.run_id,
                reason=s.reason,
                decision=s.decision,
                decided_by=s.decided_by,
                notified=s.notified,
                notify_error=s.notify_error,
                transitions=tuple(_transitions(conn, s)),
            )
            for s in states
        ]


def _transitions(conn: Connection, state: LoopState) -> list[Transition]:
    rows = conn.execute(
        sa.select(loop_transitions)
        .where(loop_transitions.c.deployment == state.deployment)
        .where(loop_transitions.c.loop == state.loop)
        .order_by(loop_transitions.c.revision)
    )
    return [
        Transition(**{c: getattr(row, c) for c in Transition.__struct_fields__}) for row in rows
    ]


# -- writing ------------------------------------------------------------------------------------


def advance(
    db: Database,
    current: LoopState,
    to: State,
    *,
    evidence: dict[str, Any],
    actor: str,
    reason: str | None = None,
    values: dict[str, Any] | None = None,
    trigger_key: str | None = None,
    now: datetime | None = None,
) -> LoopState | None:
    """Move ``current`` to ``to`` and record the transition, if nobody changed the state since
    it was read; ``None`` when someone did (or, with ``trigger_key``, when that trigger already
    started a loop)."""
    when = now or datetime.now(UTC)
    changes: dict[str, Any] = {"state": to, "revision": current.revision + 1, "since": when}
    if to != current.state or values:
        changes.update(values or {})
    else:
        changes.pop("since")  # a decision or a rerun: the state has not changed
    if to in ENDED:
        changes.setdefault("ended_at", when)
    loop = int(changes.get("loop", current.loop))
    try:
        with db.write() as conn:
            written = conn.execute(
                sa.update(loop_states)
                .where(
                    loop_states.c.deployment == current.deployment,
                    loop_states.c.revision == current.revision,
                )
                .values(**changes)
                .returning(loop_states.c.deployment)
            ).first()
            if written is None:
                return None
            conn.execute(
                sa.insert(loop_transitions).values(
                    deployment=current.deployment,
                    loop=loop,
                    revision=current.revision + 1,
                    from_state=current.state,
                    to_state=to,
                    trigger_key=trigger_key,
                    evidence=_jsonable(evidence),
                    actor=actor,
                    reason=reason,
                    at=when,
                )
            )
    except sa.exc.IntegrityError:  # the same revision or trigger key, recorded by another
        return None
    return read_state(db, current.deployment)


def start(
    db: Database,
    current: LoopState,
    *,
    key: str,
    trigger_info: dict[str, Any],
    actor: str,
    reason: str | None = None,
    now: datetime | None = None,
) -> LoopState | None:
    """Start loop number ``current.loop + 1`` for the trigger ``key`` (``None``: someone else
    changed the state first, or this trigger already started a loop)."""
    values = {
        "loop": current.loop + 1, "trigger_key": key, "trigger": _jsonable(trigger_info),
        "run_id": None, "candidate": None, "detail": {}, "decision": None, "decided_by": None,
        "decision_reason": None, "reason": None, "ended_at": None, "notified": None,
        "notify_error": None,
    }  # fmt: skip
    return advance(
        db, current, "triggered", evidence={"trigger": trigger_info}, actor=actor, reason=reason,
        values=values, trigger_key=key, now=now,
    )  # fmt: skip


def seen_trigger(db: Database, deployment: str, key: str) -> bool:
    """Whether trigger ``key`` has started a loop of ``deployment`` already."""
    with db.read() as conn:
        found = conn.execute(
            sa.select(loop_transitions.c.id).where(
                loop_transitions.c.deployment == deployment,
                loop_transitions.c.trigger_key == key,
            )
        ).first()
    return found is not None


def trigger(db: Database, deployment: str, reason: str, *, actor: str = "cli") -> LoopState:
    """Start a loop of ``deployment`` now (cooldown or not); ``ConflictError`` while one runs
    or while the deployment has a candidate (its canary would collide with the loop's)."""
    from modelyard.rollout.queries import get_deployment

    serving = get_deployment(db, deployment)  # DeploymentNotFoundError for an unknown name
    if serving.active:
        raise ConflictError(
            f"Deployment {deployment!r} has candidate {serving.candidate_ref} ({serving.state}); "
            f"promote or abort it ('yard rollout promote|abort {deployment}') before a loop."
        )
    current = ensure_state(db, deployment)
    if current.state in ACTIVE:
        raise ConflictError(
            f"Deployment {deployment!r} is already in loop {current.loop} ({current.state}); "
            f"see 'yard loop status {deployment}', or reject it first."
        )
    info = {"kind": "manual", "reason": reason, "by": actor}
    started = start(
        db, current, key=f"manual:{uuid.uuid4().hex}", trigger_info=info, actor=actor,
        reason=reason,
    )  # fmt: skip
    if started is None:
        raise ConcurrentUpdateError(
            f"The loop of deployment {deployment!r} changed while it was triggered; see "
            f"'yard loop status {deployment}' and try again."
        )
    return started


def approve(db: Database, deployment: str, reason: str, actor: str) -> LoopState:
    """Let a candidate waiting for approval be promoted (the controller promotes it)."""
    return _decide(db, deployment, "approved", reason, actor, allowed=("waiting_approval",))


def reject(db: Database, deployment: str, reason: str, actor: str) -> LoopState:
    """End the current loop without promotion: the controller aborts its candidate, if any,
    and the serving version stays."""
    return _decide(db, deployment, "rejected", reason, actor, allowed=ACTIVE)


def _decide(
    db: Database,
    deployment: str,
    decision: str,
    reason: str,
    actor: str,
    *,
    allowed: tuple[State, ...],
) -> LoopState:
    current = read_state(db, deployment)
    if current is None or current.state not in allowed:
        state = current.state if current is not None else "idle"
        verb = "approve" if decision == "approved" else "reject"
        wanted = " or ".join(allowed)
        raise ConflictError(
            f"Deployment {deployment!r}'s loop is {state}, not {wanted}, so there is nothing to "
            f"{verb}; see 'yard loop status {deployment}'."
        )
    if current.decision is not None:
        raise ConflictError(
            f"Loop {current.loop} of deployment {deployment!r} was already {current.decision} "
            f"by {current.decided_by}; see 'yard loop status {deployment}'."
        )
    values = {"decision": decision, "decided_by": actor, "decision_reason": reason}
    changed = advance(
        db, current, current.state, evidence={"decision": decision, "by": actor},
        actor=actor, reason=reason, values=values,
    )  # fmt: skip
    if changed is None:
        raise ConcurrentUpdateError(
            f"The loop of deployment {deployment!r} changed while it was {decision}; see "
            f"'yard loop status {deployment}' and try again."
        )
    return changed


def mark_notified(
    db: Database,
    deployment: str,
    revision: int,
    *,
    notified: bool,
    error: str | None,
    detail: dict[str, Any],
) -> None:
    """Record how the alert of an ended loop went (no new revision: it is not a transition)."""
    with db.write() as conn:
        conn.execute(
            sa.update(loop_states)
            .where(loop_states.c.deployment == deployment, loop_states.c.revision == revision)
            .values(notified=notified, notify_error=error, detail=_jsonable(detail))
        )


# -- helpers ------------------------------------------------------------------------------------


def _state(row: sa.Row[Any]) -> LoopState:
    return LoopState(**{c: getattr(row, c) for c in LoopState.__struct_fields__})


def _jsonable(value: dict[str, Any]) -> dict[str, Any]:
    """Plain JSON (datetimes as ISO text, structs as dicts) for a JSON column."""
    result: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(value))
    return result


def _insert_new(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(loop_states).on_conflict_do_nothing(index_elements=["deployment"])
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(loop_states).on_conflict_do_nothing(index_elements=["deployment"])
