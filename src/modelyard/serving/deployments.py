"""Deployments in the server: a stable and an optional candidate model behind one name.

Each request is routed the way every replica routes it (``rollout.choose_route``: a weighted
draw for canary, a keyed hash for A/B), whichever front door it came through: the router sees
a protocol-neutral ``rows_for(model)`` that validates the request for one model. A candidate
that fails a request has it answered by stable when the deployment says so, and the failure
still counts against the candidate; so does a request the candidate refuses as invalid while
stable accepts it (a candidate with other inputs). In shadow mode stable answers and a sampled
copy goes to the candidate after the answer is sent.
What each route saw is counted in a ``StatsBuffer`` and written to the metadata store every
second, where the controller of any replica judges it. A changed deployment (new revision)
is loaded beside the running one and swapped in, as models are.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from modelyard.errors import ModelyardError, PredictionError
from modelyard.rollout import (
    Deployment,
    Lease,
    StatsBuffer,
    choose_route,
    class_key,
    deployment_revisions,
    get_deployment,
    prune_route_stats,
    shadows,
    step,
    value_bin,
)

if TYPE_CHECKING:
    from modelyard.registry import Registry
    from modelyard.serving.batching import BatchResult
    from modelyard.serving.models import ModelHub, ServedModel
    from modelyard.serving.validation import Rows

    RowsFor = Callable[[ServedModel], Rows]

logger = logging.getLogger(__name__)

#: Failures of the candidate that stable may answer instead (not the client's bad input).
RETRYABLE = {"model", "timeout", "overloaded", "not_ready", "serving", "internal"}
FLUSH_S = 1.0
#: Route statistics older than this are deleted (every PRUNE_EVERY flushes, by any replica).
STATS_KEEP_DAYS = 14
PRUNE_EVERY = 3600


class DeploymentSlot:
    """One deployment's current state and models; replaced whole on every change."""

    def __init__(
        self, deployment: Deployment, stable: ServedModel, candidate: ServedModel | None
    ) -> None:
        self.deployment = deployment
        self.stable = stable
        self.candidate = candidate

    def route(self, *, key: str | None) -> tuple[str, ServedModel]:
        d = self.deployment
        if self.candidate is None:
            return "stable", self.stable
        name = choose_route(d, key=key, draw=random.random())
        return name, (self.candidate if name == "candidate" else self.stable)

    def sticky_key(self, headers: dict[str, str], field: Callable[[str], str | None]) -> str | None:
        """The A/B key: the sticky header, or ``field(name)``, the request's first value of the
        sticky input field (each front door reads its own body)."""
        d = self.deployment
        if d.mode != "ab":
            return None
        if d.sticky_header:
            return headers.get(d.sticky_header.lower())
        if d.sticky_field:
            return field(d.sticky_field)
        return None


class DeploymentRouter:
    """The deployments one server serves, their statistics and their controller."""

    def __init__(
        self,
        registry: Registry,
        names: list[str],
        hub: ModelHub,
        *,
        on_route: Callable[[str, str, float, bool], None] | None = None,
    ) -> None:
        """``on_route(deployment, route, seconds, error)`` hears of every try on a route."""
        self.registry = registry
        self.on_route = on_route
        self.names = names
        self.hub = hub
        self.slots: dict[str, DeploymentSlot] = {}
        replica = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.stats = StatsBuffer(replica=replica)
        self.sticky_headers: set[bytes] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._shadows: set[asyncio.Task[None]] = set()
        self._leases: dict[str, Lease] = {}
        #: Where the controller reads the prediction log (business outcomes), when it is kept.
        self.log_root: Callable[[str], str] | None = None

    async def start(self) -> None:
        for name in self.names:
            deployment = await asyncio.to_thread(get_deployment, self.registry.db, name)
            self.slots[name] = await self._build(deployment, None)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._follow()),
            loop.create_task(self._flush()),
            loop.create_task(self._control()),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._shadows:
            await asyncio.gather(*self._shadows, return_exceptions=True)
        for slot in self.slots.values():
            await slot.stable.close()
            if slot.candidate is not None:
                await slot.candidate.close()
        await asyncio.to_thread(self.stats.flush, self.registry.db)
        for lease in self._leases.values():
            await asyncio.to_thread(lease.release)

    # -- requests ------------------------------------------------------------------------------

    async def predict(
        self,
        slot: DeploymentSlot,
        rows_for: RowsFor,
        *,
        wanted: tuple[str, ...],
        key: str | None,
        timeout_s: float,
    ) -> tuple[str, ServedModel, BatchResult, Rows]:
        """Answer on the route the deployment picks; retry a failed candidate on stable.

        ``rows_for(model)`` validates the request for one model (``InvalidInputError`` when it
        does not fit). A request stable refuses is the client's error on every route.
        """
        d = slot.deployment
        route, served = slot.route(key=key)
        started = time.perf_counter()
        try:
            rows = rows_for(served)
            result = await served.predict(rows, _with_predict(wanted), timeout_s=timeout_s)
        except ModelyardError as exc:
            if route != "candidate":
                self._observe(d, route, started, None, error=exc.kind in RETRYABLE)
                raise
            failed = exc.kind in RETRYABLE
            if not failed:
                try:  # the candidate refused the input: its fault only if stable takes it
                    rows_for(slot.stable)
                except ModelyardError:
                    self._observe(d, route, started, None)
                    raise
                failed = True
            self._observe(d, route, started, None, error=True)
            if not d.retry_on_stable:
                if exc.kind in RETRYABLE:
                    raise
                raise PredictionError(
                    f"The candidate of deployment {d.name!r} refused a request its stable "
                    f"route accepts: {exc}"
                ) from None
            logger.warning("candidate of %r failed (%r); answered by stable", d.name, str(exc))
            route, served = "stable", slot.stable
            started = time.perf_counter()
            rows = rows_for(served)
            result = await served.predict(rows, _with_predict(wanted), timeout_s=timeout_s)
        self._observe(d, route, started, result)
        if slot.candidate is not None and shadows(d, draw=random.random()):
            task = asyncio.get_running_loop().create_task(self._shadow(slot, rows_for, timeout_s))
            self._shadows.add(task)
            task.add_done_callback(self._shadows.discard)
        return route, served, result, rows

    async def _shadow(self, slot: DeploymentSlot, rows_for: RowsFor, timeout_s: float) -> None:
        candidate = slot.candidate
        if candidate is None:
            return
        started = time.perf_counter()
        try:
            rows = rows_for(candidate)
            result = await candidate.predict(rows, ("predict",), timeout_s=timeout_s)
        except ModelyardError as exc:
            # stable took this request, so whatever the candidate says against it is its failure
            self._observe(slot.deployment, "candidate", started, None, error=True)
            logger.debug("shadow candidate of %r failed: %r", slot.deployment.name, str(exc))
            return
        self._observe(slot.deployment, "candidate", started, result)

    def _observe(
        self,
        d: Deployment,
        route: str,
        started: float,
        result: BatchResult | None,
        *,
        error: bool = False,
    ) -> None:
        outputs: list[str] = []
        if result is not None:
            predictions = np.asarray(result.outputs.get("predict", ()))
            if predictions.dtype.kind == "f":
                outputs = [value_bin(float(v)) for v in predictions.ravel().tolist()]
            else:
                outputs = [class_key(v) for v in predictions.ravel().tolist()]
        seconds = time.perf_counter() - started
        self.stats.observe(
            d.name, d.revision, route,  # type: ignore[arg-type]
            latency_ms=seconds * 1000, error=error, outputs=outputs,
        )  # fmt: skip
        if self.on_route is not None:
            self.on_route(d.name, route, seconds, error)

    # -- following changes ---------------------------------------------------------------------

    async def _follow(self) -> None:
        interval = min(self.hub.settings.poll_interval_s, 0.5)
        while True:
            await asyncio.sleep(interval)
            try:
                revisions = await asyncio.to_thread(
                    deployment_revisions, self.registry.db, self.names
                )
            except ModelyardError as exc:
                logger.warning("cannot read deployments: %s", exc)
                continue
            for name, revision in revisions.items():
                slot = self.slots.get(name)
                if slot is not None and revision != slot.deployment.revision:
                    await self._refresh(name, slot)

    async def _refresh(self, name: str, old: DeploymentSlot) -> None:
        try:
            deployment = await asyncio.to_thread(get_deployment, self.registry.db, name)
            new = await self._build(deployment, old)
        except Exception as exc:
            logger.error("could not follow deployment %s; serving as before: %s", name, exc)
            return
        self.slots[name] = new
        logger.info(
            "deployment %s at revision %d: stable %s, candidate %s (%s %s%%)",
            name, deployment.revision, deployment.stable_ref, deployment.candidate_ref,
            deployment.mode, deployment.weight,
        )  # fmt: skip
        kept = {id(new.stable), id(new.candidate)}
        for served in (old.stable, old.candidate):
            if served is not None and id(served) not in kept:
                await served.close()

    async def _build(self, d: Deployment, old: DeploymentSlot | None) -> DeploymentSlot:
        """Models for ``d``, reusing those already loaded (a promoted candidate stays warm)."""
        loaded = {}
        if old is not None:
            for served in (old.stable, old.candidate):
                if served is not None:
                    loaded[(served.name, served.version)] = served
        stable = loaded.get((d.stable_model, str(d.stable_version)))
        if stable is None:
            stable = await self._load(d.stable_model, str(d.stable_version), d.stable_ref)
        candidate = None
        if d.active and d.candidate_ref is not None:
            model, version = d.candidate_model or "", str(d.candidate_version)
            candidate = loaded.get((model, version))
            if candidate is None:
                candidate = await self._load(model, version, d.candidate_ref)
        if d.mode == "ab" and d.sticky_header:
            self.sticky_headers.add(d.sticky_header.lower().encode())
        return DeploymentSlot(d, stable, candidate)

    async def _load(self, model: str, version: str, ref: str) -> ServedModel:
        """``hub.load``; a version that fails is counted as a failed load (metrics, alerts)."""
        try:
            return await self.hub.load(ref)
        except Exception:
            self.hub.load_failed(model, version)
            raise

    async def _control(self) -> None:
        """The controller, in the server: every replica tries, the lease lets one act."""
        while True:
            await asyncio.sleep(self.hub.settings.rollout_interval_s)
            for name, slot in list(self.slots.items()):
                if not (slot.deployment.auto and slot.deployment.active):
                    continue
                lease = self._leases.get(name)
                if lease is None:
                    lease = self._leases[name] = Lease(self.registry.db, name)
                try:
                    result = await asyncio.to_thread(
                        step, self.registry, name, lease=lease, log_root=self.log_root
                    )
                except ModelyardError as exc:
                    logger.warning("controller of %s: %s", name, exc)
                    continue
                if result.action not in ("busy", "wait", "none"):
                    logger.info("controller of %s: %s (%s)", name, result.action, result.reason)

    async def _flush(self) -> None:
        flushes = 0
        while True:
            await asyncio.sleep(FLUSH_S)
            flushes += 1
            try:
                await asyncio.to_thread(self.stats.flush, self.registry.db)
                if flushes % PRUNE_EVERY == 0:  # keep the statistics table from growing forever
                    cutoff = datetime.now(UTC) - timedelta(days=STATS_KEEP_DAYS)
                    await asyncio.to_thread(prune_route_stats, self.registry.db, before=cutoff)
            except ModelyardError as exc:
                logger.warning("cannot write rollout statistics (kept for later): %s", exc)


def _with_predict(wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The route statistics need the labels even when the client asked only for probabilities."""
    return wanted if "predict" in wanted else (*wanted, "predict")
