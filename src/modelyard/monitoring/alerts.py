"""Alerts: rules on a deployment's monitoring metrics, evaluated like Prometheus alerting rules.

A rule (``[[monitoring.alerts.rules]]``) fires when ``metric op threshold`` has held on every
evaluation for ``for`` (its ``hold``), over the last ``window`` of the deployment's traffic.

- ``validate_rules`` checks every rule before anything runs (one line per problem, as
  ``ConfigError``).
- ``evaluate`` evaluates rules once: each rule's state (``alert_states``) and incidents
  (``alert_incidents``) live in the metadata database. An incident fires once, stays quiet while
  the condition holds, resolves when it clears (no data clears it too) and a later breach opens a
  new incident. Every state write is conditional on the revision read, so when several evaluators
  (server replicas, ``yard monitor check``) race, exactly one records a transition and notifies.
- ``WebhookNotifier`` POSTs the alert's JSON to the webhooks (retried with exponential backoff on
  connection errors, 5xx and 429) and runs the rule's command when it fires; failures are logged
  and recorded on the incident, never raised.
- ``check_alerts`` is the whole round the CLI and the server run: validate, read the metrics of
  the prediction log (``metric_source``), evaluate, notify.

Delivery is at least once. The transaction that fires or resolves an incident also writes the
notification to an outbox (``alert_deliveries``), claimed by the evaluator (``host:pid``) for as
long as its webhook retries can take; it is marked delivered when every webhook answered 2xx. A
pending one (a failed delivery, or one whose evaluator died before recording it) is delivered
again at the start of every round once its claim has run out or its evaluator's process is gone
(seen from the same host), for up to ``MAX_DELIVERY_ROUNDS`` rounds. Every
attempt carries the same idempotency key (the ``Idempotency-Key`` header and the payload's
``idempotency_key``), so a receiver can drop a copy; the rule's command, given the same payload,
may run again too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import sqlalchemy as sa

from modelyard.errors import (
    ModelyardError,
    PredictionLogEmptyError,
)
from modelyard.monitoring._outbox import (
    MAX_DELIVERY_ROUNDS,
    Outbox,
    enqueue,
    record_delivery,
    redeliver,
)
from modelyard.monitoring.alert_rules import (
    PERFORMANCE_METRICS,
    ParsedRule,
    rule_warnings,
    validate_rules,
)
from modelyard.monitoring.notify import Delivery, Notifier, WebhookNotifier
from modelyard.settings import Settings
from modelyard.store.schema import alert_incidents, alert_states

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from modelyard.monitoring.service import DriftOptions
    from modelyard.registry.client import Registry
    from modelyard.store.db import Database

__all__ = [
    "MAX_DELIVERY_ROUNDS",
    "PERFORMANCE_METRICS",
    "AlertOutcome",
    "AlertStatus",
    "Delivery",
    "Incident",
    "MetricSource",
    "NoData",
    "Notifier",
    "ParsedRule",
    "WebhookNotifier",
    "alert_history",
    "alert_payload",
    "check_alerts",
    "evaluate",
    "metric_source",
    "outcome_warnings",
    "redeliver",
    "rule_warnings",
    "validate_rules",
]

logger = logging.getLogger(__name__)

#: ``ok``, ``no_data``, ``pending`` (holding, not yet for ``for``), ``firing``, ``resolved``
#: (cleared by this evaluation), ``error`` (the metric could not be read; state left alone).
AlertStatus = Literal["ok", "no_data", "pending", "firing", "resolved", "error"]


# --- results -----------------------------------------------------------------------------------


class AlertOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """One rule's evaluation: its ``state`` now and what this evaluation did (``event``)."""

    rule: str
    deployment: str
    metric: str
    op: str
    threshold: float
    window: str
    value: float | None
    state: AlertStatus
    #: pending: since when the condition holds; firing/resolved: when the incident started.
    since: datetime | None = None
    incident: int | None = None
    #: ``fired`` or ``resolved`` when this evaluation made (and notified) the change.
    event: Literal["fired", "resolved"] | None = None
    notify_error: str | None = None
    #: Why there is no value, the error, or that another evaluator recorded the change.
    detail: str | None = None
    #: No data because the log lacks what the rule names (a typo?): what it lacks, and the fix.
    warning: str | None = None


class Incident(msgspec.Struct, frozen=True, kw_only=True):
    """One firing of a rule, from ``started_at`` (the condition first held) to ``resolved_at``."""

    id: int
    rule: str
    deployment: str
    metric: str
    op: str
    threshold: float
    window: str
    value: float  # when it fired
    last_value: float | None
    started_at: datetime
    fired_at: datetime
    resolved_at: datetime | None
    notified: bool  # every webhook took the firing notification
    resolve_notified: bool
    notify_error: str | None
    command_exit: int | None
    command_error: str | None


def alert_payload(
    status: Literal["firing", "resolved"],
    rule: ParsedRule,
    incident: Incident,
    value: float | None,
) -> dict[str, Any]:
    """The JSON a webhook (and the rule's command, on standard input) receives."""
    return {
        "status": status,
        "rule": rule.name,
        "deployment": rule.deployment,
        "metric": rule.metric,
        "op": rule.op,
        "threshold": rule.threshold,
        "value": value if value is not None and math.isfinite(value) else None,
        "window": rule.window,
        "started_at": incident.started_at.isoformat(),
        "fired_at": incident.fired_at.isoformat(),
        "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
        "incident": incident.id,
    }


def alert_history(
    db: Database,
    *,
    rule: str | None = None,
    deployment: str | None = None,
    firing: bool = False,
    limit: int = 50,
) -> list[Incident]:
    """Incidents, newest first: of one ``rule`` and of one ``deployment`` when given, only the
    unresolved ones when ``firing``."""
    query = sa.select(alert_incidents).order_by(alert_incidents.c.id.desc()).limit(limit)
    if rule is not None:
        query = query.where(alert_incidents.c.rule == rule)
    if deployment is not None:
        query = query.where(alert_incidents.c.deployment == deployment)
    if firing:
        query = query.where(alert_incidents.c.resolved_at.is_(None))
    with db.read() as conn:
        return [_incident(row) for row in conn.execute(query)]


def _incident(row: sa.Row[Any]) -> Incident:
    return Incident(**{c.name: getattr(row, c.name) for c in alert_incidents.columns})


# --- evaluation --------------------------------------------------------------------------------


class NoData(msgspec.Struct, frozen=True):
    """No value, because the log lacks what the rule names: a deployment, an input column, an
    output (a typo, or not served yet); ``reason`` says which, and what to check."""

    reason: str


#: A rule's current value at ``now`` over its window; ``None`` (or ``NoData``, saying why the
#: rule may be wrong) when there is no data.
MetricSource = Callable[[ParsedRule, datetime], float | NoData | None]


@dataclass(frozen=True, slots=True)
class _State:
    pending_since: datetime | None
    incident: Incident | None
    revision: int


@dataclass(frozen=True, slots=True)
class _Plan:
    state: AlertStatus
    pending_since: datetime | None
    fire: bool = False
    resolve: bool = False


def evaluate(
    db: Database,
    rules: Sequence[ParsedRule],
    source: MetricSource,
    *,
    now: datetime | None = None,
    notifier: Notifier | None = None,
    claim_s: float = 60.0,
) -> list[AlertOutcome]:
    """Evaluate each rule once at ``now``: deliver the pending notifications of earlier rounds,
    then record each rule's state, fire or resolve its incident and notify. A metric that cannot
    be read (a typed error, or any failure reading one deployment's log) gives an ``error``
    outcome and leaves the state alone; the other rules are still evaluated. ``claim_s``: how long a
    delivery may take before another round may deliver it again."""
    now = now or datetime.now(UTC)
    notifier = notifier or WebhookNotifier()
    claim = timedelta(seconds=claim_s)
    redeliver(db, rules, notifier, now=now, claim=claim)
    return [
        _evaluate_rule(db, rule, source, now=now, notifier=notifier, claim=claim) for rule in rules
    ]


def _evaluate_rule(
    db: Database,
    rule: ParsedRule,
    source: MetricSource,
    *,
    now: datetime,
    notifier: Notifier,
    claim: timedelta,
) -> AlertOutcome:
    # The state is read first: whoever writes between this read and our write wins the round.
    state = _read_state(db, rule.name)
    try:
        value = source(rule, now)
    except ModelyardError as exc:
        logger.warning("alert rule %s: cannot read %s: %s", rule.name, rule.metric, exc)
        return _outcome(rule, None, "error", detail=str(exc))
    except Exception as exc:  # one rule's failure (a corrupt log file) must not stop the others
        logger.debug("alert rule %s: reading %s failed", rule.name, rule.metric, exc_info=True)
        (reason, *_) = str(exc).strip().splitlines() or [""]
        failed = (
            f"{rule.metric} of deployment {rule.deployment!r} could not be read "
            f"({type(exc).__name__}: {reason}); run 'yard --debug monitor check' for the traceback."
        )
        logger.warning("alert rule %s: %s", rule.name, failed)
        return _outcome(rule, None, "error", detail=failed)
    warning = None
    if isinstance(value, NoData):
        warning, value = value.reason, None
    if value is not None and math.isnan(value):
        value = None
    firing = state is not None and state.incident is not None
    plan = _plan(rule, firing, state.pending_since if state else None, value, now)
    won, incident, outbox = _write(db, rule, state, plan, value=value, now=now, claim=claim)
    if not won:  # another evaluator wrote first: report what it recorded
        return _lost(db, rule, value)
    detail = f"no data in the last {rule.window}" if value is None else None
    if incident is None:
        since = plan.pending_since if plan.state == "pending" else None
        return _outcome(rule, value, plan.state, since=since, detail=detail, warning=warning)
    if not (plan.fire or plan.resolve):
        return _outcome(
            rule, value, plan.state, since=incident.started_at, incident=incident.id,
            detail=detail, warning=warning,
        )  # fmt: skip
    assert outbox is not None
    delivery_id, status, payload = outbox
    delivery = notifier.notify(rule, payload)
    record_delivery(db, delivery_id, incident.id, status, delivery, now=now)
    return _outcome(
        rule, value, plan.state, since=incident.started_at, incident=incident.id,
        event="fired" if plan.fire else "resolved", notify_error=delivery.error, detail=detail,
        warning=warning,
    )  # fmt: skip


def _plan(
    rule: ParsedRule,
    firing: bool,
    pending_since: datetime | None,
    value: float | None,
    now: datetime,
) -> _Plan:
    """The next state (the alert's state machine, without the database)."""
    if value is None or not rule.holds(value):
        if firing:
            return _Plan("resolved", None, resolve=True)
        return _Plan("no_data" if value is None else "ok", None)
    if firing:
        return _Plan("firing", pending_since)
    since = pending_since or now
    if (now - since).total_seconds() >= rule.hold_s:
        return _Plan("firing", since, fire=True)
    return _Plan("pending", since)


def _read_state(db: Database, rule: str) -> _State | None:
    with db.read() as conn:
        return _state(conn, rule)


def _state(conn: Connection, rule: str) -> _State | None:
    row = conn.execute(sa.select(alert_states).where(alert_states.c.rule == rule)).first()
    if row is None:
        return None
    incident = None
    if row.incident_id is not None:
        found = conn.execute(
            sa.select(alert_incidents).where(alert_incidents.c.id == row.incident_id)
        ).first()
        incident = _incident(found) if found is not None else None
    return _State(row.pending_since, incident, row.revision)


def _write(
    db: Database,
    rule: ParsedRule,
    state: _State | None,
    plan: _Plan,
    *,
    value: float | None,
    now: datetime,
    claim: timedelta,
) -> tuple[bool, Incident | None, Outbox | None]:
    """Record the plan if nobody changed the state since it was read: whether it was recorded
    (``False``: another evaluator wrote first), the incident it opened, kept or closed, and the
    notification written to the outbox in the same transaction when it fired or resolved."""
    values = {
        "deployment": rule.deployment,
        "pending_since": plan.pending_since,
        "last_value": value,
        "last_evaluated_at": now,
    }
    incident = state.incident if state else None
    with db.write() as conn:
        # RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT DO NOTHING
        if state is None:
            written = _insert_new(db.dialect).values(rule=rule.name, revision=1, **values)
        else:
            written = (
                sa.update(alert_states)
                .where(alert_states.c.rule == rule.name, alert_states.c.revision == state.revision)
                .values(revision=state.revision + 1, **values)
            )
        if conn.execute(written.returning(alert_states.c.rule)).first() is None:
            return False, None, None
        if plan.fire:
            assert plan.pending_since is not None and value is not None
            incident = _open_incident(conn, rule, plan.pending_since, value, now)
            conn.execute(
                sa.update(alert_states)
                .where(alert_states.c.rule == rule.name)
                .values(incident_id=incident.id)
            )
        elif incident is not None:
            changes: dict[str, Any] = {"last_value": value} if value is not None else {}
            if plan.resolve:
                changes["resolved_at"] = now
                conn.execute(
                    sa.update(alert_states)
                    .where(alert_states.c.rule == rule.name)
                    .values(incident_id=None)
                )
            if changes:
                conn.execute(
                    sa.update(alert_incidents)
                    .where(alert_incidents.c.id == incident.id)
                    .values(**changes)
                )
                incident = msgspec.structs.replace(incident, **changes)
        outbox = None
        if incident is not None and (plan.fire or plan.resolve):
            status: Literal["firing", "resolved"] = "firing" if plan.fire else "resolved"
            payload = alert_payload(status, rule, incident, value)
            outbox = enqueue(conn, rule, incident.id, status, payload, now=now, claim=claim)
    return True, incident, outbox


def _insert_new(dialect: str) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` into ``alert_states`` (one row per rule, first
    writer wins)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(alert_states).on_conflict_do_nothing(index_elements=["rule"])
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(alert_states).on_conflict_do_nothing(index_elements=["rule"])


def _open_incident(
    conn: Connection, rule: ParsedRule, started_at: datetime, value: float, now: datetime
) -> Incident:
    values: dict[str, Any] = {
        "rule": rule.name, "deployment": rule.deployment, "metric": rule.metric, "op": rule.op,
        "threshold": rule.threshold, "window": rule.window, "value": value, "last_value": value,
        "started_at": started_at, "fired_at": now, "resolved_at": None, "notified": False,
        "resolve_notified": False, "notify_error": None, "command_exit": None,
        "command_error": None,
    }  # fmt: skip
    found = conn.execute(
        sa.insert(alert_incidents).values(**values).returning(alert_incidents.c.id)
    )
    return Incident(id=int(found.scalar_one()), **values)


def _lost(db: Database, rule: ParsedRule, value: float | None) -> AlertOutcome:
    state = _read_state(db, rule.name)
    detail = "another evaluator recorded this evaluation first"
    if state is not None and state.incident is not None:
        return _outcome(
            rule, value, "firing", since=state.incident.started_at,
            incident=state.incident.id, detail=detail,
        )  # fmt: skip
    if state is not None and state.pending_since is not None:
        return _outcome(rule, value, "pending", since=state.pending_since, detail=detail)
    return _outcome(rule, value, "ok" if value is not None else "no_data", detail=detail)


def _outcome(
    rule: ParsedRule, value: float | None, state: AlertStatus, **more: Any
) -> AlertOutcome:
    return AlertOutcome(
        rule=rule.name, deployment=rule.deployment, metric=rule.metric, op=rule.op,
        threshold=rule.threshold, window=rule.window, value=value, state=state, **more,
    )  # fmt: skip


def outcome_warnings(outcomes: Sequence[AlertOutcome]) -> list[str]:
    """One line per rule of a round that names what the log lacks (a typo in its deployment,
    column or output?), as ``yard monitor check`` prints them and the server logs them."""
    return [f"rule {o.rule!r}: {o.warning}" for o in outcomes if o.warning]


# --- the prediction log as the metric source ---------------------------------------------------


class _WindowMetrics:
    """``window_metrics`` of the prediction log, one call per (deployment, window) and round;
    the metrics read before labels (``estimated:<metric>``, ``reconstruction_error``) from
    ``unlabelled_metrics``, only when a rule names them, once per (deployment, window, part)."""

    def __init__(
        self, registry: Registry, root: str | Callable[[str], str], options: DriftOptions | None
    ) -> None:
        self.registry = registry
        self.root = root
        self.options = options
        self._now: datetime | None = None
        self._cache: dict[tuple[str, float, str], Mapping[str, float] | ModelyardError] = {}

    def __call__(self, rule: ParsedRule, now: datetime) -> float | NoData | None:
        from modelyard.monitoring.unlabelled import part_of

        if now != self._now:
            self._cache.clear()
            self._now = now
        part = part_of(rule.metric)
        key = (rule.deployment, rule.window_s, part or "")
        if key not in self._cache:
            self._cache[key] = self._read(rule, now, part)
        found = self._cache[key]
        if isinstance(found, ModelyardError):
            raise found
        value = found.get(rule.metric)
        return value if value is not None else self._lacking(rule, found)

    def _lacking(self, rule: ParsedRule, found: Mapping[str, float]) -> NoData | None:
        """Why ``found`` has no ``rule.metric`` when the log lacks what the rule names; ``None``
        when the window is only without traffic or labels."""
        from modelyard.monitoring._partitions import log_folder

        root = self.root if isinstance(self.root, str) else self.root(rule.deployment)
        if not log_folder(root, rule.deployment).is_dir():
            known = sorted(
                p.name.removeprefix("deployment=") for p in Path(root).glob("deployment=*")
            )
            return NoData(
                f"deployment {rule.deployment!r} has no prediction log under {root} (logged: "
                f"{', '.join(known) or 'none'}); check the rule's deployment, or serve it with "
                "'yard serve --log-predictions'."
            )
        if "drift_share" not in found:  # drift was not measured: nothing to say about names
            return None
        lacking = (("drift:", "input column"), ("null_drift:", "input column"),
                   ("output_drift:", "output"))  # fmt: skip
        for prefix, what in lacking:
            if rule.metric.startswith(prefix):
                names = [k.removeprefix(prefix) for k in found if k.startswith(prefix)]
                kind = "outputs" if prefix == "output_drift:" else "columns"
                compared = " compared" if prefix == "output_drift:" else ""
                return NoData(
                    f"deployment {rule.deployment!r} has no {what} "
                    f"{rule.metric.removeprefix(prefix)!r}{compared} (its {kind}: "
                    f"{', '.join(names) or 'none'}); check the rule's metric."
                )
        return None

    def _read(
        self, rule: ParsedRule, now: datetime, part: str | None
    ) -> Mapping[str, float] | ModelyardError:
        from modelyard.monitoring.service import window_metrics
        from modelyard.monitoring.unlabelled import unlabelled_metrics

        try:
            root = self.root if isinstance(self.root, str) else self.root(rule.deployment)
            if part is not None:
                return unlabelled_metrics(
                    self.registry, root, rule.deployment, window=rule.span, now=now,
                    options=self.options, parts=(part,), strict=True,
                )  # fmt: skip
            return window_metrics(
                self.registry, root, rule.deployment, window=rule.span, now=now,
                options=self.options,
            )  # fmt: skip
        except PredictionLogEmptyError:
            return {}
        except ModelyardError as exc:
            return exc


def metric_source(
    registry: Registry, root: str | Callable[[str], str], *, options: DriftOptions | None = None
) -> MetricSource:
    """Rule values from the prediction log under ``root``, or under ``root(deployment)`` (a
    mirror of a log on an object store), (``window_metrics``, drift judged with
    ``options``); a metric the window lacks, or a deployment without a log, is no data. Make one
    per round: it keeps one ``window_metrics`` call per (deployment, window) and ``now``."""
    return _WindowMetrics(registry, root, options)


def check_alerts(
    registry: Registry,
    settings: Settings,
    *,
    now: datetime | None = None,
    notifier: Notifier | None = None,
) -> list[AlertOutcome]:
    """One round of every configured rule against the prediction log (``yard monitor check``
    and the server's periodic task); an invalid rule raises ``ConfigError`` before anything is
    read or written."""
    from modelyard.monitoring.mirror import readable_root
    from modelyard.monitoring.service import DriftOptions

    alerts = settings.monitoring.alerts
    rules = validate_rules(alerts.rules, webhooks=alerts.webhooks)
    if not rules:
        return []
    options = DriftOptions.from_settings(settings)
    webhooks = WebhookNotifier.from_settings(alerts)
    return evaluate(
        registry.db,
        rules,
        metric_source(registry, partial(readable_root, settings), options=options),
        now=now,
        notifier=notifier or webhooks,
        claim_s=webhooks.budget_s * max(len({*r.webhooks, *alerts.webhooks}) for r in rules) + 1.0,
    )
