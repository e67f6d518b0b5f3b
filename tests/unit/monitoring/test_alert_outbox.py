"""The alert outbox on SQLite and PostgreSQL: a notification that was not delivered is delivered
again in later rounds with its key, never while another evaluator holds it, and given up after
``MAX_DELIVERY_ROUNDS`` rounds. (A process killed mid-delivery: tests/integration/
test_alert_delivery.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from modelyard.monitoring.alerts import MAX_DELIVERY_ROUNDS, Delivery, ParsedRule, evaluate
from modelyard.store.db import Database
from modelyard.store.schema import alert_deliveries, alert_incidents
from tests.conftest import database_url
from tests.unit.monitoring.test_alerts import T0, Recorder, Values, parsed


@pytest.fixture
def db(backend: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(database_url(backend, tmp_path))
    yield database
    database.close()


def outbox(db: Database) -> list[Any]:
    with db.read() as conn:
        return list(conn.execute(sa.select(alert_deliveries).order_by(alert_deliveries.c.id)))


def notified(db: Database) -> bool:
    with db.read() as conn:
        return bool(conn.execute(sa.select(alert_incidents.c.notified)).scalar_one())


def test_a_failed_delivery_is_sent_again_with_its_key_until_it_is_taken(db: Database) -> None:
    rule, source, notifier = parsed(), Values(0.9), Recorder(error="h: HTTP 503 after 4 attempts")
    evaluate(db, [rule], source, now=T0, notifier=notifier)
    [row] = outbox(db)
    assert (row.delivered_at, row.attempts, row.claimed_until) == (None, 1, None)
    evaluate(db, [rule], source, now=T0 + timedelta(minutes=1), notifier=notifier)
    notifier.error = None
    evaluate(db, [rule], source, now=T0 + timedelta(minutes=2), notifier=notifier)
    evaluate(db, [rule], source, now=T0 + timedelta(minutes=3), notifier=notifier)
    keys = [p["idempotency_key"] for p in notifier.sent]
    assert len(keys) == 3 and len(set(keys)) == 1 and keys[0] == row.key
    assert notifier.sent[0] == notifier.sent[2]
    [row] = outbox(db)
    assert (row.delivered_at, row.attempts) == (T0 + timedelta(minutes=2), 3)
    assert notified(db)


def test_a_notification_that_never_goes_through_is_given_up(db: Database) -> None:
    rule, source, notifier = parsed(), Values(0.9), Recorder(error="h: HTTP 404 after 1 attempt")
    for minute in range(MAX_DELIVERY_ROUNDS + 3):
        evaluate(db, [rule], source, now=T0 + timedelta(minutes=minute), notifier=notifier)
    assert len(notifier.sent) == MAX_DELIVERY_ROUNDS
    [row] = outbox(db)
    assert (row.delivered_at, row.attempts) == (None, MAX_DELIVERY_ROUNDS)
    assert row.last_error == "h: HTTP 404 after 1 attempt" and not notified(db)


class Dies:
    """A notifier whose process 'dies' mid-delivery: it raises before anything is recorded."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def notify(self, rule: ParsedRule, payload: dict[str, Any]) -> Delivery:
        self.sent.append(payload)
        raise KeyboardInterrupt


def test_a_claimed_notification_waits_for_its_claim_to_run_out(db: Database) -> None:
    rule, source = parsed(), Values(0.9)
    with pytest.raises(KeyboardInterrupt):
        evaluate(db, [rule], source, now=T0, notifier=Dies(), claim_s=300)
    [row] = outbox(db)
    assert row.claimed_until == T0 + timedelta(seconds=300) and row.delivered_at is None
    # this process still runs, so only the claim's end frees it
    later = Recorder()
    evaluate(db, [rule], source, now=T0 + timedelta(minutes=4), notifier=later, claim_s=300)
    assert later.sent == []
    evaluate(db, [rule], source, now=T0 + timedelta(minutes=6), notifier=later, claim_s=300)
    assert [p["idempotency_key"] for p in later.sent] == [row.key]
    [row] = outbox(db)
    assert row.delivered_at == T0 + timedelta(minutes=6) and notified(db)


def test_a_notification_of_a_rule_no_longer_configured_is_given_up(db: Database) -> None:
    rule, source = parsed(), Values(0.9)
    evaluate(db, [rule], source, now=T0, notifier=Recorder(error="h: HTTP 500 after 4 attempts"))
    other, notifier = parsed(name="other"), Recorder()
    evaluate(db, [other], Values(None), now=T0 + timedelta(minutes=1), notifier=notifier)
    assert notifier.sent == []
    [row] = outbox(db)
    assert row.attempts == MAX_DELIVERY_ROUNDS and row.delivered_at is None
    assert row.last_error == "rule 'drifty' is no longer configured"
