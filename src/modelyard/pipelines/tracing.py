"""``@pipeline``: a function whose body calls steps, traced once into a ``Pipeline``.

The pipeline's parameters are the function's arguments (with their defaults). ``build(params)``
converts them (strings by annotation: see ``params``), calls the body with the values, and records
each step call as a node; inside the body a step call returns placeholders (``OutputHandle``) for
its outputs, which are passed on to other steps. Because the body runs with the real parameter
values, it may branch on them (``if model == "hgb": ...``), but not on step outputs.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, overload

from modelyard.errors import ModelyardError, PipelineDefinitionError
from modelyard.pipelines.graph import Node, Pipeline
from modelyard.pipelines.params import convert_text, jsonable
from modelyard.pipelines.steps import NAME_PATTERN, TRACER, Step, resolve_hints

if TYPE_CHECKING:
    from modelyard.pipelines.records import PipelineRun

__all__ = ["OutputHandle", "PipelineDef", "pipeline"]


@dataclass(frozen=True, slots=True)
class OutputHandle:
    """A step output while a pipeline is being traced: pass it to another step."""

    node: str
    output: str

    @property
    def ref(self) -> str:
        return f"{self.node}.{self.output}"

    def __bool__(self) -> NoReturn:
        raise PipelineDefinitionError(
            f"The output '{self.ref}' has no value while the pipeline is being built; a pipeline "
            "body can branch on its parameters, not on step outputs (do that inside a step)."
        )

    def __iter__(self) -> NoReturn:
        raise PipelineDefinitionError(
            f"Step {self.node!r} has one output and cannot be unpacked; declare a NamedTuple "
            "return type to give it several."
        )

    def __getattr__(self, name: str) -> NoReturn:
        if name.startswith("__"):  # protocol lookups (copy, pickle, hasattr) see a plain object
            raise AttributeError(name)
        raise PipelineDefinitionError(
            f"The output '{self.ref}' is a placeholder while the pipeline is being built; "
            f"'.{name}' is available inside a step that takes it as an input."
        )


class _Trace:
    def __init__(self, pipeline: str) -> None:
        self.pipeline = pipeline
        self.nodes: list[Node] = []
        self._names: dict[str, int] = {}

    def call(self, step: Step[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            bound = step.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise PipelineDefinitionError(
                f"Step {step.name!r} was called with arguments it does not take ({exc}) in "
                f"pipeline {self.pipeline!r}."
            ) from None
        count = self._names.get(step.name, 0) + 1
        self._names[step.name] = count
        name = step.name if count == 1 else f"{step.name}_{count}"
        inputs: dict[str, str] = {}
        params: dict[str, Any] = {}
        for arg, value in bound.arguments.items():
            if isinstance(value, OutputHandle):
                inputs[arg] = value.ref
            else:
                _refuse_nested_handles(value, step.name, arg)
                params[arg] = value
        self.nodes.append(Node(step, name=name, inputs=inputs, params=params))
        spec = step.outputs
        handles = [OutputHandle(name, output) for output in spec.names]
        if spec.shape == "none":
            return None
        if spec.shape == "single":
            return handles[0]
        if spec.namedtuple is not None:
            return spec.namedtuple(*handles)
        return tuple(handles)


def _refuse_nested_handles(value: Any, step: str, arg: str) -> None:
    items: list[Any] = []
    if isinstance(value, list | tuple | set):
        items = list(value)
    elif isinstance(value, Mapping):
        items = list(value.values())
    for item in items:
        if isinstance(item, OutputHandle):
            raise PipelineDefinitionError(
                f"Argument {arg!r} of step {step!r} holds the output '{item.ref}' inside a "
                "container; pass each step output as an argument of its own."
            )
        _refuse_nested_handles(item, step, arg)


class PipelineDef:
    """A ``@pipeline`` function: ``build(params)`` traces it into a ``Pipeline``; calling it
    runs the pipeline with the default registry (``modelyard.pipelines.run`` for options)."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        if not NAME_PATTERN.match(self.name):
            raise PipelineDefinitionError(
                f"Pipeline name {self.name!r} is not valid; use letters, digits, '_' and '-'."
            )
        self.signature = inspect.signature(fn)
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<pipeline {self.name!r}>"

    @property
    def source(self) -> Path | None:
        try:
            path = inspect.getsourcefile(self.fn)
        except TypeError:
            return None
        return Path(path).resolve() if path else None

    @property
    def parameters(self) -> dict[str, Any]:
        """Parameter names and defaults (``inspect.Parameter.empty`` for a required one)."""
        return {name: p.default for name, p in self.signature.parameters.items()}

    def resolve_params(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The parameters with defaults filled in; strings converted by annotation."""
        given = dict(given or {})
        known = self.signature.parameters
        unknown = sorted(set(given) - set(known))
        if unknown:
            listing = ", ".join(known) or "none"
            raise PipelineDefinitionError(
                f"Pipeline {self.name!r} has no parameter {', '.join(map(repr, unknown))}; its "
                f"parameters are: {listing}."
            )
        hints = resolve_hints(self.fn)
        values: dict[str, Any] = {}
        for name, param in known.items():
            if name in given:
                value = given[name]
                if isinstance(value, str):
                    value = convert_text(
                        name,
                        value,
                        hints.get(name),
                        _default(param),
                        owner=f"pipeline {self.name!r}",
                    )
                values[name] = value
            elif param.default is not inspect.Parameter.empty:
                values[name] = param.default
            else:
                raise PipelineDefinitionError(
                    f"Pipeline {self.name!r} needs parameter {name!r} (it has no default); pass "
                    f"--param {name}=VALUE."
                )
        return values

    def build(self, params: Mapping[str, Any] | None = None) -> Pipeline:
        values = self.resolve_params(params)
        trace = _Trace(self.name)
        token = TRACER.set(trace)
        try:
            self.fn(**values)
        except ModelyardError:
            raise
        except Exception as exc:
            raise PipelineDefinitionError(
                f"Building pipeline {self.name!r} failed: its body raised "
                f"{type(exc).__name__}: {exc}."
            ) from exc
        finally:
            TRACER.reset(token)
        recorded = {k: jsonable(v, where=f"Parameter {k!r}") for k, v in values.items()}
        return Pipeline(self.name, trace.nodes, params=recorded, source=self.source)

    def __call__(self, **params: Any) -> PipelineRun:
        from modelyard.pipelines.engine import run

        return run(self, params=params)


def _default(param: inspect.Parameter) -> Any:
    return None if param.default is inspect.Parameter.empty else param.default


@overload
def pipeline(fn: Callable[..., Any], /) -> PipelineDef: ...


@overload
def pipeline(*, name: str | None = None) -> Callable[[Callable[..., Any]], PipelineDef]: ...


def pipeline(
    fn: Callable[..., Any] | None = None, /, *, name: str | None = None
) -> PipelineDef | Callable[[Callable[..., Any]], PipelineDef]:
    """Make ``fn`` a pipeline: ``@pipeline`` or ``@pipeline(name="churn")``."""

    def wrap(func: Callable[..., Any]) -> PipelineDef:
        return PipelineDef(func, name=name)

    return wrap(fn) if fn is not None else wrap
