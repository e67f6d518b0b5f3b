"""Steps: typed functions whose outputs become artifacts, the unit of caching.

``@step`` wraps a function in a ``Step``. Called inside a ``@pipeline`` body it records a node of
the graph and returns placeholders for its outputs; called anywhere else it is the plain function.

Outputs come from the return annotation:

- no annotation, or any single type: one output called ``output``;
- a ``typing.NamedTuple`` subclass: one output per field, named by the fields (``split.train``);
- ``tuple[A, B]``: outputs ``output_0``, ``output_1`` (``tuple[A, ...]`` is one output);
- ``None``: no output (a step run for its side effect; give it ``cache=False``).
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, Literal, ParamSpec, Protocol, TypeVar, overload

from modelyard.errors import PipelineDefinitionError
from modelyard.pipelines.resources import clean_resources

__all__ = ["OutputSpec", "Step", "step"]

P = ParamSpec("P")
R = TypeVar("R")

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")
"""Step and output names: no dots (``step.output`` names an output)."""


class Tracer(Protocol):
    """What a ``@pipeline`` body's step calls go to while the graph is being built."""

    def call(self, step: Step[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any: ...


TRACER: ContextVar[Tracer | None] = ContextVar("modelyard_pipeline_tracer", default=None)


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """The outputs a step declares: their names, their types (``None``: unknown) and how the
    return value holds them (``single``, ``tuple``, ``namedtuple`` or ``none``)."""

    names: tuple[str, ...]
    types: tuple[Any, ...]
    shape: Literal["single", "tuple", "namedtuple", "none"]
    namedtuple: type | None = None


class Step(Generic[P, R]):
    """A function usable as a pipeline step; see ``step``."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        cache: bool = True,
        allow_pickle: bool = False,
        trusted_types: Sequence[str] = (),
        input_files: Sequence[str] = (),
        check: Callable[[Mapping[str, Any]], None] | None = None,
        resources: Mapping[str, float] | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.cache = cache
        self.allow_pickle = allow_pickle
        self.trusted_types = tuple(trusted_types)
        self.input_files = tuple(input_files)
        self.check = check
        self.resources = clean_resources(resources, owner=f"Step {self.name!r}")
        self.signature = inspect.signature(fn)
        functools.update_wrapper(self, fn)
        _check_definition(self)

    def __repr__(self) -> str:
        return f"<step {self.name!r} ({self.function_id})>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        tracer = TRACER.get()
        if tracer is not None:
            result: R = tracer.call(self, args, kwargs)
            return result
        return self.fn(*args, **kwargs)

    @property
    def function_id(self) -> str:
        return f"{self.fn.__module__}:{self.fn.__qualname__}"

    @functools.cached_property
    def hints(self) -> dict[str, Any]:
        """The parameters' and the return's resolved annotations (unresolvable ones left out)."""
        return resolve_hints(self.fn)

    @functools.cached_property
    def outputs(self) -> OutputSpec:
        return output_spec(self.fn, self.hints)


@overload
def step(fn: Callable[P, R], /) -> Step[P, R]: ...


@overload
def step(
    *,
    name: str | None = None,
    cache: bool = True,
    allow_pickle: bool = False,
    trusted_types: Sequence[str] = (),
    input_files: Sequence[str] = (),
    check: Callable[[Mapping[str, Any]], None] | None = None,
    resources: Mapping[str, float] | None = None,
) -> Callable[[Callable[P, R]], Step[P, R]]: ...


def step(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    cache: bool = True,
    allow_pickle: bool = False,
    trusted_types: Sequence[str] = (),
    input_files: Sequence[str] = (),
    check: Callable[[Mapping[str, Any]], None] | None = None,
    resources: Mapping[str, float] | None = None,
) -> Step[P, R] | Callable[[Callable[P, R]], Step[P, R]]:
    """Make ``fn`` a pipeline step: ``@step`` or ``@step(cache=False, ...)``.

    - ``name``: the step's name in pipelines (default: the function's name).
    - ``cache``: reuse a previous run's outputs when the cache key matches (default). Turn it off
      for steps with side effects (registering a model, deploying).
    - ``allow_pickle``: store outputs no safe format holds with cloudpickle (loading them runs
      code: only for your own objects).
    - ``trusted_types``: skops types this step's models may contain beyond the built-in list.
    - ``input_files``: parameters that name local files: they must exist before the run starts,
      their content is part of the cache key, and the step receives their absolute path.
    - ``check``: called with the step's constant parameters before anything runs; raise
      ``PipelineDefinitionError`` to stop the run with a message.
    - ``resources``: what the step needs, ``{"cpus": 4}`` (also ``gpus``, ``memory`` in bytes,
      or a custom Ray resource): the Ray executor reserves them for the step's task and refuses
      a request its cluster cannot meet; the local executor checks their form and ignores them
      (``modelyard.pipelines.resources``).
    """

    def wrap(func: Callable[P, R]) -> Step[P, R]:
        return Step(
            func,
            name=name,
            cache=cache,
            allow_pickle=allow_pickle,
            trusted_types=trusted_types,
            input_files=input_files,
            check=check,
            resources=resources,
        )

    return wrap(fn) if fn is not None else wrap


def resolve_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """``typing.get_type_hints`` with extras, or, when one annotation cannot be resolved (a name
    imported under ``TYPE_CHECKING``), each annotation resolved on its own."""
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:  # a NameError, or anything evaluating an annotation raises
        pass
    out: dict[str, Any] = {}
    namespace = getattr(fn, "__globals__", {})
    for key, value in getattr(fn, "__annotations__", {}).items():
        if not isinstance(value, str):
            out[key] = value
            continue
        try:
            out[key] = eval(value, namespace)  # the function's own annotation, in its module
        except Exception:
            continue
    return out


def output_spec(fn: Callable[..., Any], hints: Mapping[str, Any]) -> OutputSpec:
    if "return" in hints:
        return _spec_from_type(_strip_annotated(hints["return"]))
    raw = getattr(fn, "__annotations__", {}).get("return")
    if isinstance(raw, str):  # unresolvable: count a tuple's elements from its text
        return _spec_from_text(raw)
    return OutputSpec(names=("output",), types=(None,), shape="single")


def _spec_from_type(ret: Any) -> OutputSpec:
    if ret is None or ret is type(None):
        return OutputSpec(names=(), types=(), shape="none")
    if isinstance(ret, type) and issubclass(ret, tuple) and hasattr(ret, "_fields"):
        fields = tuple(ret._fields)
        hints = resolve_hints(ret)
        types = tuple(_strip_annotated(hints[f]) if f in hints else None for f in fields)
        return OutputSpec(names=fields, types=types, shape="namedtuple", namedtuple=ret)
    if typing.get_origin(ret) is tuple:
        args = typing.get_args(ret)
        if args and Ellipsis not in args and args != ((),):
            names = tuple(f"output_{i}" for i in range(len(args)))
            types = tuple(_strip_annotated(a) for a in args)
            return OutputSpec(names=names, types=types, shape="tuple")
    return OutputSpec(names=("output",), types=(ret,), shape="single")


def _spec_from_text(text: str) -> OutputSpec:
    if text.strip() == "None":
        return OutputSpec(names=(), types=(), shape="none")
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        node = None
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and node.value.id in ("tuple", "Tuple")
        and isinstance(node.slice, ast.Tuple)
        and not any(isinstance(e, ast.Constant) and e.value is Ellipsis for e in node.slice.elts)
    ):
        count = len(node.slice.elts)
        return OutputSpec(
            names=tuple(f"output_{i}" for i in range(count)), types=(None,) * count, shape="tuple"
        )
    return OutputSpec(names=("output",), types=(None,), shape="single")


def _strip_annotated(value: Any) -> Any:
    if typing.get_origin(value) is typing.Annotated:
        return typing.get_args(value)[0]
    return value


def _check_definition(s: Step[Any, Any]) -> None:
    if not NAME_PATTERN.match(s.name):
        raise PipelineDefinitionError(
            f"Step name {s.name!r} is not valid; use letters, digits, '_' and '-' (no dots), "
            "starting with a letter or '_'."
        )
    for param in s.signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise PipelineDefinitionError(
                f"Step {s.name!r} takes *{param.name}; steps take named parameters only, so that "
                "each input and parameter can be recorded and cached."
            )
    unknown = [f for f in s.input_files if f not in s.signature.parameters]
    if unknown:
        raise PipelineDefinitionError(
            f"Step {s.name!r} lists input_files {unknown} that are not among its parameters "
            f"({', '.join(s.signature.parameters) or 'none'})."
        )
