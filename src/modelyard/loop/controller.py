"""The loop controller: one round (``step``) moves a deployment's loop by at most one state
(``_round``).

Each round runs under the lease ``loop:NAME`` (``rollout.lease.Lease``), so however many
controllers run, one acts on a deployment's loop at a time, and every state change is also
conditional on the revision it read (``state.advance``). Training runs inside the round that
finds the loop in ``training``, with the lease renewed while it runs; the run's id is recorded
before the run starts, so a controller that dies mid-run is found out by the next one: a run
that finished is used, a run left ``running`` is run again under a new id (its finished steps are
cache hits, so nothing trains twice).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.errors import ConfigError
from modelyard.loop import state as store
from modelyard.loop._round import LoopStep, Round
from modelyard.loop.policy import LoopPlan, check_policies
from modelyard.rollout.lease import Lease

if TYPE_CHECKING:
    from modelyard.monitoring.notify import Notifier
    from modelyard.registry import Registry
    from modelyard.settings import Settings
    from modelyard.store.db import Database

__all__ = ["LoopController", "LoopStep", "lease_name"]

logger = logging.getLogger(__name__)


def lease_name(deployment: str) -> str:
    """The loop's lease name (``loop:NAME``; hashed when longer than the lease column)."""
    name = f"loop:{deployment}"
    if len(name) <= 128:
        return name
    return "loop:#" + hashlib.blake2b(deployment.encode(), digest_size=16).hexdigest()


class LoopController:
    """Drives every configured loop (``settings.loops``); the policies are checked here, so a
    bad one fails before anything runs (``ConfigError``)."""

    def __init__(
        self,
        registry: Registry,
        settings: Settings | None = None,
        *,
        notifier: Notifier | None = None,
        actor: str = "loop-controller",
        lease_ttl_s: float = 30.0,
        work_dir: Path | None = None,
    ) -> None:
        from modelyard.monitoring.notify import WebhookNotifier

        self.registry = registry
        self.settings = settings or registry.settings
        self.plans = check_policies(self.settings)
        self.notifier = notifier or WebhookNotifier.from_settings(self.settings.monitoring.alerts)
        self.actor = actor
        self.lease_ttl_s = lease_ttl_s
        self.work_dir = work_dir or self.settings.home_dir / "loops"

    @property
    def db(self) -> Database:
        return self.registry.db

    # -- rounds ---------------------------------------------------------------------------------

    def step(self, deployment: str, *, now: datetime | None = None) -> LoopStep:
        """One round for ``deployment`` under a lease of its own (released after)."""
        lease = self._lease(deployment)
        try:
            return self._step(deployment, lease, now=now)
        finally:
            lease.release()

    def run(
        self,
        interval_s: float = 5.0,
        stop: threading.Event | None = None,
        *,
        deployments: list[str] | None = None,
        once: bool = False,
        on_step: Callable[[LoopStep], None] | None = None,
    ) -> None:
        """A round for each loop every ``interval_s`` (at once again after a move) until
        ``stop`` is set, or one round with ``once``; keeps the leases between rounds."""
        names = deployments if deployments is not None else sorted(self.plans)
        for name in names:
            self._plan(name)
        stop = stop or threading.Event()
        leases = {name: self._lease(name, ttl_s=max(3 * interval_s, self.lease_ttl_s))
                  for name in names}  # fmt: skip
        try:
            while not stop.is_set():
                moved = False
                for name in names:
                    try:
                        result = self._step(name, leases[name])
                    except Exception:  # the loop is a process edge: log, try next round
                        logger.exception("loop round for %s failed", name)
                        continue
                    moved = moved or result.moved
                    if on_step is not None:
                        on_step(result)
                if once:
                    return
                if not moved:
                    stop.wait(interval_s)
        finally:
            for lease in leases.values():
                try:
                    lease.release()
                except Exception:
                    logger.exception("could not release the lease %s", lease.deployment)

    def _lease(self, deployment: str, ttl_s: float | None = None) -> Lease:
        return Lease(self.db, lease_name(deployment), ttl_s=ttl_s or self.lease_ttl_s)

    def _plan(self, deployment: str) -> LoopPlan:
        plan = self.plans.get(deployment)
        if plan is None:
            known = ", ".join(sorted(self.plans)) or "none"
            raise ConfigError(
                f"Deployment {deployment!r} has no loop policy (loops: {known}); add "
                f"[loops.{deployment}] to modelyard.toml."
            )
        return plan

    def _step(self, deployment: str, lease: Lease, *, now: datetime | None = None) -> LoopStep:
        plan = self._plan(deployment)
        when = now or datetime.now(UTC)
        if not lease.acquire(when):
            current = store.read_state(self.db, deployment)
            return LoopStep(
                deployment=deployment, action="busy", state=current.state if current else "idle",
                reason="another controller acts on this loop",
                loop=current.loop if current else 0,
            )  # fmt: skip
        current = store.ensure_state(self.db, deployment, now=when)
        round_ = Round(self, plan, lease, current, when)
        return round_.act()
