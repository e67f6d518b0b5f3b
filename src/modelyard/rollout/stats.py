"""Per-route traffic statistics in the metadata store: what every replica saw, per window.

A server replica counts requests, errors, latencies (``buckets.LATENCY_EDGES_MS``) and outputs
per deployment, revision and route, and adds them to the store once per window with
``record_route_stats`` (``StatsBuffer`` does the counting and flushing). ``route_summary`` merges
every replica's windows for one revision; the controller judges it with ``analysis.evaluate``.
"""

from __future__ import annotations

import operator
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, SupportsIndex

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from modelyard.errors import InvalidInputError
from modelyard.rollout._rows import deployment_row, not_found
from modelyard.rollout.buckets import LATENCY_BUCKETS, WINDOW_S, latency_bucket, quantile_ms
from modelyard.rollout.types import RouteName, RouteStats, Summary
from modelyard.store.schema import deployments, route_stats

if TYPE_CHECKING:
    from modelyard.store.db import Database

_ROUTES = ("stable", "candidate")
_MAX_KEY = 128


def record_route_stats(
    db: Database,
    *,
    deployment: str,
    revision: int,
    replica: str,
    window_start: datetime,
    route: RouteName,
    requests: int,
    errors: int,
    latency_counts: Sequence[int],
    output_counts: Mapping[str, int],
) -> None:
    """Add one replica's counts for one window to the store (adding to what it already holds).

    ``latency_counts`` has ``LATENCY_BUCKETS`` entries (see ``buckets.latency_bucket``);
    ``output_counts`` maps a class label (``buckets.class_key``) or a value bin
    (``buckets.value_bin``) to a count.
    """
    values = _checked(
        route=route, requests=requests, errors=errors, latency_counts=latency_counts,
        output_counts=output_counts, replica=replica, window_start=window_start,
    )  # fmt: skip
    now = datetime.now(UTC)
    with db.write() as conn:
        deployment_id = conn.execute(
            sa.select(deployments.c.id).where(deployments.c.name == deployment)
        ).scalar()
        if deployment_id is None:
            raise not_found(deployment)
        key = {
            "deployment_id": deployment_id, "revision": revision, "route": route,
            "replica": replica, "window_start": window_start,
        }  # fmt: skip
        if _insert_new(conn, {**key, **values, "updated_at": now}):
            return
        where = [route_stats.c[k] == v for k, v in key.items()]
        row = conn.execute(sa.select(route_stats).where(*where).with_for_update()).one()
        merged_outputs = Counter(row.output_counts)
        merged_outputs.update(values["output_counts"])
        conn.execute(
            sa.update(route_stats)
            .where(*where)
            .values(
                requests=row.requests + values["requests"],
                errors=row.errors + values["errors"],
                latency_counts=[
                    a + b for a, b in zip(row.latency_counts, values["latency_counts"], strict=True)
                ],
                output_counts=dict(merged_outputs),
                updated_at=now,
            )
        )


def route_summary(
    db: Database, name: str, *, revision: int | None = None, since: datetime | None = None
) -> Summary:
    """Both routes' merged traffic for ``revision`` (default: the current one), counting only
    windows that start at or after ``since`` when given. ``mode`` and ``weight`` are the
    deployment's current ones."""
    with db.read() as conn:
        row = deployment_row(conn, name)
        wanted = row.revision if revision is None else revision
        query = sa.select(route_stats).where(
            route_stats.c.deployment_id == row.id, route_stats.c.revision == wanted
        )
        if since is not None:
            query = query.where(route_stats.c.window_start >= since)
        rows = conn.execute(query).all()
    merged = {route: _Totals() for route in _ROUTES}
    for stat in rows:
        merged[stat.route].add(stat)
    return Summary(
        deployment=name,
        revision=wanted,
        mode=row.mode,
        weight=row.weight,
        since=since,
        stable=merged["stable"].stats("stable"),
        candidate=merged["candidate"].stats("candidate"),
    )


def prune_route_stats(db: Database, *, before: datetime) -> int:
    """Delete every window that started before ``before``; returns how many rows went."""
    with db.write() as conn:
        result = conn.execute(sa.delete(route_stats).where(route_stats.c.window_start < before))
    return int(result.rowcount)


class StatsBuffer:
    """A replica's in-memory counters, filled per request and flushed to the store per window.

    Thread-safe. ``observe`` costs a dictionary lookup and a few additions; ``flush`` writes one
    row per (deployment, revision, route, window) seen since the last flush and forgets them.
    """

    def __init__(self, *, replica: str, window_s: int = WINDOW_S) -> None:
        self.replica = replica
        self.window_s = window_s
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int, RouteName, int], _Totals] = {}

    def observe(
        self,
        deployment: str,
        revision: int,
        route: RouteName,
        *,
        latency_ms: float,
        error: bool = False,
        outputs: Iterable[str] = (),
        at: float | None = None,
    ) -> None:
        """Count one request (``at``: a ``time.time()`` value, default now)."""
        window = int((time.time() if at is None else at) // self.window_s)
        key = (deployment, revision, route, window)
        with self._lock:
            totals = self._counts.get(key)
            if totals is None:
                totals = self._counts[key] = _Totals()
            totals.requests += 1
            totals.errors += int(error)
            totals.latency[latency_bucket(latency_ms)] += 1
            totals.outputs.update(outputs)

    def flush(self, db: Database) -> int:
        """Write what was counted; on a storage error the counts are kept for the next flush."""
        with self._lock:
            taken, self._counts = self._counts, {}
        written = 0
        try:
            for (deployment, revision, route, window), totals in list(taken.items()):
                record_route_stats(
                    db, deployment=deployment, revision=revision, replica=self.replica,
                    window_start=datetime.fromtimestamp(window * self.window_s, UTC), route=route,
                    requests=totals.requests, errors=totals.errors,
                    latency_counts=totals.latency, output_counts=totals.outputs,
                )  # fmt: skip
                del taken[(deployment, revision, route, window)]
                written += 1
        finally:
            if taken:
                with self._lock:
                    for key, totals in taken.items():
                        self._counts.setdefault(key, _Totals()).merge(totals)
        return written


class _Totals:
    """Running sums for one route (mutable; private to this module)."""

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latency = [0] * LATENCY_BUCKETS
        self.outputs: Counter[str] = Counter()

    def add(self, row: Any) -> None:
        self.requests += int(row.requests)
        self.errors += int(row.errors)
        for index, count in enumerate(row.latency_counts[:LATENCY_BUCKETS]):
            self.latency[index] += int(count)
        self.outputs.update({str(k): int(v) for k, v in row.output_counts.items()})

    def merge(self, other: _Totals) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.latency = [a + b for a, b in zip(self.latency, other.latency, strict=True)]
        self.outputs.update(other.outputs)

    def stats(self, route: RouteName) -> RouteStats:
        return RouteStats(
            route=route,
            requests=self.requests,
            errors=self.errors,
            error_rate=self.errors / self.requests if self.requests else None,
            p50_ms=quantile_ms(self.latency, 0.5),
            p99_ms=quantile_ms(self.latency, 0.99),
            latency_counts=tuple(self.latency),
            output_counts=dict(self.outputs),
        )


def _insert_new(conn: Connection, values: dict[str, Any]) -> bool:
    """Insert the row unless its key exists (another flush got there first); True if inserted."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(route_stats)
        .values(**values)
        .on_conflict_do_nothing()
        .returning(route_stats.c.revision)  # rowcount is -1 here with psycopg
    )
    return conn.execute(statement).first() is not None


def _checked(
    *,
    route: str,
    requests: int,
    errors: int,
    latency_counts: Sequence[int],
    output_counts: Mapping[str, int],
    replica: str,
    window_start: datetime,
) -> dict[str, Any]:
    if route not in _ROUTES:
        raise InvalidInputError(f"Unknown route {route!r}; use 'stable' or 'candidate'.")
    whole = _count(requests) and _count(errors)
    if not whole or operator.index(errors) > operator.index(requests):
        raise InvalidInputError(
            f"Counts requests={requests!r}, errors={errors!r} are invalid; give whole numbers "
            "with errors at most requests."
        )
    if len(latency_counts) != LATENCY_BUCKETS or not all(map(_count, latency_counts)):
        raise InvalidInputError(
            f"latency_counts must be {LATENCY_BUCKETS} whole numbers, one per bucket of "
            "modelyard.rollout.buckets.LATENCY_EDGES_MS plus one above; got "
            f"{len(latency_counts)} values."
        )
    for key, value in output_counts.items():
        if not isinstance(key, str) or not 0 < len(key) <= _MAX_KEY or not _count(value):
            raise InvalidInputError(
                f"Output count {key!r}: {value!r} is invalid; keys are labels of at most "
                f"{_MAX_KEY} characters and counts whole numbers."
            )
    if not replica or len(replica) > _MAX_KEY:
        raise InvalidInputError(f"Replica id {replica!r} must have 1 to {_MAX_KEY} characters.")
    if window_start.tzinfo is None:
        raise InvalidInputError(
            f"window_start {window_start.isoformat()} has no time zone; give an aware UTC time."
        )
    return {
        "requests": operator.index(requests),
        "errors": operator.index(errors),
        "latency_counts": [operator.index(c) for c in latency_counts],
        "output_counts": {k: operator.index(v) for k, v in output_counts.items()},
    }


def _count(value: object) -> bool:
    """A whole number of at least zero (numpy integers too; not bools or floats)."""
    if isinstance(value, bool) or not isinstance(value, SupportsIndex):
        return False
    return operator.index(value) >= 0
