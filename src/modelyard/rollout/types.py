"""Rollout records: deployments, their policy and events, traffic summaries and verdicts.

All are frozen msgspec Structs, cheap to build, compare and encode (``yard ... --json``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

#: How the candidate route receives traffic.
Mode = Literal["canary", "ab", "shadow"]
#: ``stable``: no candidate yet; ``rolling``: a candidate is live; ``paused``: a candidate is live
#: but the controller holds it; ``promoted``/``rolled_back``: the last candidate's fate.
State = Literal["stable", "rolling", "paused", "promoted", "rolled_back"]
RouteName = Literal["stable", "candidate"]
OnBreach = Literal["rollback", "pause"]
Status = Literal["pass", "wait", "breach"]

MODES: tuple[Mode, ...] = ("canary", "ab", "shadow")
ACTIVE_STATES: tuple[State, ...] = ("rolling", "paused")


class Policy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When a candidate passes, waits or breaches (see ``modelyard.rollout.analysis``).

    - ``min_requests``: requests each route needs (in the current step) before any judgement.
    - ``max_error_rate``: the candidate's error rate may not exceed this (absolute).
    - ``max_error_ratio``: nor this many times the stable's error rate, taken as at least
      ``error_rate_floor`` so that a stable route without errors does not make one candidate
      error a breach.
    - ``max_p99_ratio``: the candidate's p99 latency may not exceed this many times the stable's
      p99, taken as at least ``p99_floor_ms`` (sub-millisecond noise is not a regression).
    - ``max_p99_ms``: an optional absolute ceiling on the candidate's p99 latency.
    - ``max_output_distance``: the Jensen-Shannon distance (square root of the divergence, log
      base 2, so between 0 and 1) between the two routes' output distributions; ``None`` turns
      the check off.
    - ``on_breach``: ``rollback`` drops the candidate, ``pause`` holds it for a person.
    - ``min_outcomes``: business outcomes (``POST /v1/outcomes``) each route's predictions of
      the current step need before the outcome test; ``None`` (the default) turns it off. It
      needs the prediction log. The test: a one-sided Welch t-test that the candidate's mean
      outcome per request is below stable's, less ``outcome_tolerance`` (a tolerated relative
      drop: 0.02 lets the candidate be 2% worse), breaching when its p-value is below
      ``outcome_alpha`` (see ``modelyard.rollout.analysis``).
    """

    min_requests: int = 100
    max_error_rate: float = 0.05
    max_error_ratio: float = 2.0
    error_rate_floor: float = 0.01
    max_p99_ratio: float = 1.5
    p99_floor_ms: float = 5.0
    max_p99_ms: float | None = None
    max_output_distance: float | None = 0.2
    on_breach: OnBreach = "rollback"
    min_outcomes: int | None = None
    outcome_alpha: float = 0.05
    outcome_tolerance: float = 0.0


class Deployment(msgspec.Struct, frozen=True, kw_only=True):
    """A named endpoint: a stable route and at most one candidate route.

    ``weight`` is the percentage (0-100) of requests the candidate gets in ``canary`` and ``ab``
    modes; in ``ab`` mode the route is chosen by a hash of the request's ``sticky_header`` or
    ``sticky_field``. In ``shadow`` mode every request is answered by stable and a share
    ``shadow_sample`` (0-1) is also sent to the candidate. ``retry_on_stable``: a request the
    candidate fails is answered by stable. ``revision`` grows by one on every change; servers poll
    it (``deployment_revision``) and tag the statistics they record with it.
    """

    name: str
    stable_model: str
    stable_version: int
    stable_alias: str | None
    candidate_model: str | None
    candidate_version: int | None
    mode: Mode | None
    weight: float
    sticky_header: str | None
    sticky_field: str | None
    shadow_sample: float
    retry_on_stable: bool
    steps: tuple[float, ...]
    bake_s: float
    step_index: int
    step_started_at: datetime | None
    auto: bool
    policy: Policy
    state: State
    revision: int
    created_at: datetime
    updated_at: datetime

    @property
    def stable_ref(self) -> str:
        return f"{self.stable_model}/{self.stable_version}"

    @property
    def candidate_ref(self) -> str | None:
        if self.candidate_model is None or self.candidate_version is None:
            return None
        return f"{self.candidate_model}/{self.candidate_version}"

    @property
    def active(self) -> bool:
        """Whether a candidate route is live (rolling or paused)."""
        return self.state in ACTIVE_STATES

    @property
    def next_weight(self) -> float | None:
        """The next scheduled weight above the current one; ``None`` when promotion is next."""
        return next((s for s in self.steps if s > self.weight), None)


class DeploymentEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One audited change; ``revision`` is the deployment's revision after it."""

    id: int
    deployment: str
    revision: int
    action: str
    detail: dict[str, Any]
    actor: str
    reason: str | None
    at: datetime

    @property
    def summary(self) -> str:
        """The detail in one line, without the verdict and traffic a controller records."""
        shown = {k: v for k, v in self.detail.items() if k not in ("verdict", "traffic")}
        return ", ".join(f"{k}={v}" for k, v in shown.items() if v not in (None, [], {}))


class RouteStats(msgspec.Struct, frozen=True, kw_only=True):
    """One route's merged traffic: counts, latency histogram (``LATENCY_EDGES_MS``), outputs."""

    route: RouteName
    requests: int
    errors: int
    error_rate: float | None
    p50_ms: float | None
    p99_ms: float | None
    latency_counts: tuple[int, ...]
    output_counts: dict[str, int]


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    """Both routes' traffic for one revision of a deployment (since ``since`` when given)."""

    deployment: str
    revision: int
    mode: Mode | None
    weight: float
    since: datetime | None
    stable: RouteStats
    candidate: RouteStats


class OutcomeStats(msgspec.Struct, frozen=True, kw_only=True):
    """The business outcomes of one route's predictions in the current step: how many, their
    mean and its standard error (``None`` without outcomes, or below two for ``stderr``)."""

    route: RouteName
    count: int
    mean: float | None = None
    stderr: float | None = None


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """``pass``, ``wait`` (not enough requests; ``reasons`` say which) or ``breach`` (``reasons``
    name each broken rule). ``notes`` name the checks that were skipped and why."""

    status: Status
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    output_distance: float | None = None
    #: The outcome test's one-sided p-value, when it ran.
    outcome_p_value: float | None = None
