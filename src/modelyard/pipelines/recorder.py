"""Writing a pipeline run to the metadata store, one transaction per change of state.

The run and all its steps (``pending``) are created in one transaction before anything executes.
A step's outputs are recorded only once the worker has stored every one of their blobs, in the
same transaction that marks the step ``succeeded``: a step is never recorded with half its outputs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from modelyard.pipelines.records import ArtifactRecord
from modelyard.registry.runs import clean_metrics, clean_strings
from modelyard.store.schema import pipeline_artifacts, run_steps, runs

if TYPE_CHECKING:
    from modelyard.pipelines.graph import Pipeline
    from modelyard.pipelines.worker import StepResult
    from modelyard.store.db import Database

__all__ = ["RunRecorder"]

LOG_LIMIT_CHARS = 65_536


class RunRecorder:
    """The writes of one pipeline run."""

    def __init__(self, db: Database, run_id: str) -> None:
        self.db = db
        self.run_id = run_id

    def create(self, pipeline: Pipeline, *, user: str, tags: Mapping[str, str]) -> dict[str, str]:
        """Record the run and its steps; the run's params as recorded."""
        now = datetime.now(UTC)
        params = {k: v if isinstance(v, str) else _text(v) for k, v in pipeline.params.items()}
        params = clean_strings("param", params)
        with self.db.write() as conn:
            conn.execute(
                sa.insert(runs).values(
                    id=self.run_id,
                    name=pipeline.name,
                    status="running",
                    start_time=now,
                    params=params,
                    metrics={},
                    tags=clean_strings("tag", dict(tags)),
                    user=user,
                )
            )
            conn.execute(
                sa.insert(run_steps),
                [
                    {
                        "run_id": self.run_id,
                        "name": node.name,
                        "position": i,
                        "function": node.step.function_id[:512],
                        "status": "pending",
                        "upstream": list(pipeline.upstream[node.name]),
                        "params": pipeline.params_of[node.name],
                        "inputs": {},
                        "outputs": {},
                        "metrics": {},
                    }
                    for i, node in enumerate(pipeline.nodes)
                ],
            )
        return params

    def running(
        self, step: str, *, key: str, parts: dict[str, Any], note: str, inputs: dict[str, str]
    ) -> None:
        self._update(
            step,
            status="running",
            cache_key=key,
            key_parts=parts,
            cache_note=note,
            inputs=inputs,
            started_at=datetime.now(UTC),
        )

    def cached(
        self,
        step: str,
        *,
        key: str,
        parts: dict[str, Any],
        inputs: dict[str, str],
        source_run: str,
        outputs: dict[str, str],
        metrics: dict[str, float],
    ) -> None:
        now = datetime.now(UTC)
        self._update(
            step,
            status="cached",
            cache_key=key,
            key_parts=parts,
            cache_note=f"cache hit: outputs of run {source_run}",
            cached_from=source_run,
            inputs=inputs,
            outputs=outputs,
            metrics=metrics,
            started_at=now,
            ended_at=now,
            duration_s=0.0,
        )

    def succeeded(self, step: str, result: StepResult) -> dict[str, ArtifactRecord]:
        """Record the outputs (already in the artifact store) and mark the step succeeded."""
        now = datetime.now(UTC)
        records = {
            name: ArtifactRecord(
                id=uuid.uuid4().hex,
                sha256=out.sha256,
                kind=out.kind,
                format=out.format,
                python_type=out.python_type[:256],
                size_bytes=out.size_bytes,
                meta=out.meta,
                run_id=self.run_id,
                step=step,
                output=name,
                created_at=now,
            )
            for name, out in result.outputs.items()
        }
        with self.db.write() as conn:
            if records:
                conn.execute(
                    sa.insert(pipeline_artifacts),
                    [{f: getattr(r, f) for f in r.__struct_fields__} for r in records.values()],
                )
            self._update(
                step,
                conn=conn,
                status="succeeded",
                outputs={name: r.id for name, r in records.items()},
                metrics=clean_metrics(result.metrics),
                **_timing(result),
            )
        return records

    def failed(self, step: str, result: StepResult) -> None:
        self._update(step, status="failed", error=result.error, **_timing(result))

    def mark(self, steps: Iterable[str], status: str, note: str) -> None:
        names = list(steps)
        if not names:
            return
        with self.db.write() as conn:
            conn.execute(
                sa.update(run_steps)
                .where(run_steps.c.run_id == self.run_id, run_steps.c.name.in_(names))
                .values(status=status, cache_note=note)
            )

    def add_tags(self, tags: dict[str, str]) -> None:
        """``tags`` merged into the run's (nothing written when empty)."""
        if not tags:
            return
        with self.db.write() as conn:
            current = conn.execute(sa.select(runs.c.tags).where(runs.c.id == self.run_id)).one()
            merged = {**(current.tags or {}), **tags}
            conn.execute(sa.update(runs).where(runs.c.id == self.run_id).values(tags=merged))

    def finish(self, status: str, metrics: dict[str, float]) -> None:
        with self.db.write() as conn:
            conn.execute(
                sa.update(runs)
                .where(runs.c.id == self.run_id)
                .values(status=status, end_time=datetime.now(UTC), metrics=metrics)
            )

    def _update(self, step: str, *, conn: sa.Connection | None = None, **values: Any) -> None:
        query = (
            sa.update(run_steps)
            .where(run_steps.c.run_id == self.run_id, run_steps.c.name == step)
            .values(**values)
        )
        if conn is not None:
            conn.execute(query)
            return
        with self.db.write() as own:
            own.execute(query)


def _timing(result: StepResult) -> dict[str, Any]:
    return {
        "started_at": result.started_at,
        "ended_at": result.ended_at,
        "duration_s": result.duration_s,
        "log": truncate_log(result.log),
    }


def truncate_log(text: str, limit: int = LOG_LIMIT_CHARS) -> str:
    """``text``, or its first quarter and last three quarters of ``limit`` around a marker."""
    if len(text) <= limit:
        return text
    head, tail = limit // 4, limit - limit // 4
    omitted = len(text) - head - tail
    return f"{text[:head]}\n[... {omitted} characters omitted ...]\n{text[-tail:]}"


def _text(value: Any) -> str:
    from modelyard.pipelines.params import canonical_json

    return canonical_json(value)


def new_run_id() -> str:
    return uuid.uuid4().hex
