"""One round of a loop (``Round``): reads what it needs and makes at most one transition, by
the state the loop is in (see ``modelyard.loop``)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from modelyard.errors import (
    ConcurrentUpdateError,
    ConflictError,
    ModelyardError,
    StorageError,
)
from modelyard.loop import state as store
from modelyard.loop._runs import abandon, failure, registered_version, renewed, run_status
from modelyard.loop.state import ACTIVE, ENDED, LoopState

if TYPE_CHECKING:
    from modelyard.loop.controller import LoopController
    from modelyard.loop.policy import LoopPlan
    from modelyard.pipelines.gate import GateResult
    from modelyard.rollout.lease import Lease
    from modelyard.rollout.types import Deployment

logger = logging.getLogger("modelyard.loop.controller")

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


class Round:
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
        status = run_status(self.db, run_id)
        if status == "finished":
            return self._trained(run_id)
        if status == "failed":
            return self._reject(failure(self.registry, run_id), {"run_id": run_id})
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
            abandon(self.registry, run_id, fresh)
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
            with renewed(self.lease, self.c.lease_ttl_s / 3):
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
        version = registered_version(self.db, model, run) if run is not None else None
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
