"""Running one step: in the pipeline's process, a worker process or a Ray task.

A ``StepTask`` is plain data: where to import the step from, its parameters, its inputs as
artifact addresses, and the artifact root. The worker loads the inputs from the artifact store
(each checked against its sha256), calls the function with output captured, stores every output
in the artifact store and returns a ``StepResult`` (addresses, metrics, log, traceback). Workers
never touch the metadata database: the pipeline's process records results.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from modelyard.errors import IntegrityError, PipelineError
from modelyard.pipelines._capture import BoundedText, capture
from modelyard.pipelines.context import StepContext, activate, deactivate
from modelyard.pipelines.steps import Step

if TYPE_CHECKING:
    from modelyard.pipelines.steps import OutputSpec
    from modelyard.store.artifacts import ArtifactStore

__all__ = ["InputArtifact", "StepLocator", "StepResult", "StepTask", "StoredOutput", "execute"]

PATH_MODULE_PREFIX = "_yard_pipeline_"
"""Modules loaded from a file path (the pipeline file, a script's ``__main__``) are named so."""


@dataclass(frozen=True, slots=True)
class StepLocator:
    """Where a worker finds the step function: ``module`` and ``qualname``; ``file`` for a
    module loaded from its path; ``paths`` go on ``sys.path`` first."""

    module: str
    qualname: str
    file: str | None
    paths: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InputArtifact:
    sha256: str
    kind: str
    format: str
    meta: dict[str, Any]
    label: str


@dataclass(frozen=True, slots=True)
class StepTask:
    run_id: str
    pipeline: str
    step: str
    locator: StepLocator
    params: dict[str, Any]
    inputs: dict[str, InputArtifact]
    artifact_root: str
    database_url: str | None = None
    identity: str | None = None
    trusted_types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StoredOutput:
    sha256: str
    kind: str
    format: str
    python_type: str
    size_bytes: int
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StepResult:
    ok: bool
    outputs: dict[str, StoredOutput]
    metrics: dict[str, float]
    log: str
    error: str | None
    summary: str | None
    started_at: datetime
    ended_at: datetime
    duration_s: float


def execute_task(task: StepTask) -> StepResult:
    """The entry point of worker processes and Ray tasks."""
    return execute(task, None)


def execute(task: StepTask, step: Step[Any, Any] | None) -> StepResult:
    """Run ``task``'s step (``step`` when the caller has it, else imported by its locator)."""
    started, clock = datetime.now(UTC), time.perf_counter()
    sink = BoundedText()
    context = StepContext(
        run_id=task.run_id,
        pipeline=task.pipeline,
        step=task.step,
        database_url=task.database_url,
        artifact_root=task.artifact_root,
        identity=task.identity,
    )
    outputs: dict[str, StoredOutput] = {}
    error = summary = None
    try:
        resolved = step if step is not None else resolve_step(task.locator)
        arguments = {**_paths(resolved, task.params), **_load_inputs(task, resolved)}
        token = activate(context)
        try:
            with capture(sink):
                value = resolved.fn(**arguments)
        finally:
            deactivate(token)
        outputs = _store_outputs(task, resolved, value)
    except Exception as exc:  # the step's own failure, recorded with its traceback
        error = _traceback(exc)
        summary = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        sink.write(("\n" if sink.getvalue() else "") + error)
    ended = datetime.now(UTC)
    return StepResult(
        ok=error is None,
        outputs=outputs if error is None else {},
        metrics=dict(context.metrics),
        log=sink.getvalue(),
        error=error,
        summary=summary,
        started_at=started,
        ended_at=ended,
        duration_s=time.perf_counter() - clock,
    )


def resolve_step(locator: StepLocator) -> Step[Any, Any]:
    for path in reversed(locator.paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    module = sys.modules.get(locator.module)
    if module is None:
        if locator.module.startswith(PATH_MODULE_PREFIX) and locator.file:
            module = load_module_from_path(Path(locator.file), locator.module)
        else:
            module = importlib.import_module(locator.module)
    obj: Any = module
    for part in locator.qualname.split("."):
        obj = getattr(obj, part)
    if isinstance(obj, Step):
        return obj
    for value in vars(module).values():  # a Step named apart from its function
        if isinstance(value, Step) and value.fn is obj:
            return value
    return Step(obj)


def module_name_for(path: Path) -> str:
    """The module name a file loaded by path gets: stable for one path, unique across paths."""
    resolved = path.resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:10]
    stem = "".join(c if c.isalnum() else "_" for c in resolved.stem)
    return f"{PATH_MODULE_PREFIX}{stem}_{digest}"


def load_module_from_path(path: Path, name: str | None = None) -> Any:
    """Import the Python file at ``path`` as module ``name`` (registered in ``sys.modules``).

    The file is compiled from its source every time. The import system would trust a cached
    ``.pyc`` whose recorded mtime (whole seconds) and size match, so an edit that keeps the size
    within the same second (``FACTOR = 3`` to ``FACTOR = 4``) would run, and hash, the old code.
    """
    name = name or module_name_for(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PipelineError(f"Cannot import {str(path)!r} as a Python module.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        code = compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
        exec(code, module.__dict__)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _paths(step: Step[Any, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Parameters are JSON; those annotated as paths are given as ``pathlib`` paths again."""
    out = dict(params)
    for name, value in params.items():
        hint = step.hints.get(name)
        if isinstance(value, str) and isinstance(hint, type) and issubclass(hint, PurePath):
            out[name] = hint(value)
    return out


def _load_inputs(task: StepTask, step: Step[Any, Any]) -> dict[str, Any]:
    from modelyard.pipelines.artifacts import decode_value
    from modelyard.store.artifacts import ArtifactStore

    if not task.inputs:
        return {}
    store = ArtifactStore(task.artifact_root)
    values = {}
    for arg, ref in task.inputs.items():
        data = store.get(ref.sha256, label=ref.label)
        values[arg] = decode_value(
            data,
            kind=ref.kind,
            format=ref.format,
            meta=ref.meta,
            label=ref.label,
            trusted_types=(*task.trusted_types, *step.trusted_types),
        )
    return values


def _store_outputs(task: StepTask, step: Step[Any, Any], value: Any) -> dict[str, StoredOutput]:
    from modelyard.pipelines.artifacts import encode_value
    from modelyard.store.artifacts import ArtifactStore

    spec = step.outputs
    values = _split_outputs(spec, value, task.step)
    store = ArtifactStore(task.artifact_root)
    stored = {}
    for name, item in values.items():
        encoded = encode_value(
            item,
            label=f"output {name!r} of step {task.step!r}",
            allow_pickle=step.allow_pickle,
            trusted_types=(*task.trusted_types, *step.trusted_types),
        )
        digest = _put(store, encoded.data, label=f"output {name!r} of step {task.step!r}")
        stored[name] = StoredOutput(
            sha256=digest,
            kind=encoded.kind,
            format=encoded.format,
            python_type=encoded.python_type,
            size_bytes=len(encoded.data),
            meta=encoded.meta,
        )
    return stored


def _put(store: ArtifactStore, data: bytes, *, label: str) -> str:
    """Store ``data``; a blob already there under its address is checked, and replaced when it
    was altered (the store keeps existing blobs as they are)."""
    digest, new = store.put(data)
    if not new:
        try:
            store.get(digest, label=label)
        except IntegrityError:
            store.delete(digest)
            store.put(data)
    return digest


def _split_outputs(spec: OutputSpec, value: Any, step: str) -> dict[str, Any]:
    if spec.shape == "none":
        if value is not None:
            raise PipelineError(
                f"Step {step!r} is declared to return None but returned a "
                f"{type(value).__qualname__}; fix its return annotation."
            )
        return {}
    if spec.shape == "single":
        return {spec.names[0]: value}
    if not isinstance(value, tuple) or len(value) != len(spec.names):
        got = f"{len(value)} values" if isinstance(value, tuple) else f"a {type(value).__name__}"
        raise PipelineError(
            f"Step {step!r} declares {len(spec.names)} outputs ({', '.join(spec.names)}) but "
            f"returned {got}."
        )
    return dict(zip(spec.names, value, strict=True))


def _traceback(exc: BaseException) -> str:
    """The traceback from the step's own frames on (the worker's frames left out)."""
    tb = exc.__traceback__
    here = __file__
    while tb is not None and tb.tb_frame.f_code.co_filename == here and tb.tb_next is not None:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))
