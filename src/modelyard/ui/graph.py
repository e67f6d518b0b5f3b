"""A pipeline run's steps as an inline SVG graph, laid out in layers by dependency depth.

A step's layer is one more than the deepest of its upstream steps (sources are layer 0); layers
are columns from left to right and a layer's steps are stacked in the order given (the run's
topological order), centred against the tallest layer. Every dependency is one curve from the
upstream step's right side to the downstream step's left side. Nodes are coloured by class
(``ran``, ``cached``, ``failed``, ``skipped``, ``pending``), so the stylesheet owns the colours
and the page needs no inline style.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["GraphNode", "Layout", "dag_svg", "layout"]

NODE_W = 168
NODE_H = 44
GAP_X = 56
GAP_Y = 14
PAD = 8
MAX_LABEL = 22

_STATUS_CLASS = {
    "succeeded": "ran",
    "cached": "cached",
    "failed": "failed",
    "skipped": "skipped",
    "cancelled": "skipped",
}


@dataclass(frozen=True, slots=True)
class GraphNode:
    """A step to draw: its name, the steps it takes inputs from, its status, and a note (shown
    as the node's tooltip: why it ran, or where its cache hit came from)."""

    name: str
    upstream: tuple[str, ...]
    status: str
    note: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Placed:
    node: GraphNode
    layer: int
    row: int
    x: int
    y: int


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    path: str


@dataclass(frozen=True, slots=True)
class Layout:
    nodes: tuple[Placed, ...]
    edges: tuple[Edge, ...]
    width: int
    height: int


def layout(nodes: Sequence[GraphNode]) -> Layout:
    """Place ``nodes`` (in a topological order; an upstream name that is not among them is left
    out) in layers by dependency depth, and route one edge per dependency."""
    layer: dict[str, int] = {}
    for node in nodes:
        known = [layer[u] for u in node.upstream if u in layer]
        layer[node.name] = 1 + max(known, default=-1)
    columns: dict[int, list[GraphNode]] = {}
    for node in nodes:
        columns.setdefault(layer[node.name], []).append(node)
    tallest = max((len(c) for c in columns.values()), default=0)
    placed: dict[str, Placed] = {}
    for index, column in columns.items():
        offset = (tallest - len(column)) * (NODE_H + GAP_Y) // 2
        for row, node in enumerate(column):
            x = PAD + index * (NODE_W + GAP_X)
            y = PAD + offset + row * (NODE_H + GAP_Y)
            placed[node.name] = Placed(node, index, row, x, y)
    edges = tuple(
        Edge(source, node.name, _curve(placed[source], placed[node.name]))
        for node in nodes
        for source in dict.fromkeys(node.upstream)
        if source in placed
    )
    width = PAD * 2 + len(columns) * NODE_W + max(len(columns) - 1, 0) * GAP_X
    height = PAD * 2 + tallest * NODE_H + max(tallest - 1, 0) * GAP_Y
    return Layout(tuple(placed[n.name] for n in nodes), edges, width, height)


def _curve(source: Placed, target: Placed) -> str:
    x1, y1 = source.x + NODE_W, source.y + NODE_H // 2
    x2, y2 = target.x - 6, target.y + NODE_H // 2
    bend = (x2 - x1) // 2
    return f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"


def status_class(status: str) -> str:
    return _STATUS_CLASS.get(status, "pending")


def dag_svg(nodes: Sequence[GraphNode], *, href: Callable[[str], str], title: str = "Steps") -> str:
    """The graph of ``nodes`` as an ``<svg>`` element; each node links to ``href(name)``."""
    placed = layout(nodes)
    parts = [
        f'<svg class="dag" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {placed.width} {placed.height}" width="{placed.width}" '
        f'height="{placed.height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        '<defs><marker id="dag-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" class="dag-head"/>'
        "</marker></defs>",
    ]
    for edge in placed.edges:
        parts.append(
            f'<path class="dag-edge" data-from="{escape(edge.source)}" '
            f'data-to="{escape(edge.target)}" d="{edge.path}" marker-end="url(#dag-arrow)"/>'
        )
    for p in placed.nodes:
        node = p.node
        tip = " · ".join(part for part in (node.name, node.status, node.note) if part)
        label = node.name if len(node.name) <= MAX_LABEL else node.name[: MAX_LABEL - 1] + "…"
        second = " ".join(part for part in (status_class(node.status), node.detail) if part)
        parts.append(
            f'<a class="dag-node {status_class(node.status)}" href="{escape(href(node.name))}" '
            f'data-step="{escape(node.name)}"><title>{escape(tip)}</title>'
            f'<rect x="{p.x}" y="{p.y}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
            f'<text x="{p.x + 10}" y="{p.y + 18}" class="dag-name">{escape(label)}</text>'
            f'<text x="{p.x + 10}" y="{p.y + 35}" class="dag-status">{escape(second)}</text></a>'
        )
    parts.append("</svg>")
    return "".join(parts)
