"""The outbox of alert notifications (``alert_deliveries``), which makes delivery at least once:
``enqueue`` writes a notification in the transaction that fires or resolves its incident, claimed
by the writing process; ``record_delivery`` marks it delivered (or releases it) together with the
incident; ``redeliver`` sends the pending ones again, each taken by one evaluator at a time."""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from modelyard.store.schema import alert_deliveries, alert_incidents

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from modelyard.monitoring.alert_rules import ParsedRule
    from modelyard.monitoring.notify import Delivery, Notifier
    from modelyard.store.db import Database

__all__ = ["MAX_DELIVERY_ROUNDS", "Outbox", "enqueue", "record_delivery", "redeliver"]

logger = logging.getLogger("modelyard.monitoring.alerts")

#: Rounds a pending notification is delivered again before it is given up (each round retries
#: every webhook with backoff); the incident keeps the last error.
MAX_DELIVERY_ROUNDS = 10

#: A notification in the outbox: its row id, ``firing`` or ``resolved``, and the payload.
Outbox = tuple[int, Literal["firing", "resolved"], dict[str, Any]]


def enqueue(
    conn: Connection,
    rule: ParsedRule,
    incident: int,
    status: Literal["firing", "resolved"],
    payload: dict[str, Any],
    *,
    now: datetime,
    claim: timedelta,
) -> Outbox:
    """Write a notification to the outbox, claimed by this evaluator for ``claim``."""
    key = f"modelyard-{uuid.uuid4().hex}"
    payload = {**payload, "idempotency_key": key}
    found = conn.execute(
        sa.insert(alert_deliveries)
        .values(
            incident_id=incident, status=status, key=key, rule=rule.name,
            payload=json.dumps(payload), created_at=now, claimed_by=_claimer(),
            claimed_until=now + claim, attempts=0,
        )
        .returning(alert_deliveries.c.id)
    )  # fmt: skip
    return int(found.scalar_one()), status, payload


def redeliver(
    db: Database,
    rules: Sequence[ParsedRule],
    notifier: Notifier,
    *,
    now: datetime,
    claim: timedelta,
) -> int:
    """Deliver again every pending notification whose claim has run out (its delivery failed,
    or its evaluator died before recording it), with its original payload and idempotency key;
    returns how many were delivered now. One whose rule is gone is given up."""
    by_name = {r.name: r for r in rules}
    c = alert_deliveries.c
    pending = (
        sa.select(alert_deliveries)
        .where(c.delivered_at.is_(None), c.attempts < MAX_DELIVERY_ROUNDS)
        .order_by(c.id)
    )
    with db.read() as conn:
        rows = [row for row in conn.execute(pending) if _released(row, now)]
    delivered = 0
    for row in rows:
        rule = by_name.get(row.rule)
        if rule is None:
            with db.write() as conn:
                conn.execute(
                    sa.update(alert_deliveries).where(c.id == row.id).values(
                        attempts=MAX_DELIVERY_ROUNDS,
                        last_error=f"rule {row.rule!r} is no longer configured",
                    )
                )  # fmt: skip
            continue
        if not _claim(db, row, until=now + claim):
            continue  # another evaluator took it
        logger.info("alert rule %s: delivering %s notification %s again", rule.name, row.status,
                    row.key)  # fmt: skip
        delivery = notifier.notify(rule, json.loads(row.payload))
        delivered += record_delivery(db, row.id, row.incident_id, row.status, delivery, now=now)
    return delivered


def _claimer() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:128]


def _released(row: sa.Row[Any], now: datetime) -> bool:
    """Whether nobody is delivering a pending notification: never claimed or released, its
    claim ran out, or the claiming process no longer runs (when it ran on this host)."""
    if row.claimed_until is None or row.claimed_until < now:
        return True
    host, _, pid = str(row.claimed_by or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. another user's process: it runs
        return False
    return False


def _claim(db: Database, row: sa.Row[Any], *, until: datetime) -> bool:
    """Take a pending notification from the claim it had when read (a conditional write: one
    taker wins)."""
    c = alert_deliveries.c
    with db.write() as conn:
        taken = conn.execute(
            sa.update(alert_deliveries)
            .where(c.id == row.id, c.delivered_at.is_(None))
            .where(c.claimed_by.is_not_distinct_from(row.claimed_by))
            .where(c.claimed_until.is_not_distinct_from(row.claimed_until))
            .values(claimed_by=_claimer(), claimed_until=until)
            .returning(c.id)
        ).first()
    return taken is not None


def record_delivery(
    db: Database,
    delivery_id: int,
    incident: int,
    status: str,
    delivery: Delivery,
    *,
    now: datetime,
) -> bool:
    """Record a delivery on the incident and its outbox row, in one transaction: delivered when
    no webhook failed (there may be none), else released for a later round. Returns whether
    it was delivered."""
    ok = delivery.error is None and delivery.delivered > 0
    values: dict[str, Any] = {"notified" if status == "firing" else "resolve_notified": ok}
    if delivery.error is not None:
        values["notify_error"] = f"{status}: {delivery.error}"
    if status == "firing":
        values.update(command_exit=delivery.command_exit, command_error=delivery.command_error)
    done = delivery.error is None
    outbox: dict[str, Any] = {
        "claimed_by": None, "claimed_until": None, "last_error": delivery.error,
    }  # fmt: skip
    outbox["attempts"] = alert_deliveries.c.attempts + 1
    if done:
        outbox["delivered_at"] = now
    with db.write() as conn:
        conn.execute(
            sa.update(alert_incidents).where(alert_incidents.c.id == incident).values(**values)
        )
        conn.execute(
            sa.update(alert_deliveries).where(alert_deliveries.c.id == delivery_id).values(**outbox)
        )
    return done
