"""Finding a pipeline in a Python file: ``pipeline.py`` or ``pipeline.py:NAME``.

The file is imported as a module by its path (its folder first on ``sys.path``, as ``python
pipeline.py`` would have it); its ``@pipeline`` functions and ``Pipeline`` objects are the
candidates. ``NAME`` is the attribute's name or the pipeline's name; without it the file must
hold exactly one pipeline.
"""

from __future__ import annotations

import sys
from pathlib import Path

from modelyard.errors import ModelyardError, PipelineDefinitionError
from modelyard.pipelines.graph import Pipeline
from modelyard.pipelines.tracing import PipelineDef
from modelyard.pipelines.worker import load_module_from_path

__all__ = ["load_pipeline", "split_target"]


def split_target(target: str) -> tuple[Path, str | None]:
    """``"dir/p.py:train"`` -> ``(Path("dir/p.py"), "train")``."""
    path, sep, name = target.rpartition(":")
    if sep and path.endswith(".py") and name:
        return Path(path), name
    return Path(target), None


def load_pipeline(target: str) -> PipelineDef | Pipeline:
    path, name = split_target(target)
    if path.suffix != ".py":
        raise PipelineDefinitionError(
            f"{str(path)!r} is not a Python file; give the pipeline as FILE.py or FILE.py:NAME."
        )
    if not path.is_file():
        raise PipelineDefinitionError(f"Pipeline file {str(path)!r} does not exist.")
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        module = load_module_from_path(path.resolve())
    except ModelyardError:
        raise
    except Exception as exc:
        raise PipelineDefinitionError(
            f"Importing pipeline file {str(path)!r} failed ({type(exc).__name__}: {exc}); run "
            f"'python {path}' to see the traceback."
        ) from exc
    found: dict[str, PipelineDef | Pipeline] = {}
    for attr, value in vars(module).items():
        if isinstance(value, PipelineDef | Pipeline) and all(
            v is not value for v in found.values()
        ):
            found[attr] = value
    if not found:
        raise PipelineDefinitionError(
            f"{str(path)!r} defines no pipeline; decorate a function with @pipeline "
            "(from modelyard.pipelines import pipeline)."
        )
    if name is None:
        if len(found) > 1:
            choices = ", ".join(f"{path}:{attr}" for attr in found)
            raise PipelineDefinitionError(
                f"{str(path)!r} defines {len(found)} pipelines; choose one: {choices}."
            )
        return next(iter(found.values()))
    for attr, value in found.items():
        if name in (attr, value.name):
            return value
    raise PipelineDefinitionError(
        f"{str(path)!r} has no pipeline {name!r}; it has: {', '.join(found)}."
    )
