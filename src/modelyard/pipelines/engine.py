"""Running a pipeline: validate, record, then execute or reuse each step in dependency order.

Before anything is written: the parameters, the graph, the ``--force`` names, every step's input
files and ``check`` hook, and every step's code fingerprint. Then the run and its steps are
created (``pending``) and steps whose inputs are ready are, in topological order, either a cache
hit (an earlier successful execution with the same key whose outputs all still exist in the
artifact store and match their sha256) or handed to the executor.

A step that fails marks the run failed; the steps that depend on it are ``skipped``, and steps
that do not depend on it still run, so that their outputs are cached for the next run.
Interrupted (Ctrl-C), running steps are cancelled and the run is marked failed.

Run mirrors (``mirror=``, else ``[runs] mirror``; ``modelyard.integrations.runs``) are opened
before the run is recorded and get its params and tags, each step's metrics as ``STEP.NAME`` when
the step succeeds, and its end; one that fails on the way is detached and tagged on the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from modelyard.errors import IntegrityError, PipelineDefinitionError, StepFailedError
from modelyard.pipelines import cache, records
from modelyard.pipelines.graph import Node, Pipeline
from modelyard.pipelines.plan import Plan, importable
from modelyard.pipelines.recorder import RunRecorder, new_run_id
from modelyard.pipelines.tracing import PipelineDef
from modelyard.pipelines.worker import InputArtifact, StepResult, StepTask
from modelyard.registry.runs import RunMirrors

if TYPE_CHECKING:
    from sqlalchemy.engine import Row

    from modelyard.integrations.runs import MirrorDefaults, MirrorSpec, OpenedMirror
    from modelyard.pipelines.executors import Executor
    from modelyard.pipelines.records import ArtifactRecord, PipelineRun
    from modelyard.registry import Registry

__all__ = ["PipelineEvent", "build_pipeline", "run"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PipelineEvent:
    """A change of state, for progress displays: ``step`` is ``None`` for the run itself."""

    run_id: str
    step: str | None
    status: str
    duration_s: float | None = None
    cached_from: str | None = None
    note: str | None = None


def run(
    target: Pipeline | PipelineDef,
    *,
    params: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
    executor: Executor | None = None,
    no_cache: bool = False,
    force: Iterable[str] = (),
    on_event: Callable[[PipelineEvent], None] | None = None,
    package_versions: cache.PackageVersionsFn | None = None,
    run_id: str | None = None,
    mirror: str | Sequence[str] | None = None,
) -> PipelineRun:
    """Run a pipeline and return its record; ``StepFailedError`` (with ``run_id``) if a step
    failed. ``params`` go to a ``@pipeline`` function; ``no_cache`` runs every step; ``force``
    names steps to run even on a cache hit; ``run_id``: the id to record the run under (a new
    one when ``None``), for a caller that records which run it started before starting it;
    ``mirror``: trackers that receive the run too, as in ``modelyard.start_run`` (default the
    ``[runs] mirror`` setting, ``[]`` for none)."""
    from modelyard._api import mirror_defaults
    from modelyard.integrations.runs import parse_mirrors
    from modelyard.pipelines.executors import LocalExecutor

    pipeline = build_pipeline(target, params)
    forced = set(force)
    for name in sorted(forced):
        pipeline.node(name)  # unknown names fail here, listing the steps
    if registry is None:
        from modelyard._api import get_registry

        registry = get_registry()
    specs = parse_mirrors(registry.settings.runs.mirror if mirror is None else mirror)
    parallelism = pipeline.width
    if executor is None:  # the default: worker processes only for steps they can import
        executor = LocalExecutor()
        if not all(importable(node.step) for node in pipeline.nodes):
            parallelism = 1
    executor.open(parallelism=parallelism)
    try:
        plan = Plan.prepare(pipeline, registry, executor, package_versions)
        runner = _Runner(plan, registry, executor, on_event or (lambda event: None), run_id)
        runner.mirror_to(specs, mirror_defaults(registry))
        runner.execute(no_cache=no_cache, forced=forced)
    except BaseException:
        executor.close(cancel=True)
        raise
    executor.close()
    with registry.db.read() as conn:
        result = records.fetch_pipeline_run(conn, runner.run_id)
    assert result is not None
    failed = tuple(s.name for s in result.steps if s.status == "failed")
    if failed:
        first = result.step(failed[0])
        reason = (first.error or "").strip().splitlines()[-1:] or ["unknown error"]
        raise StepFailedError(
            f"Step {failed[0]!r} of pipeline {pipeline.name!r} failed ({reason[0]}); run "
            f"'yard runs show {runner.run_id}' for its log.",
            run_id=runner.run_id,
            steps=failed,
        )
    return result


def build_pipeline(target: Pipeline | PipelineDef, params: Mapping[str, Any] | None) -> Pipeline:
    if isinstance(target, PipelineDef):
        return target.build(params)
    if params:
        raise PipelineDefinitionError(
            f"Pipeline {target.name!r} was built already; parameters apply to a @pipeline "
            "function (pass that, or build the Pipeline with the values)."
        )
    return target


class _Runner:
    def __init__(
        self,
        plan: Plan,
        registry: Registry,
        executor: Executor,
        emit: Callable[[PipelineEvent], None],
        run_id: str | None = None,
    ) -> None:
        self.plan = plan
        self.pipeline = plan.pipeline
        self.registry = registry
        self.executor = executor
        self.emit = emit
        self.run_id = run_id or new_run_id()
        self.recorder = RunRecorder(registry.db, self.run_id)
        self.status: dict[str, str] = {n.name: "pending" for n in self.pipeline.nodes}
        self.outputs: dict[str, dict[str, ArtifactRecord]] = {}
        self.metrics: dict[str, float] = {}
        self.mirror_specs: tuple[MirrorSpec, ...] = ()
        self.mirror_defaults: MirrorDefaults | None = None
        self.mirrors = RunMirrors(self.run_id)

    def mirror_to(self, specs: tuple[MirrorSpec, ...], defaults: MirrorDefaults) -> None:
        self.mirror_specs, self.mirror_defaults = specs, defaults

    def execute(self, *, no_cache: bool, forced: set[str]) -> None:
        tags = {
            "modelyard.pipeline": self.pipeline.name,
            "modelyard.executor": self.executor.name,
        }
        if self.pipeline.source is not None:
            tags["modelyard.source"] = str(self.pipeline.source)
        self._create(tags)
        self.emit(PipelineEvent(self.run_id, None, "running"))
        running: dict[Future[StepResult], str] = {}
        try:
            while True:
                for node in self.pipeline.nodes:
                    if self.status[node.name] == "pending":
                        self._advance(node, running, no_cache=no_cache, forced=forced)
                if not running:
                    break
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    self._finished(running.pop(future), future)
        except BaseException:
            self._abandon(running)
            raise
        failed = any(s == "failed" for s in self.status.values())
        self.recorder.finish("failed" if failed else "finished", self.metrics)
        self._end_mirrors("failed" if failed else "finished")
        self.emit(PipelineEvent(self.run_id, None, "failed" if failed else "finished"))

    def _create(self, tags: dict[str, str]) -> None:
        """Open the mirrors (a mirror that cannot start refuses the run before anything is
        recorded), record the run and its steps, and start the mirrored runs."""
        from modelyard.integrations.runs import end_quietly, link_tags_of, open_mirrors

        opened: tuple[OpenedMirror, ...] = ()
        if self.mirror_specs and self.mirror_defaults is not None:
            opened = open_mirrors(
                self.mirror_specs, self.pipeline.name, defaults=self.mirror_defaults
            )
        try:
            params = self.recorder.create(
                self.pipeline, user=self.registry.identity, tags={**tags, **link_tags_of(opened)}
            )
        except BaseException:
            end_quietly(opened)
            raise
        self.mirrors = RunMirrors(self.run_id, opened)
        self.recorder.add_tags(self.mirrors.start(params=params, tags=tags))

    def _end_mirrors(self, status: Literal["finished", "failed"]) -> None:
        self.recorder.add_tags(self.mirrors.send(lambda mirror: mirror.end(status)))

    def _advance(
        self,
        node: Node,
        running: dict[Future[StepResult], str],
        *,
        no_cache: bool,
        forced: set[str],
    ) -> None:
        upstream = [self.status[u] for u in self.pipeline.upstream[node.name]]
        if any(s in ("failed", "skipped", "cancelled") for s in upstream):
            self._set(node.name, "skipped", note="an upstream step failed")
            return
        if not all(s in records.DONE for s in upstream):
            return
        inputs = {
            arg: self.outputs[ref.node][ref.output]
            for arg, ref in self.pipeline.refs[node.name].items()
        }
        parts = cache.key_parts(
            code=self.plan.code[node.step.function_id],
            params=self.plan.params[node.name],
            inputs={arg: a.sha256 for arg, a in inputs.items()},
            files=self.plan.files[node.name],
            allow_pickle=node.step.allow_pickle,
            trusted_types=node.step.trusted_types,
        )
        key = cache.cache_key(parts)
        input_ids = {arg: a.id for arg, a in inputs.items()}
        reason = self._why_run(node, key, parts, input_ids, no_cache=no_cache, forced=forced)
        if reason is None:
            return  # a cache hit, recorded
        self.recorder.running(node.name, key=key, parts=parts, note=reason, inputs=input_ids)
        self._set(node.name, "running", record=False, note=reason)
        task = StepTask(
            run_id=self.run_id,
            pipeline=self.pipeline.name,
            step=node.name,
            locator=self.plan.locators[node.name],
            params=self.plan.params[node.name],
            inputs={
                arg: InputArtifact(
                    a.sha256, a.kind, a.format, a.meta, f"output {a.output!r} of step {a.step!r}"
                )
                for arg, a in inputs.items()
            },
            artifact_root=self.registry.artifacts.root,
            database_url=self.registry.settings.resolved_database_url,
            identity=self.registry.identity,
            trusted_types=tuple(self.registry.settings.trusted_types),
        )
        running[self.executor.submit(task, node.step)] = node.name

    def _why_run(
        self,
        node: Node,
        key: str,
        parts: dict[str, Any],
        inputs: dict[str, str],
        *,
        no_cache: bool,
        forced: set[str],
    ) -> str | None:
        """``None`` after recording a cache hit, else why the step runs."""
        if not node.step.cache:
            return "not cached: @step(cache=False)"
        if no_cache:
            return "not cached: --no-cache"
        if node.name in forced:
            return "forced"
        with self.registry.db.read() as conn:
            candidates = records.cache_candidates(conn, key)
            ids = {a for c in candidates for a in c.outputs.values()}
            artifacts = records.fetch_artifacts(conn, ids)
        problems = []
        for candidate in candidates:
            problem = self._verify(candidate.outputs, artifacts)
            if problem is None:
                self._hit(node, candidate, artifacts, key=key, parts=parts, inputs=inputs)
                return None
            problems.append(f"run {candidate.run_id}: {problem}")
        if problems:
            return "cache miss: " + "; ".join(problems)
        with self.registry.db.read() as conn:
            before = records.last_key_parts(
                conn, pipeline=self.pipeline.name, step=node.name, before=self.run_id
            )
        return "cache miss: " + cache.explain_miss(before, parts)

    def _verify(self, outputs: dict[str, str], artifacts: dict[str, ArtifactRecord]) -> str | None:
        for name, artifact_id in outputs.items():
            artifact = artifacts.get(artifact_id)
            if artifact is None:
                return f"output {name!r} has no artifact record"
            try:
                self.registry.artifacts.get(artifact.sha256, label=f"output {name!r}")
            except IntegrityError as exc:
                return "missing" if isinstance(exc.__cause__, FileNotFoundError) else "altered"
        return None

    def _hit(
        self,
        node: Node,
        candidate: Row[Any],
        artifacts: dict[str, ArtifactRecord],
        *,
        key: str,
        parts: dict[str, Any],
        inputs: dict[str, str],
    ) -> None:
        self.recorder.cached(
            node.name,
            key=key,
            parts=parts,
            inputs=inputs,
            source_run=candidate.run_id,
            outputs=dict(candidate.outputs),
            metrics=dict(candidate.metrics),
        )
        self.outputs[node.name] = {n: artifacts[a] for n, a in candidate.outputs.items()}
        self._add_metrics(node.name, candidate.metrics)
        self.status[node.name] = "cached"
        self.emit(PipelineEvent(self.run_id, node.name, "cached", 0.0, candidate.run_id))

    def _finished(self, name: str, future: Future[StepResult]) -> None:
        try:
            result = future.result()
        except Exception as exc:  # the worker itself died (a crash, Ray lost the node): recorded
            now = datetime.now(UTC)
            text = f"The worker running step {name!r} died: {type(exc).__name__}: {exc}"
            result = StepResult(False, {}, {}, text, text, text, now, now, 0.0)
        if result.ok:
            self.outputs[name] = self.recorder.succeeded(name, result)
            self._add_metrics(name, result.metrics)
            self.status[name] = "succeeded"
        else:
            self.recorder.failed(name, result)
            self.status[name] = "failed"
        self.emit(
            PipelineEvent(
                self.run_id, name, self.status[name], result.duration_s, note=result.summary
            )
        )

    def _add_metrics(self, step: str, metrics: Mapping[str, float]) -> None:
        named = {f"{step}.{k}": v for k, v in metrics.items()}
        self.metrics.update(named)
        if named:
            self.recorder.add_tags(self.mirrors.send(lambda mirror: mirror.log_metrics(named)))

    def _set(self, name: str, status: str, *, record: bool = True, note: str | None = None) -> None:
        if record:
            self.recorder.mark([name], status, note or "")
        self.status[name] = status
        self.emit(PipelineEvent(self.run_id, name, status, note=note))

    def _abandon(self, running: dict[Future[StepResult], str]) -> None:
        """After an interruption: cancel what runs, record the run as failed."""
        for future in running:
            future.cancel()
        try:
            started = [n for n, s in self.status.items() if s == "running"]
            self.recorder.mark(started, "cancelled", "the run was interrupted")
            pending = [n for n, s in self.status.items() if s == "pending"]
            self.recorder.mark(pending, "skipped", "the run was interrupted")
            self.recorder.finish("failed", self.metrics)
            self._end_mirrors("failed")
        except Exception:  # the interruption is what the caller needs to see
            logger.warning("could not record run %s as interrupted", self.run_id, exc_info=True)
