"""The pipeline runs of a loop, read and written in the metadata store: a run's status, why it
failed, a run left running by a dead controller recorded as abandoned, the model version a run
registered, and the lease kept while a run trains."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import sqlalchemy as sa

from modelyard.store.schema import model_versions, models, runs

if TYPE_CHECKING:
    from modelyard.pipelines.records import PipelineRun
    from modelyard.registry import Registry
    from modelyard.rollout.lease import Lease
    from modelyard.store.db import Database

logger = logging.getLogger("modelyard.loop.controller")


def run_status(db: Database, run_id: str) -> str | None:
    """``running``, ``finished`` or ``failed``; ``None`` when no run has that id (yet)."""
    with db.read() as conn:
        found = conn.execute(sa.select(runs.c.status).where(runs.c.id == run_id)).scalar()
    return str(found) if found is not None else None


def failure(registry: Registry, run_id: str) -> str:
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


def abandon(registry: Registry, run_id: str, rerun: str) -> None:
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


def registered_version(db: Database, model: str, run: PipelineRun) -> str | None:
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


@contextmanager
def renewed(lease: Lease, every_s: float) -> Iterator[None]:
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
