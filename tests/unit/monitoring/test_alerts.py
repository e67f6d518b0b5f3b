"""Alert rules: validation (one clear line, nothing written), the evaluation state machine on the
real metadata database, webhook delivery against a real loopback receiver, and rule commands."""

from __future__ import annotations

import json
import math
import re
import socket
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from modelyard.errors import ConfigError, StorageError
from modelyard.monitoring.alerts import (
    AlertOutcome,
    Delivery,
    ParsedRule,
    WebhookNotifier,
    alert_history,
    evaluate,
    validate_rules,
)
from modelyard.settings import AlertRule
from modelyard.store.db import Database
from modelyard.store.schema import alert_incidents, alert_states
from tests.conftest import database_url

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Receiver:
    """A real webhook receiver on a loopback port: records each POST and answers with the next
    of ``statuses`` (200 once they run out)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.paths: list[str] = []
        self.content_types: list[str | None] = []
        self.statuses: list[int] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.bodies.append(body)
                    receiver.paths.append(self.path)
                    receiver.content_types.append(self.headers.get("Content-Type"))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rule(**values: Any) -> AlertRule:
    fields: dict[str, Any] = {
        "name": "drifty", "deployment": "churn", "metric": "drift_share", "op": ">=",
        "threshold": 0.5, "window": "1h",
    }  # fmt: skip
    fields.update(values)
    return AlertRule.model_validate(fields)


def parsed(**values: Any) -> ParsedRule:
    return validate_rules([rule(**values)])[0]


@pytest.fixture
def db(backend: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(database_url(backend, tmp_path))
    yield database
    database.close()


class Recorder:
    """A notifier that keeps what it was asked to send (the engine's real interface)."""

    def __init__(self, error: str | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.error = error

    def notify(self, rule: ParsedRule, payload: dict[str, Any]) -> Delivery:
        self.sent.append(payload)
        return Delivery(delivered=0 if self.error else 1, error=self.error)


class Values:
    """A metric source that returns the value set last (None: no data)."""

    def __init__(self, value: float | None = None) -> None:
        self.value = value
        self.calls = 0

    def __call__(self, rule: ParsedRule, now: datetime) -> float | None:
        self.calls += 1
        return self.value


def rows(db: Database) -> tuple[list[Any], list[Any]]:
    with db.read() as conn:
        states = list(conn.execute(sa.select(alert_states)))
        incidents = list(conn.execute(sa.select(alert_incidents).order_by(alert_incidents.c.id)))
    return states, incidents


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"metric": "drift_shar"},
            "metric 'drift_shar' is unknown; use drift_share, drift:<column>",
        ),
        ({"metric": "drift:"}, "metric 'drift:' names no column; use e.g. drift:age"),
        (
            {"metric": "null_drift: "},
            "metric 'null_drift: ' names no column; use e.g. null_drift:age",
        ),
        ({"metric": "output_drift: "}, "metric 'output_drift: ' names no output"),
        ({"metric": "performance:auc"}, "'auc' is not a performance metric; use one of accuracy"),
        ({"metric": "latency"}, "metric 'latency' is unknown"),
        ({"window": "5x"}, "window '5x' is not a duration; use e.g. window = \"15m\""),
        ({"window": "0s"}, "window '0s' is empty; use a positive duration"),
        ({"window": "-1h"}, "window '-1h' is not a duration"),
        ({"for": "5 minutes"}, "for = '5 minutes' is not a duration; use e.g. for = \"5m\""),
        ({"threshold": math.nan}, "threshold nan is not a finite number"),
        ({"threshold": math.inf}, "threshold inf is not a finite number"),
        ({"webhooks": ["ftp://example.com/x"]}, "webhooks[0] 'ftp://example.com/…' is not an"),
        ({"webhooks": ["hooks.example.com/T0/B0/secret"]}, "webhooks[0] 'hooks.exampl…' is not"),
        ({"webhooks": ["https://h.example:99999/x"]}, "webhooks[0] 'https://h.example/…' is not"),
        ({"webhooks": ["http://[::1/x"]}, "webhooks[0] 'http://…' is not an http(s) URL"),
        ({"command": "  "}, "command is blank; remove it or give a shell command"),
        ({"name": " "}, "rules[1]: the name is blank; give the rule a name"),
        ({"name": "x" * 129}, "the name is longer than 128 characters"),
        ({"deployment": "d" * 129}, "deployment 'ddd"),
    ],
)
def test_an_invalid_rule_is_refused_with_one_line_naming_it(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_rules([rule(name="fine"), rule(**{"name": "drifty", **values})])
    text = str(caught.value)
    assert "\n" not in text
    assert message in text
    assert "monitoring.alerts.rules[1]" in text


def test_the_secret_part_of_a_webhook_is_not_in_the_message() -> None:
    with pytest.raises(ConfigError) as caught:
        validate_rules([rule(webhooks=["ftp://hooks.example.com/T0/B0/s3cr3t"])])
    assert "s3cr3t" not in str(caught.value)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(
        ConfigError,
        match=r"'b' \(monitoring.alerts.rules\[2\]\): the name is already used by rules\[1\]",
    ):
        validate_rules([rule(name="a"), rule(name="b"), rule(name="b")])


def test_a_bad_settings_wide_webhook_is_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"monitoring.alerts.webhooks\[1\] 'mailto:alert…' is not"
    ):
        validate_rules([rule()], webhooks=["https://ok.example.com/hook", "mailto:alerts@x.org"])


def test_a_rule_made_without_validation_is_still_checked() -> None:
    bad = AlertRule.model_construct(
        name="r", deployment="d", metric="rows", op="=>", threshold=1.0, window="1h", hold="0s",
        webhooks=[], command=None,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="op '=>' is not a comparator; use >, >=, < or <="):
        validate_rules([bad])


def test_valid_rules_are_parsed() -> None:
    rules = validate_rules(
        [
            rule(name="a", metric="drift:age", window="90m", **{"for": "1h30m"}),
            rule(name="b", metric="performance:roc_auc", op="<", threshold=0.7, window="1d"),
            rule(name="c", metric="p99_latency_ms", threshold=250, window="300"),
            rule(name="d", metric="output_drift:proba_1", webhooks=["https://h.example/x"]),
        ]
    )
    assert [(r.name, r.window_s, r.hold_s) for r in rules] == [
        ("a", 5400.0, 5400.0), ("b", 86400.0, 0.0), ("c", 300.0, 0.0), ("d", 3600.0, 0.0),
    ]  # fmt: skip
    assert rules[1].holds(0.69) and not rules[1].holds(0.7)
    assert rules[3].webhooks == ("https://h.example/x",)


def test_nothing_is_evaluated_or_written_when_a_rule_is_invalid(db: Database) -> None:
    source = Values(0.9)
    with pytest.raises(ConfigError):
        evaluate(db, validate_rules([rule(), rule(name="x", window="soon")]), source, now=T0)
    assert source.calls == 0
    assert rows(db) == ([], [])


# --- the state machine -----------------------------------------------------------------------


def test_fires_once_stays_quiet_resolves_and_opens_a_new_incident(db: Database) -> None:
    r = parsed(**{"for": "5m"})
    source, notifier = Values(0.6), Recorder()

    def at(minutes: float) -> AlertOutcome:
        return evaluate(db, [r], source, now=T0 + timedelta(minutes=minutes), notifier=notifier)[0]

    first = at(0)
    assert (first.state, first.since, first.event, first.incident) == ("pending", T0, None, None)
    assert at(4).state == "pending"
    assert notifier.sent == []

    fired = at(5)
    assert (fired.state, fired.event, fired.since) == ("firing", "fired", T0)
    assert [p["status"] for p in notifier.sent] == ["firing"]
    payload = notifier.sent[0]
    assert payload == {
        "status": "firing", "rule": "drifty", "deployment": "churn", "metric": "drift_share",
        "op": ">=", "threshold": 0.5, "value": 0.6, "window": "1h",
        "started_at": "2026-03-01T12:00:00+00:00", "fired_at": "2026-03-01T12:05:00+00:00",
        "resolved_at": None, "incident": fired.incident,
        "idempotency_key": payload["idempotency_key"],  # one per notification, on every attempt
    }  # fmt: skip
    assert re.fullmatch(r"modelyard-[0-9a-f]{32}", payload["idempotency_key"])

    source.value = 0.7
    still = at(6)
    assert (still.state, still.event, still.incident) == ("firing", None, fired.incident)
    assert len(notifier.sent) == 1  # once per incident

    source.value = 0.4
    resolved = at(7)
    assert (resolved.state, resolved.event, resolved.incident) == ("resolved", "resolved", 1)
    assert notifier.sent[-1]["status"] == "resolved"
    assert notifier.sent[-1]["resolved_at"] == "2026-03-01T12:07:00+00:00"
    assert notifier.sent[-1]["value"] == 0.4
    assert at(8).state == "ok"
    assert len(notifier.sent) == 2

    source.value = 0.9
    assert at(9).state == "pending"
    again = at(14)
    assert (again.state, again.event) == ("firing", "fired")
    assert again.incident != fired.incident

    history = alert_history(db)
    assert [(i.id, i.resolved_at is None) for i in history] == [
        (again.incident, True), (fired.incident, False),
    ]  # fmt: skip
    old = history[1]
    assert (old.value, old.last_value, old.started_at, old.fired_at) == (
        0.6, 0.4, T0, T0 + timedelta(minutes=5),
    )  # fmt: skip
    assert (old.notified, old.resolve_notified, old.notify_error) == (True, True, None)
    assert alert_history(db, rule="other") == []
    assert len(alert_history(db, limit=1)) == 1
    assert [i.id for i in alert_history(db, firing=True)] == [again.incident]
    assert [i.id for i in alert_history(db, deployment=old.deployment)] == [i.id for i in history]
    assert alert_history(db, deployment="elsewhere") == []


def test_the_condition_must_hold_continuously_for_the_hold(db: Database) -> None:
    r = parsed(**{"for": "10m"})
    source, notifier = Values(0.6), Recorder()
    evaluate(db, [r], source, now=T0, notifier=notifier)
    source.value = 0.1  # a dip restarts the clock
    assert evaluate(db, [r], source, now=T0 + timedelta(minutes=5), notifier=notifier)[0].state == (
        "ok"
    )
    source.value = 0.6
    late = evaluate(db, [r], source, now=T0 + timedelta(minutes=11), notifier=notifier)[0]
    assert (late.state, late.since) == ("pending", T0 + timedelta(minutes=11))
    assert notifier.sent == []


def test_no_hold_fires_on_the_first_evaluation(db: Database) -> None:
    outcome = evaluate(
        db, [parsed(op="<", threshold=0.9)], Values(0.5), now=T0, notifier=Recorder()
    )
    assert (outcome[0].state, outcome[0].event) == ("firing", "fired")


def test_no_data_is_not_a_breach_and_resolves_a_firing_alert(db: Database) -> None:
    r, source, notifier = parsed(), Values(None), Recorder()
    quiet = evaluate(db, [r], source, now=T0, notifier=notifier)[0]
    assert (quiet.state, quiet.value, quiet.detail) == ("no_data", None, "no data in the last 1h")
    source.value = 0.8
    evaluate(db, [r], source, now=T0 + timedelta(minutes=1), notifier=notifier)
    source.value = math.nan  # a metric without rows is no data too
    gone = evaluate(db, [r], source, now=T0 + timedelta(minutes=2), notifier=notifier)[0]
    assert (gone.state, gone.event, gone.value) == ("resolved", "resolved", None)
    assert [p["status"] for p in notifier.sent] == ["firing", "resolved"]
    assert notifier.sent[1]["value"] is None


def test_a_failed_delivery_is_recorded_without_raising(db: Database) -> None:
    notifier = Recorder(error="https://h.example/…: HTTP 500 after 4 attempts")
    outcome = evaluate(db, [parsed()], Values(0.9), now=T0, notifier=notifier)[0]
    assert outcome.notify_error == "https://h.example/…: HTTP 500 after 4 attempts"
    (incident,) = alert_history(db)
    assert not incident.notified
    assert incident.notify_error == "firing: https://h.example/…: HTTP 500 after 4 attempts"


def test_a_source_error_leaves_the_state_alone(db: Database) -> None:
    r, notifier = parsed(), Recorder()
    evaluate(db, [r], Values(0.9), now=T0, notifier=notifier)

    def broken(rule: ParsedRule, now: datetime) -> float | None:
        raise StorageError("Cannot read the prediction log; check the folder.")

    outcome = evaluate(db, [r], broken, now=T0 + timedelta(minutes=1), notifier=notifier)[0]
    assert (outcome.state, outcome.detail) == (
        "error", "Cannot read the prediction log; check the folder.",
    )  # fmt: skip
    assert alert_history(db)[0].resolved_at is None
    assert len(notifier.sent) == 1


def test_rules_are_kept_apart(db: Database) -> None:
    a, b = validate_rules([rule(name="a"), rule(name="b", op="<", threshold=0.1)])
    notifier = Recorder()
    outcomes = evaluate(db, [a, b], Values(0.7), now=T0, notifier=notifier)
    assert [(o.rule, o.state) for o in outcomes] == [("a", "firing"), ("b", "ok")]
    assert [p["rule"] for p in notifier.sent] == ["a"]


# --- webhooks and commands -------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


def payload(status: str = "firing") -> dict[str, Any]:
    return {"status": status, "rule": "drifty", "value": 0.7, "incident": 1}


def test_a_webhook_gets_the_json_and_5xx_is_retried_with_backoff(receiver: Receiver) -> None:
    receiver.statuses = [500, 503, 200]
    delays: list[float] = []
    notifier = WebhookNotifier(attempts=4, backoff_s=0.01, sleep=delays.append)
    delivery = notifier.notify(parsed(webhooks=[receiver.url]), payload())
    assert delivery == Delivery(delivered=1, error=None)
    assert [json.loads(b) for b in receiver.bodies] == [payload()] * 3
    assert receiver.content_types == ["application/json"] * 3
    assert delays == [0.01, 0.02]


def test_the_settings_wide_webhooks_hear_every_alert_once(receiver: Receiver) -> None:
    notifier = WebhookNotifier([receiver.url, f"{receiver.url}/all"], backoff_s=0)
    delivery = notifier.notify(parsed(webhooks=[receiver.url]), payload())
    assert delivery.delivered == 2
    assert receiver.paths == ["/hook", "/hook/all"]


def test_a_4xx_is_not_retried_and_the_last_failure_is_reported(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses = [404]
    notifier = WebhookNotifier(attempts=4, backoff_s=0, sleep=lambda s: None)
    delivery = notifier.notify(parsed(webhooks=[f"{receiver.url}/T0/s3cr3t"]), payload())
    assert len(receiver.bodies) == 1
    assert delivery.delivered == 0
    assert delivery.error == f"http://127.0.0.1:{receiver.port}/…: HTTP 404 after 1 attempt"
    assert "s3cr3t" not in caplog.text
    assert "HTTP 404" in caplog.text


def test_429_is_retried_and_giving_up_names_the_attempts(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses = [429, 500, 502]
    notifier = WebhookNotifier(attempts=3, backoff_s=0, sleep=lambda s: None)
    delivery = notifier.notify(parsed(webhooks=[receiver.url]), payload())
    assert len(receiver.bodies) == 3
    assert delivery.error is not None and delivery.error.endswith("HTTP 502 after 3 attempts")
    failures = [r for r in caplog.records if r.name == "modelyard.monitoring.alerts"]
    assert len(failures) == 3


def test_an_unreachable_webhook_is_retried_then_reported() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    delays: list[float] = []
    notifier = WebhookNotifier(attempts=3, backoff_s=0.5, timeout_s=1, sleep=delays.append)
    delivery = notifier.notify(parsed(webhooks=[url]), payload())
    assert delays == [0.5, 1.0]
    assert delivery.error is not None and "refused" in delivery.error.lower()


def test_the_rule_command_reads_the_alert_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "alert.json"
    command = (
        f"{sys.executable} -c 'import sys; open(sys.argv[1], \"w\").write(sys.stdin.read())' {out}"
    )
    delivery = WebhookNotifier().notify(parsed(command=command), payload())
    assert (delivery.command_exit, delivery.command_error) == (0, None)
    assert json.loads(out.read_text()) == payload()
    resolved = WebhookNotifier().notify(
        parsed(command=f"touch {tmp_path / 'again'}"), payload("resolved")
    )
    assert resolved.command_exit is None  # commands run when an alert fires, not when it resolves
    assert not (tmp_path / "again").exists()


def test_a_failing_command_is_recorded_with_its_stderr(db: Database) -> None:
    command = "echo starting; echo 'no such pipeline: retrain' >&2; echo more >&2; exit 3"
    outcome = evaluate(
        db, [parsed(command=command)], Values(0.9), now=T0, notifier=WebhookNotifier()
    )
    assert outcome[0].state == "firing"
    (incident,) = alert_history(db)
    assert (incident.command_exit, incident.command_error) == (
        3, "no such pipeline: retrain\nmore",
    )  # fmt: skip


def test_a_silent_failing_command_is_logged_without_a_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    delivery = WebhookNotifier().notify(parsed(command="exit 3"), payload())
    assert (delivery.command_exit, delivery.command_error) == (3, None)
    (record,) = [r for r in caplog.records if "alert command" in r.getMessage()]
    assert record.getMessage() == (
        f"alert command of rule {parsed().name} exited 3 and wrote nothing to standard error"
    )


def test_a_command_that_hangs_is_killed_after_its_timeout() -> None:
    notifier = WebhookNotifier(command_timeout_s=0.3)
    delivery = notifier.notify(parsed(command="sleep 30; echo never"), payload())
    assert delivery.command_exit is None
    assert delivery.command_error == "timed out after 0.3 s"
