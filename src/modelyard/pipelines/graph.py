"""The pipeline graph: nodes (a step with its inputs and parameters), validated as a DAG.

A ``Pipeline`` comes from tracing a ``@pipeline`` function, or is built explicitly::

    Pipeline("churn", steps=[
        Node(load_table, params={"path": "data.csv"}),
        Node(split, inputs={"table": "load_table"}, params={"target": "churned"}),
        Node(train, inputs={"train": "split.train"}),
    ])

An input names another node's output as ``"node.output"``, or ``"node"`` when it has one output.
Construction checks everything that can be checked without running: unknown or missing arguments,
references to missing steps or outputs, cycles, declared types that cannot match, and parameters
that are not JSON values. Errors are ``PipelineDefinitionError`` naming the steps involved.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.errors import PipelineDefinitionError
from modelyard.pipelines.params import jsonable
from modelyard.pipelines.steps import NAME_PATTERN, Step

__all__ = ["Node", "Pipeline"]


@dataclass(frozen=True, slots=True)
class Node:
    """A step in a pipeline: ``inputs`` maps arguments to ``"node.output"`` references,
    ``params`` maps arguments to constant JSON values; other arguments take their defaults."""

    step: Step[Any, Any]
    name: str = ""
    inputs: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.step.name)


@dataclass(frozen=True, slots=True)
class Ref:
    """A resolved input: output ``output`` of node ``node``."""

    node: str
    output: str


class Pipeline:
    """A validated DAG of nodes, in a topological order (ties kept in the order given)."""

    def __init__(
        self,
        name: str,
        steps: Sequence[Node | Step[Any, Any]],
        *,
        params: Mapping[str, Any] | None = None,
        source: str | Path | None = None,
    ) -> None:
        if not NAME_PATTERN.match(name):
            raise PipelineDefinitionError(
                f"Pipeline name {name!r} is not valid; use letters, digits, '_' and '-'."
            )
        self.name = name
        self.params = dict(params or {})
        self.source = Path(source) if source is not None else None
        given = [s if isinstance(s, Node) else Node(s) for s in steps]
        if not given:
            raise PipelineDefinitionError(f"Pipeline {name!r} has no steps; add at least one.")
        by_name: dict[str, Node] = {}
        for node in given:
            if not NAME_PATTERN.match(node.name):
                raise PipelineDefinitionError(
                    f"Step name {node.name!r} in pipeline {name!r} is not valid; use letters, "
                    "digits, '_' and '-' (no dots)."
                )
            if node.name in by_name:
                raise PipelineDefinitionError(
                    f"Pipeline {name!r} has two steps named {node.name!r}; give one of them "
                    "another name (Node(..., name=...))."
                )
            by_name[node.name] = node
        self.refs = {n.name: _resolve_inputs(n, by_name, name) for n in given}
        self.params_of = {n.name: _check_arguments(n, self.refs[n.name]) for n in given}
        self.upstream = {
            n.name: tuple(dict.fromkeys(r.node for r in self.refs[n.name].values())) for n in given
        }
        self.nodes = _topological(given, self.upstream, name)
        self._by_name = {n.name: n for n in self.nodes}
        check_types(self)

    def __repr__(self) -> str:
        return f"<Pipeline {self.name!r}: {' -> '.join(n.name for n in self.nodes)}>"

    def node(self, name: str) -> Node:
        try:
            return self._by_name[name]
        except KeyError:
            raise PipelineDefinitionError(
                f"Pipeline {self.name!r} has no step {name!r}; its steps are: "
                f"{', '.join(self._by_name)}."
            ) from None

    def downstream(self, name: str) -> set[str]:
        """Every step that depends on ``name``, directly or not."""
        out: set[str] = set()
        frontier = [name]
        while frontier:
            current = frontier.pop()
            for node in self.nodes:
                if current in self.upstream[node.name] and node.name not in out:
                    out.add(node.name)
                    frontier.append(node.name)
        return out

    @property
    def width(self) -> int:
        """How many steps can run at once: the widest level of the graph."""
        level: dict[str, int] = {}
        for node in self.nodes:
            level[node.name] = 1 + max((level[u] for u in self.upstream[node.name]), default=-1)
        counts: dict[int, int] = {}
        for value in level.values():
            counts[value] = counts.get(value, 0) + 1
        return max(counts.values())


def _resolve_inputs(node: Node, by_name: Mapping[str, Node], pipeline: str) -> dict[str, Ref]:
    refs = {}
    for arg, text in node.inputs.items():
        target, _, output = str(text).partition(".")
        upstream = by_name.get(target)
        if upstream is None:
            raise PipelineDefinitionError(
                f"Step {node.name!r} of pipeline {pipeline!r} takes {arg!r} from {text!r}, but no "
                f"step is named {target!r}; its steps are: {', '.join(by_name)}."
            )
        names = upstream.step.outputs.names
        if not output:
            if len(names) != 1:
                choices = ", ".join(f"'{target}.{n}'" for n in names) or "none"
                raise PipelineDefinitionError(
                    f"Step {node.name!r} takes {arg!r} from {target!r}, which has "
                    f"{len(names)} outputs; name one: {choices}."
                )
            output = names[0]
        elif output not in names:
            raise PipelineDefinitionError(
                f"Step {node.name!r} takes {arg!r} from {text!r}, but step {target!r} has no "
                f"output {output!r}; its outputs are: {', '.join(names) or 'none'}."
            )
        refs[arg] = Ref(target, output)
    return refs


def _check_arguments(node: Node, refs: Mapping[str, Ref]) -> dict[str, Any]:
    """The node's parameters with defaults filled in, as JSON values; checks every argument."""
    parameters = node.step.signature.parameters
    known = ", ".join(parameters) or "none"
    for arg in [*node.inputs, *node.params]:
        if arg not in parameters:
            raise PipelineDefinitionError(
                f"Step {node.name!r} has no argument {arg!r}; its arguments are: {known}."
            )
    both = set(node.inputs) & set(node.params)
    if both:
        raise PipelineDefinitionError(
            f"Step {node.name!r} gets {sorted(both)} both as an input and as a parameter."
        )
    out: dict[str, Any] = {}
    for arg, param in parameters.items():
        if arg in refs:
            continue
        if arg in node.params:
            value = node.params[arg]
        elif param.default is not inspect.Parameter.empty:
            value = param.default
        else:
            raise PipelineDefinitionError(
                f"Step {node.name!r} needs argument {arg!r}: it has no default and is given "
                "neither an input nor a parameter."
            )
        out[arg] = jsonable(value, where=f"Argument {arg!r} of step {node.name!r}")
    return out


def check_types(pipeline: Pipeline) -> None:
    """Refuse an input whose declared type cannot be what the upstream output declares."""
    for node in pipeline.nodes:
        hints = node.step.hints
        for arg, ref in pipeline.refs[node.name].items():
            wanted = _plain_class(hints.get(arg))
            upstream = pipeline.node(ref.node).step.outputs
            given = _plain_class(upstream.types[upstream.names.index(ref.output)])
            if wanted is None or given is None or issubclass(given, wanted):
                continue
            raise PipelineDefinitionError(
                f"Step {node.name!r} declares {arg!r} as {wanted.__qualname__}, but it takes "
                f"'{ref.node}.{ref.output}', declared {given.__qualname__}; fix one annotation."
            )


def _plain_class(annotation: Any) -> type | None:
    """The class an annotation names, for a compatibility check (``None``: anything goes)."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # X | None: check X
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _plain_class(members[0]) if len(members) == 1 else None
    origin = typing.get_origin(annotation)
    candidate = origin if origin is not None else annotation
    if not isinstance(candidate, type) or candidate in (object, typing.Any):
        return None
    return candidate


def _topological(
    nodes: list[Node], upstream: Mapping[str, tuple[str, ...]], pipeline: str
) -> tuple[Node, ...]:
    done: set[str] = set()
    order: list[Node] = []
    remaining = list(nodes)
    while remaining:
        ready = [n for n in remaining if all(u in done for u in upstream[n.name])]
        if not ready:
            cycle = _find_cycle([n.name for n in remaining], upstream)
            raise PipelineDefinitionError(
                f"The steps of pipeline {pipeline!r} form a cycle: {' -> '.join(cycle)}; a step "
                "cannot depend on its own output."
            )
        for node in ready:
            order.append(node)
            done.add(node.name)
        remaining = [n for n in remaining if n.name not in done]
    return tuple(order)


def _find_cycle(names: list[str], upstream: Mapping[str, tuple[str, ...]]) -> list[str]:
    """A cycle among ``names`` (each of which has an unfinished upstream), closed on itself."""
    path: list[str] = []
    current = names[0]
    pending = set(names)
    while current not in path:
        path.append(current)
        current = next(u for u in upstream[current] if u in pending)
    cycle = [*path[path.index(current) :], current]
    cycle.reverse()  # upstream first: a -> b means b takes a's output
    return cycle
