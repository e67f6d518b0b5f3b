"""The loop controller: one round (``step``) moves a deployment's loop by at most one state.

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import sqlalchemy as sa

from modelyard.errors import (
    ConcurrentUpdateError,
    ConfigError,
    ConflictError,
    ModelyardError,
    StorageError,
)
from modelyard.loop import state as store
from modelyard.loop.policy import LoopPlan, check_policies
from modelyard.loop.state import ACTIVE, ENDED, LoopState
from modelyard.rollout.lease import Lease
from modelyard.store.schema import model_versions, models

if TYPE_CHECKING:
    from modelyard.monitoring.notify import Notifier
    from modelyard.pipelines.gate import GateResult
    from modelyard.pipelines.records import PipelineRun
    from modelyard.registry import Registry
    from modelyard.rollout.types import Deployment
    from modelyard.settings import Settings

__all__ = ["LoopController", "LoopStep", "lease_name"]

logger = logging.getLogger(__name__)

#: Rounds that try to deliver the alert of a rejected loop before giving up (each round tries
#: every webhook with the alert settings' retries).
MAX_NOTIFY_ROUNDS = 5


class LoopStep(msgspec.Struct, frozen=True, kw_only=True):
    """What a round did: ``action`` is the state it moved to, or ``none`` (nothing to do now),
    ``cooldown``, ``busy`` (another controller holds the lease) or ``stale`` (another writer
    changed the state first)."""

    deployment: str
    action: str
    state: str
    reason: str
    loop: int = 0

    @property
    def moved(self) -> bool:
        return self.action not in ("none", "cooldown", "busy", "stale")


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
    def db(self) -> Any:
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
        round_ = _Round(self, plan, lease, current, when)
        return round_.act()


class _Round:
    """One round on one loop: reads what it needs, makes at most one transition."""

    def __init__(
        self, owner: LoopController, plan: LoopPlan, lease: Lease, current: LoopState, now: datetime
    ) -> None:
        self.c = owner
        self.registry = owner.registry
        self.db = owner.registry.db
        self.plan = plan
        self.name = plan.deployment
        self.lease = lease
        self.s = current
        self.now = now

    def act(self) -> LoopStep:
        s = self.s
        if s.state not in ACTIVE:
            attempts = int(s.detail.get("notify_attempts", 0))
            if s.state == "rejected" and not s.notified and attempts < MAX_NOTIFY_ROUNDS:
                self._notify(s)
            return self._idle()
        if s.decision == "rejected":
            return self._rejected_by_person()
        try:
            if s.state == "triggered":
                return self._prepare()
            if s.state == "training":
                return self._train()
            if s.state == "gating":
                return self._gate()
            if s.state == "canary":
                return self._watch()
            return self._await_approval()
        except StorageError:
            raise
        except ConcurrentUpdateError:  # a deployment changed under a move: judge again
            return self._stale()
        except ModelyardError as exc:  # the loop cannot go on: it ends, with the reason
            logger.warning("loop %s: %s", self.name, exc)
            return self._reject(str(exc), {"error": type(exc).__name__})

    # -- idle: triggers -------------------------------------------------------------------------

    def _idle(self) -> LoopStep:
        from modelyard.errors import DeploymentNotFoundError
        from modelyard.loop.triggers import fired_triggers
        from modelyard.rollout.queries import get_deployment

        s = self.s
        if s.state in ENDED and s.ended_at is not None:
            until = s.ended_at + timedelta(seconds=self.plan.cooldown_s)
            if self.now < until:
                left = (until - self.now).total_seconds()
                why = f"cooling down after loop {s.loop}: {left:.0f}s left"
                return self._result("cooldown", why)
        try:
            deployment = get_deployment(self.db, self.name)
        except DeploymentNotFoundError:
            return self._result("none", f"no deployment {self.name!r} yet")
        if deployment.active:  # someone else's rollout: the loop would only collide with it
            why = f"deployment has a candidate ({deployment.candidate_ref}, {deployment.state})"
            return self._result("none", why)
        for fired in fired_triggers(
            self.registry, self.c.settings, self.plan, deployment, now=self.now
        ):
            if store.seen_trigger(self.db, self.name, fired.key):
                continue
            started = store.start(
                self.db, s, key=fired.key, trigger_info=fired.info, actor=self.c.actor,
                reason=f"triggered by {fired.info['kind']}", now=self.now,
            )  # fmt: skip
            if started is None:
                return self._stale()
            self.s = started
            return self._result("triggered", f"loop {started.loop} triggered by {fired.key}")
        return self._result("none", "no trigger holds")

    # -- triggered: the data, then training ------------------------------------------------------

    def _prepare(self) -> LoopStep:
        from modelyard.loop.data import write_tables
        from modelyard.monitoring.mirror import readable_root
        from modelyard.pipelines.recorder import new_run_id
        from modelyard.rollout.queries import get_deployment

        serving = get_deployment(self.db, self.name)
        folder = self.c.work_dir / self.name / f"loop-{self.s.loop}"
        root = readable_root(self.c.settings, self.name)
        data = write_tables(self.plan, root, folder, now=self.now)
        run_id = new_run_id()
        detail = {
            "train": str(data.train), "holdout": str(data.holdout),
            "serving": serving.stable_ref, "model": serving.stable_model,
        }  # fmt: skip
        evidence = {"run_id": run_id, "serving": serving.stable_ref, "data": data.evidence}
        why = f"training run {run_id} on {data.evidence['train_rows']} rows"
        return self._move(
            "training", evidence, values={"run_id": run_id, "detail": detail}, reason=why
        )

    def _train(self) -> LoopStep:
        from modelyard.pipelines.recorder import new_run_id

        run_id = self.s.run_id
        assert run_id is not None
        status = _run_status(self.db, run_id)
        if status == "finished":
            return self._trained(run_id)
        if status == "failed":
            return self._reject(_failure(self.registry, run_id), {"run_id": run_id})
        if status == "running":  # its controller died: run again (finished steps are cached)
            fresh = new_run_id()
            moved = store.advance(
                self.db, self.s, "training", evidence={"rerun_of": run_id, "run_id": fresh},
                actor=self.c.actor, values={"run_id": fresh}, now=self.now,
                reason=f"run {run_id} was left running by a controller that stopped; running "
                f"the pipeline again as {fresh}",
            )  # fmt: skip
            if moved is None:
                return self._stale()
            _abandon(self.registry, run_id, fresh)
            self.s, run_id = moved, fresh
        return self._run_pipeline(run_id)

    def _run_pipeline(self, run_id: str) -> LoopStep:
        from modelyard.errors import PipelineError, StepFailedError
        from modelyard.pipelines.engine import build_pipeline
        from modelyard.pipelines.engine import run as run_pipeline
        from modelyard.pipelines.loader import load_pipeline

        params = {**self.plan.params, self.plan.data_param: self.s.detail["train"]}
        try:
            pipeline = build_pipeline(load_pipeline(self.plan.pipeline), params)
            with _renewed(self.lease, self.c.lease_ttl_s / 3):
                run_pipeline(pipeline, registry=self.registry, run_id=run_id)
        except StepFailedError as exc:
            return self._reject(f"pipeline failed: {exc}", {"run_id": run_id})
        except PipelineError as exc:
            return self._reject(f"pipeline could not run: {exc}", {"run_id": run_id})
        return self._trained(run_id)

    def _trained(self, run_id: str) -> LoopStep:
        from modelyard.pipelines.records import get_pipeline_run

        run = get_pipeline_run(self.registry, run_id)
        model = self.s.detail["model"]
        version = _registered_version(self.db, model, run) if run is not None else None
        serving = self.s.detail["serving"]
        evidence: dict[str, Any] = {"run_id": run_id, "version": version}
        if run is not None:
            evidence["metrics"] = run.metrics
        if version is None or version == serving:
            return self._reject(
                f"pipeline run {run_id} registered no new version of model {model!r}; make the "
                "pipeline register one (modelyard.pipelines.builtin.register)",
                evidence,
            )
        return self._move("gating", evidence, values={"candidate": version, "run_id": run_id},
                          reason=f"run {run_id} registered {version}")  # fmt: skip

    # -- gating ----------------------------------------------------------------------------------

    def _gate(self) -> LoopStep:
        from modelyard.pipelines.gate import gate

        candidate = self.s.candidate
        assert candidate is not None
        serving = self.s.detail["serving"]
        result = gate(
            self.registry, candidate, baseline=serving, data=self.s.detail["holdout"],
            target=self.plan.target, thresholds=self.plan.thresholds,
        )  # fmt: skip
        evidence: dict[str, Any] = {"gate": _gate_evidence(result)}
        if not result.passed:
            return self._reject(
                f"gate failed for {candidate} against {serving}: {'; '.join(result.failures)}",
                evidence,
            )
        deployment = self._start_candidate(candidate)
        evidence["rollout"] = {
            "revision": deployment.revision, "mode": deployment.mode,
            "steps": list(deployment.steps), "bake_s": deployment.bake_s, "auto": deployment.auto,
        }  # fmt: skip
        return self._move(
            "canary", evidence, values={"detail": {**self.s.detail, "start": deployment.revision}},
            reason=f"gate passed on {result.rows} holdout rows; {candidate} started as "
            f"{deployment.mode}",
        )  # fmt: skip

    def _start_candidate(self, candidate: str) -> Deployment:
        from modelyard.rollout.deployments import start_candidate
        from modelyard.rollout.queries import get_deployment

        current = get_deployment(self.db, self.name)
        if current.active and current.candidate_ref == candidate:
            return current  # started by a round that died before recording it
        plan = self.plan
        return start_candidate(
            self.registry, self.name, ref=candidate, mode=plan.mode,
            steps=plan.steps if plan.mode != "shadow" else None, bake_s=plan.bake_s,
            policy=plan.policy, auto=not plan.require_approval, actor=self.c.actor,
            reason=f"loop {self.s.loop}: gate passed",
        )  # fmt: skip

    # -- canary and approval ---------------------------------------------------------------------

    def _watch(self) -> LoopStep:
        from modelyard.rollout.controller import decide, rollout_status
        from modelyard.rollout.controller import step as rollout_step
        from modelyard.rollout.deployments import set_weight

        # A rollout controller round first, under the rollout lease (busy when the server's or
        # 'yard rollout run' acts already): a breach rolls the candidate back or pauses it, and
        # an automatic canary advances and is promoted, so 'yard loop run' needs no other
        # controller. With require_approval the candidate runs without auto: the loop moves its
        # steps below (each move checks the revision it judged) and stops before promotion.
        rollout_step(self.registry, self.name, now=self.now, actor=self.c.actor)
        status = rollout_status(self.db, self.name, now=self.now)
        d = status.deployment
        if not (d.active and d.candidate_ref == self.s.candidate):
            return self._settled(d)
        if not self.plan.require_approval:
            return self._result("none", f"canary {_where(d)}: {status.next.reason}")
        move = decide(msgspec.structs.replace(d, auto=True), status.verdict, now=self.now)
        if move.action == "advance" and move.weight is not None:
            try:
                set_weight(
                    self.registry, self.name, weight=move.weight, action="advance",
                    reason=move.reason, actor=self.c.actor, expected_revision=d.revision,
                    now=self.now,
                )  # fmt: skip
            except ConcurrentUpdateError:
                return self._stale()
            return self._result("none", f"canary advanced: {move.reason}")
        if move.action == "promote":
            evidence = {"verdict": msgspec.to_builtins(status.verdict), "revision": d.revision}
            return self._move("waiting_approval", evidence, reason=f"{move.reason}; waiting for "
                              f"'yard loop approve {self.name}'")  # fmt: skip
        return self._result("none", f"canary {_where(d)}: {move.reason}")

    def _await_approval(self) -> LoopStep:
        from modelyard.rollout.controller import step as rollout_step
        from modelyard.rollout.deployments import promote
        from modelyard.rollout.queries import get_deployment

        # Still guarded while it waits (as Flagger keeps analysing a canary whose promotion waits
        # for its confirm-promotion hook): a breach rolls it back and the loop ends rejected.
        rollout_step(self.registry, self.name, now=self.now, actor=self.c.actor)
        d = get_deployment(self.db, self.name)
        if not (d.active and d.candidate_ref == self.s.candidate):
            return self._settled(d)
        if self.s.decision != "approved":
            return self._result("none", f"waiting for 'yard loop approve {self.name}'")
        who, why = self.s.decided_by or "?", self.s.decision_reason
        try:
            promote(
                self.registry, self.name, actor=who, expected_revision=d.revision,
                reason=f"loop {self.s.loop} approved" + (f": {why}" if why else ""),
            )  # fmt: skip
        except ConflictError:
            return self._stale()
        return self._settled(get_deployment(self.db, self.name))

    def _settled(self, d: Deployment) -> LoopStep:
        """The candidate left the canary: promoted, or rolled back (or replaced)."""
        from modelyard.rollout.queries import history

        start = int(self.s.detail.get("start", 0))
        events = [e for e in reversed(history(self.db, self.name, limit=50)) if e.revision > start]
        verdicts = [
            {"revision": e.revision, "action": e.action, "reason": e.reason, "actor": e.actor,
             "detail": e.detail}
            for e in events
        ]  # fmt: skip
        evidence: dict[str, Any] = {"rollout": verdicts}
        if self.s.decision == "approved":
            evidence["approved_by"] = self.s.decided_by
            evidence["approval_reason"] = self.s.decision_reason
        if self.s.decision == "rejected":
            evidence["rejected_by"] = self.s.decided_by
            evidence["rejection_reason"] = self.s.decision_reason
        if d.stable_ref == self.s.candidate:
            late = (
                " (the rejection came after the promotion)" if self.s.decision == "rejected" else ""
            )
            return self._move("promoted", evidence, reason=f"{self.s.candidate} promoted{late}")
        ended = next((e for e in reversed(events) if e.action in ("rollback", "abort")), None)
        why = ended.reason if ended is not None and ended.reason else f"state {d.state}"
        verb = "rolled back" if ended is None or ended.action == "rollback" else "aborted"
        return self._reject(f"canary {verb}: {why}", evidence)

    def _rejected_by_person(self) -> LoopStep:
        from modelyard.rollout.deployments import abort
        from modelyard.rollout.queries import get_deployment

        s = self.s
        if s.state in ("canary", "waiting_approval"):
            d = get_deployment(self.db, self.name)
            if d.stable_ref == s.candidate:  # promoted before the rejection came: say so
                return self._settled(d)
            if d.active and d.candidate_ref == s.candidate:
                abort(self.registry, self.name, actor=s.decided_by, reason=s.decision_reason)
        evidence = {"rejected_by": s.decided_by, "reason": s.decision_reason}
        return self._reject(f"rejected by {s.decided_by}: {s.decision_reason}", evidence)

    # -- transitions ----------------------------------------------------------------------------

    def _move(
        self,
        to: str,
        evidence: dict[str, Any],
        *,
        reason: str,
        values: dict[str, Any] | None = None,
    ) -> LoopStep:
        moved = store.advance(
            self.db, self.s, to, evidence=evidence, actor=self.c.actor,  # type: ignore[arg-type]
            reason=reason, values=values, now=self.now,
        )  # fmt: skip
        if moved is None:
            return self._stale()
        self.s = moved
        return self._result(to, reason)

    def _reject(self, reason: str, evidence: dict[str, Any]) -> LoopStep:
        moved = store.advance(
            self.db, self.s, "rejected", evidence=evidence, actor=self.c.actor, reason=reason,
            values={"reason": reason, "notified": False}, now=self.now,
        )  # fmt: skip
        if moved is None:
            return self._stale()
        self.s = moved
        self._notify(moved)
        return self._result("rejected", reason)

    def _notify(self, s: LoopState) -> None:
        """The alert of a loop that ended without promotion, through the alert webhooks;
        recorded on the state, tried again each round until every webhook took it."""
        from modelyard.monitoring.alert_rules import ParsedRule

        rule = ParsedRule(
            name=f"loop:{self.name}", deployment=self.name, metric="loop", op="<",
            threshold=0.0, window="0s", window_s=0.0, hold="0s", hold_s=0.0,
        )  # fmt: skip
        payload = {
            "status": "firing", "kind": "loop", "rule": rule.name, "deployment": self.name,
            "metric": "loop", "value": None, "loop": s.loop, "state": s.state,
            "reason": s.reason, "candidate": s.candidate,
            "serving": s.detail.get("serving"), "trigger": s.trigger,
            "ended_at": s.ended_at.isoformat() if s.ended_at else None,
            "idempotency_key": f"loop:{self.name}:{s.loop}:{s.state}",
        }  # fmt: skip
        delivery = self.c.notifier.notify(rule, payload)
        attempts = int(s.detail.get("notify_attempts", 0)) + 1
        store.mark_notified(
            self.db, self.name, s.revision, notified=delivery.error is None, error=delivery.error,
            detail={**s.detail, "notify_attempts": attempts},
        )  # fmt: skip

    def _stale(self) -> LoopStep:
        return self._result("stale", "another writer changed the loop first")

    def _result(self, action: str, reason: str) -> LoopStep:
        return LoopStep(
            deployment=self.name, action=action, state=self.s.state, reason=reason,
            loop=self.s.loop,
        )  # fmt: skip


# -- helpers ------------------------------------------------------------------------------------


def _run_status(db: Any, run_id: str) -> str | None:
    from modelyard.store.schema import runs

    with db.read() as conn:
        found = conn.execute(sa.select(runs.c.status).where(runs.c.id == run_id)).scalar()
    return str(found) if found is not None else None


def _failure(registry: Registry, run_id: str) -> str:
    """Why run ``run_id`` failed: its first failed step and the last line of its error."""
    from modelyard.pipelines.records import get_pipeline_run

    run = get_pipeline_run(registry, run_id)
    failed = [step for step in run.steps if step.status == "failed"] if run is not None else []
    if not failed:
        return f"pipeline run {run_id} failed; see 'yard runs show {run_id}'"
    last = (failed[0].error or "").strip().splitlines()[-1:] or ["unknown error"]
    return (
        f"pipeline failed: step {failed[0].name!r} of run {run_id} failed ({last[0]}); see "
        f"'yard runs show {run_id}'"
    )


def _abandon(registry: Registry, run_id: str, rerun: str) -> None:
    """Record run ``run_id``, left running by a controller that died, as failed (its running
    steps cancelled, its pending ones skipped), naming the run that replaces it."""
    from modelyard.pipelines.recorder import RunRecorder
    from modelyard.pipelines.records import get_pipeline_run

    run = get_pipeline_run(registry, run_id)
    if run is None:
        return
    recorder = RunRecorder(registry.db, run_id)
    note = f"abandoned: the loop controller running it stopped; run again as {rerun}"
    recorder.mark([s.name for s in run.steps if s.status == "running"], "cancelled", note)
    recorder.mark([s.name for s in run.steps if s.status == "pending"], "skipped", note)
    recorder.finish("failed", dict(run.metrics))


def _registered_version(db: Any, model: str, run: PipelineRun) -> str | None:
    """The newest version of ``model`` that ``run`` registered (or, for a cached register step,
    the run it was cached from)."""
    ids = {run.id, *(s.cached_from for s in run.steps if s.cached_from)}
    with db.read() as conn:
        found = conn.execute(
            sa.select(sa.func.max(model_versions.c.version))
            .join(models, models.c.id == model_versions.c.model_id)
            .where(models.c.name == model, model_versions.c.run_id.in_(sorted(ids)))
        ).scalar()
    return f"{model}/{found}" if found is not None else None


def _gate_evidence(result: GateResult) -> dict[str, Any]:
    """The gate's verdict, its data and each metric on all rows and slices, compactly."""
    return {
        "passed": result.passed, "candidate": result.candidate_version,
        "baseline": result.baseline_version, "rows": result.rows, "data": result.data,
        "metrics": [
            {"metric": m.metric + (f"[{m.slice_column}={m.slice_value}]" if m.slice_column else ""),
             "candidate": m.candidate, "baseline": m.baseline, "delta": m.delta,
             "passed": m.passed}
            for m in result.results
        ],
        "failures": list(result.failures),
    }  # fmt: skip


def _where(d: Deployment) -> str:
    return f"shadow {d.shadow_sample:.0%}" if d.mode == "shadow" else f"at {d.weight:g}%"


@contextmanager
def _renewed(lease: Lease, every_s: float) -> Iterator[None]:
    """Keep ``lease`` while a long call runs (its expiry would let another controller in)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                lease.acquire()
            except Exception:
                logger.warning("could not renew the lease %s", lease.deployment, exc_info=True)

    thread = threading.Thread(target=beat, name=f"lease-{lease.deployment}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
