"""The server's monitoring loop: refreshes the drift, performance, traffic, estimated
performance and reconstruction error gauges on ``/metrics`` and evaluates the alert rules, off
the event loop.

One worker per machine does the work (a lease named ``monitor@<host>``); several machines may each
evaluate the rules, and the alert store makes sure an incident is notified once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelyard.registry import Registry
    from modelyard.serving.metrics import ServingMetrics
    from modelyard.settings import Settings

logger = logging.getLogger(__name__)


class MonitorLoop:
    """Every ``tick_s`` seconds: gauges when ``drift.interval_s`` has passed, rules when
    ``alerts.interval_s`` has (each 0 turns its part off)."""

    def __init__(
        self,
        registry: Registry,
        settings: Settings,
        metrics: ServingMetrics,
        names: Callable[[], list[str]],
    ) -> None:
        from modelyard.core.durations import parse_duration
        from modelyard.rollout.lease import Lease

        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self.names = names
        monitoring = settings.monitoring
        self.gauge_interval_s = monitoring.drift.interval_s
        self.alert_interval_s = monitoring.alerts.interval_s if monitoring.alerts.rules else 0.0
        self.window = timedelta(seconds=parse_duration(monitoring.drift.window))
        positive = [i for i in (self.gauge_interval_s, self.alert_interval_s) if i > 0]
        self.tick_s = min([*positive, 5.0])
        self.lease = Lease(
            registry.db, f"monitor@{socket.gethostname()}", ttl_s=max(30.0, 3 * self.tick_s)
        )
        self._last = {"gauges": 0.0, "alerts": 0.0}
        self._task: asyncio.Task[None] | None = None
        #: The rules' warnings logged so far: each is logged once, not every round.
        self._warned: set[str] = set()

    @property
    def enabled(self) -> bool:
        return self.gauge_interval_s > 0 or self.alert_interval_s > 0

    def start(self) -> None:
        # The first round comes one interval after the start, not during warm-up.
        self._last = dict.fromkeys(self._last, time.monotonic())
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self.lease.release)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                await asyncio.to_thread(self.tick)
            except Exception:
                logger.exception("the monitoring loop failed; it tries again")

    def tick(self) -> None:
        """One round (a thread runs it); does only what is due, and only with the lease."""
        now = time.monotonic()
        due = {
            part: interval > 0 and now - self._last[part] >= interval
            for part, interval in (
                ("gauges", self.gauge_interval_s),
                ("alerts", self.alert_interval_s),
            )
        }
        if not any(due.values()) or not self.lease.acquire():
            return
        if due["gauges"]:
            self._last["gauges"] = now
            self.refresh_gauges()
        if due["alerts"]:
            self._last["alerts"] = now
            self.check_alerts()

    def refresh_gauges(self) -> None:
        from modelyard.errors import ModelyardError
        from modelyard.monitoring.mirror import readable_root
        from modelyard.monitoring.service import DriftOptions, window_metrics
        from modelyard.monitoring.unlabelled import unlabelled_metrics

        options = DriftOptions.from_settings(self.settings)
        for name in self.names():
            try:
                root, now = readable_root(self.settings, name), datetime.now(UTC)
                values = window_metrics(
                    self.registry, root, name, window=self.window, options=options, now=now
                )
                if values.get("rows"):  # estimates and reconstruction error: what lacks is left out
                    values.update(
                        unlabelled_metrics(
                            self.registry, root, name, window=self.window, now=now,
                            options=options,
                        )
                    )  # fmt: skip
            except ModelyardError as exc:
                logger.warning("no monitoring metrics for %s: %s", name, exc)
                continue
            except Exception:  # one deployment's failure (a corrupt log file) skips it alone
                logger.exception("no monitoring metrics for %s: reading its log failed", name)
                continue
            self.metrics.set_window(name, values)

    def check_alerts(self) -> None:
        from modelyard.monitoring.alerts import check_alerts, outcome_warnings

        outcomes = check_alerts(self.registry, self.settings)
        for line in outcome_warnings(outcomes):
            if line not in self._warned:
                self._warned.add(line)
                logger.warning("alert %s", line)
        for outcome in outcomes:
            if outcome.event is not None:
                logger.warning(
                    "alert %s %s: %s = %s (%s %s)", outcome.rule, outcome.event, outcome.metric,
                    outcome.value, outcome.op, outcome.threshold,
                )  # fmt: skip
