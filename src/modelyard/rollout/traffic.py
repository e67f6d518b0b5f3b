"""Recent traffic per route, read from the recorded route statistics (``stats``): the rates of
the last few minutes and per-minute series for a chart.

``live_traffic`` covers the deployment's current revision (the routes as they are now) over the
last ``window_s`` seconds: requests per second is the requests counted divided by the seconds
from the first window counted (or the window's start, if later) to now. ``traffic_series`` sums
every revision's windows into steps of ``step_s`` seconds, so a chart runs across the changes of
the last hour; each route's line is its share of traffic whichever version served it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import msgspec
import sqlalchemy as sa

from modelyard.errors import InvalidInputError
from modelyard.rollout._rows import deployment_row
from modelyard.rollout.buckets import WINDOW_S
from modelyard.rollout.stats import route_summary
from modelyard.rollout.types import RouteName, RouteStats
from modelyard.store.schema import route_stats

if TYPE_CHECKING:
    from modelyard.store.db import Database

_ROUTES: tuple[RouteName, ...] = ("stable", "candidate")
_MAX_POINTS = 1440


class RouteRate(msgspec.Struct, frozen=True, kw_only=True):
    """One route's recent traffic: totals, requests per second, error ratio and p99."""

    route: RouteName
    requests: int
    errors: int
    requests_per_s: float
    error_rate: float | None
    p99_ms: float | None


class LiveTraffic(msgspec.Struct, frozen=True, kw_only=True):
    deployment: str
    revision: int
    since: datetime
    until: datetime
    routes: tuple[RouteRate, ...]


class RouteSeries(msgspec.Struct, frozen=True, kw_only=True):
    """One route's requests per second and error ratio (``None``: no requests) per step."""

    route: RouteName
    requests_per_s: tuple[float, ...]
    error_rate: tuple[float | None, ...]


class TrafficSeries(msgspec.Struct, frozen=True, kw_only=True):
    deployment: str
    step_s: int
    starts: tuple[datetime, ...]
    routes: tuple[RouteSeries, ...]

    @property
    def empty(self) -> bool:
        return not any(any(r.requests_per_s) for r in self.routes)


def live_traffic(
    db: Database, name: str, *, window_s: float = 300.0, now: datetime | None = None
) -> LiveTraffic:
    """Each route's traffic on the current revision over the last ``window_s`` seconds."""
    until = now or datetime.now(UTC)
    since = until - timedelta(seconds=window_s)
    summary = route_summary(db, name, since=since)
    with db.read() as conn:
        row = deployment_row(conn, name)
        first = conn.execute(
            sa.select(sa.func.min(route_stats.c.window_start)).where(
                route_stats.c.deployment_id == row.id,
                route_stats.c.revision == summary.revision,
                route_stats.c.window_start >= since,
            )
        ).scalar()
    start = max(since, _aware(first)) if first is not None else since
    seconds = max((until - start).total_seconds(), float(WINDOW_S))
    return LiveTraffic(
        deployment=name, revision=summary.revision, since=since, until=until,
        routes=tuple(_rate(r, seconds) for r in (summary.stable, summary.candidate)),
    )  # fmt: skip


def traffic_series(
    db: Database,
    name: str,
    *,
    start: datetime,
    end: datetime | None = None,
    step_s: int = 60,
) -> TrafficSeries:
    """Requests per second and error ratio per route in steps of ``step_s`` seconds from
    ``start`` to ``end`` (default now), over every revision."""
    until = end or datetime.now(UTC)
    if step_s < WINDOW_S or not start < until:
        raise InvalidInputError(
            f"A traffic series needs a start before its end and steps of at least {WINDOW_S}s; "
            f"got {start.isoformat()} to {until.isoformat()} in {step_s}s steps."
        )
    count = int(-(-(until - start).total_seconds() // step_s))
    if count > _MAX_POINTS:
        raise InvalidInputError(
            f"A traffic series of {count} steps is too long (at most {_MAX_POINTS}); use "
            "longer steps or a shorter span."
        )
    requests = {route: [0] * count for route in _ROUTES}
    errors = {route: [0] * count for route in _ROUTES}
    with db.read() as conn:
        row = deployment_row(conn, name)
        rows = conn.execute(
            sa.select(
                route_stats.c.route, route_stats.c.window_start, route_stats.c.requests,
                route_stats.c.errors,
            ).where(
                route_stats.c.deployment_id == row.id,
                route_stats.c.window_start >= start,
                route_stats.c.window_start < until,
            )
        ).all()  # fmt: skip
    for stat in rows:
        index = int((_aware(stat.window_start) - start).total_seconds() // step_s)
        if stat.route in requests and 0 <= index < count:
            requests[stat.route][index] += int(stat.requests)
            errors[stat.route][index] += int(stat.errors)
    return TrafficSeries(
        deployment=name,
        step_s=step_s,
        starts=tuple(start + timedelta(seconds=i * step_s) for i in range(count)),
        routes=tuple(
            RouteSeries(
                route=route,
                requests_per_s=tuple(n / step_s for n in requests[route]),
                error_rate=tuple(
                    e / n if n else None
                    for n, e in zip(requests[route], errors[route], strict=True)
                ),
            )
            for route in _ROUTES
        ),
    )


def _rate(stats: RouteStats, seconds: float) -> RouteRate:
    return RouteRate(
        route=stats.route, requests=stats.requests, errors=stats.errors,
        requests_per_s=stats.requests / seconds, error_rate=stats.error_rate,
        p99_ms=stats.p99_ms,
    )  # fmt: skip


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
