"""Everything a run needs that can be computed, and refused, before anything is written: each
step's parameters (input files made absolute and hashed), its ``check`` hook, its code fingerprint
and where workers import it from."""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import PipelineDefinitionError
from modelyard.pipelines import cache
from modelyard.pipelines.graph import Node, Pipeline
from modelyard.pipelines.steps import Step
from modelyard.pipelines.worker import PATH_MODULE_PREFIX, StepLocator, module_name_for

if TYPE_CHECKING:
    from modelyard.pipelines.executors import Executor
    from modelyard.registry import Registry

__all__ = ["Plan", "importable"]


@dataclass
class Plan:
    """Everything computed before the run is recorded."""

    pipeline: Pipeline
    code: dict[str, cache.CodeFingerprint]
    files: dict[str, dict[str, str]]
    params: dict[str, dict[str, Any]]
    locators: dict[str, StepLocator]

    @classmethod
    def prepare(
        cls,
        pipeline: Pipeline,
        registry: Registry,
        executor: Executor,
        package_versions: cache.PackageVersionsFn | None,
    ) -> Plan:
        source = pipeline.source or _first_source(pipeline)
        root = cache.find_project_root(source) if source else Path.cwd()
        hasher = cache.CodeHasher(root, package_versions=package_versions)
        code: dict[str, cache.CodeFingerprint] = {}
        files: dict[str, dict[str, str]] = {}
        params: dict[str, dict[str, Any]] = {}
        locators: dict[str, StepLocator] = {}
        for node in pipeline.nodes:
            params[node.name], files[node.name] = _input_files(node, pipeline.params_of[node.name])
            if node.step.check is not None:
                node.step.check(params[node.name])
            if node.step.function_id not in code:
                code[node.step.function_id] = hasher.fingerprint(node.step.fn)
            locators[node.name] = _locator(node, root, in_process=executor.in_process)
        with registry.db.read():
            pass  # an unreachable database fails here, before anything is written
        return cls(pipeline, code, files, params, locators)


def _first_source(pipeline: Pipeline) -> Path | None:
    try:
        found = inspect.getsourcefile(pipeline.nodes[0].step.fn)
    except TypeError:
        return None
    return Path(found) if found else None


def _input_files(node: Node, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The step's parameters with input files made absolute, and the files' content hashes."""
    params = dict(params)
    hashes = {}
    for arg in node.step.input_files:
        if arg not in params:
            continue  # produced by another step: checked when that step has run
        value = params[arg]
        if isinstance(value, str) and value.startswith(("delta://", "dvc://")):
            hashes[arg] = _source_key(value, params.get("version"))
            continue
        path = Path(str(value)).expanduser().resolve()
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise PipelineDefinitionError(
                f"Input file {str(value)!r} of step {node.name!r} {what} (looked for {path}); "
                "check the path or pass another with --param."
            )
        hashes[arg] = _file_sha256(path)
        params[arg] = str(path)
    return params, hashes


def _source_key(uri: str, version: Any) -> str:
    """The cache key of a Delta table or ``dvc://`` file: the table version read (the latest
    now, when no version is given), or the git commit the revision names and the ``.dvc``
    file's content."""
    if uri.startswith("delta://"):
        from modelyard.integrations.delta import table_version

        location, number = table_version(uri, version)
        return hashlib.sha256(f"{location}@{number}".encode()).hexdigest()
    from modelyard.integrations.dvc import revision_key

    return revision_key(uri, version)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def importable(step: Step[Any, Any]) -> bool:
    """Whether a worker process can import the step: defined at module level, in a module that
    is importable or a file that exists (not a notebook cell or an interactive session)."""
    fn = step.fn
    if "<locals>" in fn.__qualname__:
        return False
    if fn.__module__ == "__main__" or fn.__module__.startswith(PATH_MODULE_PREFIX):
        return _source_file(fn) is not None
    return True


def _source_file(fn: Any) -> str | None:
    try:
        file = inspect.getsourcefile(fn)
    except TypeError:
        return None
    return file if file and Path(file).is_file() else None


def _locator(node: Node, root: Path, *, in_process: bool) -> StepLocator:
    fn = node.step.fn
    module, qualname = fn.__module__, fn.__qualname__
    file = _source_file(fn)
    if not in_process and not importable(node.step):
        raise PipelineDefinitionError(
            f"Step {node.name!r} ({qualname}) is defined inside a function or an interactive "
            "session, so worker processes cannot import it; define it at module level in a "
            "file, or run it with LocalExecutor(workers=1)."
        )
    if module == "__main__" and file:
        module = module_name_for(Path(file))
    paths = tuple(dict.fromkeys([str(root), *([str(Path(file).parent)] if file else [])]))
    return StepLocator(module=module, qualname=qualname, file=file, paths=paths)
