"""The metadata tables (SQLAlchemy Core). Changes here need an alembic migration beside them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

#: The alembic revision this code expects; a test checks it equals the migrations' head.
HEAD_REVISION = "0010"

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")

models = sa.Table(
    "models",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("description", sa.Text),
    sa.Column("latest_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(256)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("start_time", UTCDateTime, nullable=False, index=True),
    sa.Column("end_time", UTCDateTime),
    sa.Column("params", JSONType, nullable=False),
    sa.Column("metrics", JSONType, nullable=False),
    sa.Column("tags", JSONType, nullable=False),
    sa.Column("user", sa.String(256), nullable=False),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("flavor", sa.String(32), nullable=False),
    sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("untrusted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("description", sa.Text),
    sa.Column("signature", JSONType),
    sa.Column("input_example", JSONType),
    sa.Column("flavor_meta", JSONType, nullable=False),
    sa.Column("metrics", JSONType, nullable=False),
    sa.Column("params", JSONType, nullable=False),
    sa.Column("lineage", JSONType, nullable=False),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id")),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("model_id", "version"),
    sa.Index("ix_model_versions_created", "created_at", "id"),
    sa.Index("ix_model_versions_flavor", "flavor"),
)

version_files = sa.Table(
    "version_files",
    metadata,
    sa.Column("version_id", sa.Integer, sa.ForeignKey("model_versions.id"), primary_key=True),
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False, index=True),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
)

version_tags = sa.Table(
    "version_tags",
    metadata,
    sa.Column("version_id", sa.Integer, sa.ForeignKey("model_versions.id"), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Index("ix_version_tags_key_value", "key", "value"),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), primary_key=True),
    sa.Column("alias", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

alias_events = sa.Table(
    "alias_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
    sa.Column("alias", sa.String(64), nullable=False),
    sa.Column("from_version", sa.Integer),
    sa.Column("to_version", sa.Integer),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("at", UTCDateTime, nullable=False),
    # the id of the move a rollback undid (None for other moves); rollbacks walk back a stack
    sa.Column("undoes", sa.Integer),
    sa.Index("ix_alias_events_model_alias", "model_id", "alias", "id"),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("model", sa.String(128)),
    sa.Column("description", sa.Text),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime),
    sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
)

# -- rollouts (modelyard.rollout) ------------------------------------------------------------

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("stable_model", sa.String(128), nullable=False),
    sa.Column("stable_version", sa.Integer, nullable=False),
    sa.Column("stable_alias", sa.String(64)),
    sa.Column("candidate_model", sa.String(128)),
    sa.Column("candidate_version", sa.Integer),
    sa.Column("mode", sa.String(16)),
    sa.Column("weight", sa.Float, nullable=False, server_default="0"),
    sa.Column("sticky_header", sa.String(128)),
    sa.Column("sticky_field", sa.String(128)),
    sa.Column("shadow_sample", sa.Float, nullable=False, server_default="1"),
    sa.Column("retry_on_stable", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("steps", JSONType, nullable=False),
    sa.Column("bake_s", sa.Float, nullable=False, server_default="0"),
    sa.Column("step_index", sa.Integer, nullable=False, server_default="0"),
    sa.Column("step_started_at", UTCDateTime),
    sa.Column("auto", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("policy", JSONType, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

deployment_events = sa.Table(
    "deployment_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("deployment_id", sa.Integer, sa.ForeignKey("deployments.id"), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("detail", JSONType, nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_deployment_events_deployment", "deployment_id", "id"),
)

route_stats = sa.Table(
    "route_stats",
    metadata,
    sa.Column("deployment_id", sa.Integer, sa.ForeignKey("deployments.id"), primary_key=True),
    sa.Column("revision", sa.Integer, primary_key=True),
    sa.Column("route", sa.String(16), primary_key=True),
    sa.Column("replica", sa.String(128), primary_key=True),
    sa.Column("window_start", UTCDateTime, primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False),
    sa.Column("errors", sa.BigInteger, nullable=False),
    sa.Column("latency_counts", JSONType, nullable=False),
    sa.Column("output_counts", JSONType, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

rollout_leases = sa.Table(
    "rollout_leases",
    metadata,
    sa.Column("deployment", sa.String(128), primary_key=True),
    sa.Column("holder", sa.String(256), nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

# -- alerts (modelyard.monitoring.alerts) ----------------------------------------------------

alert_states = sa.Table(
    "alert_states",
    metadata,
    sa.Column("rule", sa.String(128), primary_key=True),
    sa.Column("deployment", sa.String(128), nullable=False),
    #: When the condition started to hold (None: it does not hold).
    sa.Column("pending_since", UTCDateTime),
    #: The firing incident (None: not firing).
    sa.Column("incident_id", sa.Integer),
    sa.Column("last_value", sa.Float),
    sa.Column("last_evaluated_at", UTCDateTime),
    #: Bumped by every evaluation; writes are conditional on it (one evaluator wins a race).
    sa.Column("revision", sa.Integer, nullable=False),
)

alert_incidents = sa.Table(
    "alert_incidents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("rule", sa.String(128), nullable=False),
    sa.Column("deployment", sa.String(128), nullable=False),
    sa.Column("metric", sa.Text, nullable=False),
    sa.Column("op", sa.String(2), nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("window", sa.String(32), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("last_value", sa.Float),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("fired_at", UTCDateTime, nullable=False),
    sa.Column("resolved_at", UTCDateTime),
    sa.Column("notified", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("resolve_notified", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("notify_error", sa.Text),
    sa.Column("command_exit", sa.Integer),
    sa.Column("command_error", sa.Text),
    sa.Index("ix_alert_incidents_rule", "rule", "id"),
)

#: The outbox of alert notifications: a row is written in the transaction that fires or resolves
#: an incident and marked delivered when every webhook answered 2xx, so a process that dies in
#: between leaves it pending and the next round delivers it again (at least once). ``key`` is
#: the idempotency key the webhooks receive, the same on every attempt.
alert_deliveries = sa.Table(
    "alert_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("incident_id", sa.Integer, sa.ForeignKey("alert_incidents.id"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # firing, resolved
    sa.Column("key", sa.String(64), nullable=False, unique=True),
    sa.Column("rule", sa.String(128), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # the JSON the webhooks receive
    sa.Column("created_at", UTCDateTime, nullable=False),
    #: The evaluator delivering it (``host:pid``) and until when; others leave it alone until
    #: then, or until that process is gone (on the same host).
    sa.Column("claimed_by", sa.String(128)),
    sa.Column("claimed_until", UTCDateTime),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("delivered_at", UTCDateTime),
    sa.Column("last_error", sa.Text),
    sa.Index("ix_alert_deliveries_pending", "delivered_at", "id"),
)

# -- pipelines (modelyard.pipelines) ---------------------------------------------------------
# A pipeline run is a row of ``runs`` (name = the pipeline); these hold its steps and the
# artifacts the steps produced (blobs in the artifact store, addressed by sha256).

run_steps = sa.Table(
    "run_steps",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    #: The step's place in the run's topological order.
    sa.Column("position", sa.Integer, nullable=False),
    #: ``module:qualname`` of the step function.
    sa.Column("function", sa.String(512), nullable=False),
    #: pending, running, succeeded, cached, failed, skipped, cancelled
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("upstream", JSONType, nullable=False),
    sa.Column("params", JSONType, nullable=False),
    #: Argument name -> id of the pipeline artifact it was given.
    sa.Column("inputs", JSONType, nullable=False),
    #: Output name -> id of the pipeline artifact (the producer's, for a cache hit).
    sa.Column("outputs", JSONType, nullable=False),
    sa.Column("metrics", JSONType, nullable=False),
    sa.Column("cache_key", sa.String(64)),
    #: What the key was computed from (code hash, packages, params, input hashes...).
    sa.Column("key_parts", JSONType),
    sa.Column("cached_from", sa.String(32), sa.ForeignKey("runs.id")),
    #: Why the step ran instead of being a cache hit (or where the hit came from).
    sa.Column("cache_note", sa.Text),
    sa.Column("started_at", UTCDateTime),
    sa.Column("ended_at", UTCDateTime),
    sa.Column("duration_s", sa.Float),
    #: Captured stdout, stderr, logging and warnings (head and tail kept when long).
    sa.Column("log", sa.Text),
    #: The traceback of a failed step.
    sa.Column("error", sa.Text),
    sa.Index("ix_run_steps_cache_key", "cache_key", "status"),
)

pipeline_artifacts = sa.Table(
    "pipeline_artifacts",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    #: The blob's address in the artifact store (sha256 of the stored bytes).
    sa.Column("sha256", sa.String(64), nullable=False, index=True),
    #: table, series, array, json, bytes, model, object
    sa.Column("kind", sa.String(16), nullable=False),
    #: parquet, npy, json, raw, sklearn, xgboost, lightgbm, onnx, pickle
    sa.Column("format", sa.String(32), nullable=False),
    sa.Column("python_type", sa.String(256), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("meta", JSONType, nullable=False),
    #: Lineage: the run, step and output that produced it.
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("step", sa.String(128), nullable=False),
    sa.Column("output", sa.String(128), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("run_id", "step", "output"),
)

# -- retraining loops (modelyard.loop) ---------------------------------------------------------

loop_states = sa.Table(
    "loop_states",
    metadata,
    sa.Column("deployment", sa.String(128), primary_key=True),
    #: idle, triggered, training, gating, canary, waiting_approval, promoted, rejected
    sa.Column("state", sa.String(32), nullable=False),
    #: Bumped by every change; writes are conditional on it (one controller wins a race).
    sa.Column("revision", sa.Integer, nullable=False),
    #: The number of the current (or last) loop of this deployment: 0 before the first.
    sa.Column("loop", sa.Integer, nullable=False),
    sa.Column("since", UTCDateTime, nullable=False),
    sa.Column("trigger_key", sa.String(256)),
    sa.Column("trigger", JSONType),
    #: The pipeline run recorded before it started (training), then the one that registered.
    sa.Column("run_id", sa.String(32)),
    sa.Column("candidate", sa.String(160)),
    #: What the current loop has gathered so far (files, gate metrics, rollout revision...).
    sa.Column("detail", JSONType, nullable=False),
    #: A person's decision on the current loop: approved or rejected, by whom, why.
    sa.Column("decision", sa.String(16)),
    sa.Column("decided_by", sa.String(256)),
    sa.Column("decision_reason", sa.Text),
    sa.Column("reason", sa.Text),
    sa.Column("ended_at", UTCDateTime),
    #: Whether the alert of a rejected loop reached every webhook; the failure when not.
    sa.Column("notified", sa.Boolean),
    sa.Column("notify_error", sa.Text),
)

loop_transitions = sa.Table(
    "loop_transitions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("deployment", sa.String(128), nullable=False),
    sa.Column("loop", sa.Integer, nullable=False),
    #: The state's revision after this transition: one transition per revision.
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("from_state", sa.String(32), nullable=False),
    sa.Column("to_state", sa.String(32), nullable=False),
    #: Set on the transition a trigger caused: one loop per trigger, ever.
    sa.Column("trigger_key", sa.String(256)),
    sa.Column("evidence", JSONType, nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("deployment", "revision"),
    sa.UniqueConstraint("deployment", "trigger_key"),
)

#: Each verification of a version's files (``yard models verify``, the dashboard's verify button):
#: who checked, when, and which files failed; the audit of an action that changes nothing else.
version_checks = sa.Table(
    "version_checks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    #: The names of the files that failed (empty when ``ok``).
    sa.Column("failed", JSONType, nullable=False),
    sa.Index("ix_version_checks_model_version", "model_id", "version", "id"),
)

attestations = sa.Table(
    "attestations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    #: The rubric test's id: ``data-1`` ... ``monitor-7``.
    sa.Column("test", sa.String(16), nullable=False),
    #: The model it was done for; ``None``: the whole project.
    sa.Column("model", sa.String(128)),
    #: ``manual`` (done by hand, results documented) or ``not_applicable`` (the note says why).
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_attestations_test", "test", "id"),
)
