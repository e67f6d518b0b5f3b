"""The step graph's layout (layers by dependency depth, one edge per dependency) and its SVG."""

from __future__ import annotations

import re

from modelyard.ui.graph import NODE_H, NODE_W, GraphNode, dag_svg, layout

DIAMOND = [
    GraphNode("make", (), "succeeded"),
    GraphNode("means", ("make",), "cached", note="cache hit: outputs of run abc"),
    GraphNode("squares", ("make",), "failed"),
    GraphNode("combine", ("means", "squares"), "skipped"),
    GraphNode("summary", ("combine",), "pending"),
    GraphNode("alone", (), "succeeded"),
]


def test_layers_follow_dependency_depth() -> None:
    placed = {p.node.name: p for p in layout(DIAMOND).nodes}
    assert {n: p.layer for n, p in placed.items()} == {
        "make": 0, "alone": 0, "means": 1, "squares": 1, "combine": 2, "summary": 3,
    }  # fmt: skip
    assert (placed["make"].row, placed["alone"].row) == (0, 1)  # the order given
    for name, p in placed.items():  # every node right of each of its upstream nodes
        for upstream in p.node.upstream:
            assert placed[upstream].x + NODE_W < p.x, (upstream, name)


def test_no_two_nodes_overlap_and_all_fit() -> None:
    result = layout(DIAMOND)
    boxes = [(p.x, p.y) for p in result.nodes]
    for i, (x1, y1) in enumerate(boxes):
        assert x1 >= 0 and x1 + NODE_W <= result.width and y1 >= 0
        assert y1 + NODE_H <= result.height
        for x2, y2 in boxes[i + 1 :]:
            assert abs(x1 - x2) >= NODE_W or abs(y1 - y2) >= NODE_H


def test_one_edge_per_dependency_and_unknown_upstreams_left_out() -> None:
    nodes = [*DIAMOND, GraphNode("late", ("gone", "make", "make"), "succeeded")]
    edges = {(e.source, e.target) for e in layout(nodes).edges}
    assert len(layout(nodes).edges) == len(edges) == 6
    assert edges == {
        ("make", "means"), ("make", "squares"), ("means", "combine"),
        ("squares", "combine"), ("combine", "summary"), ("make", "late"),
    }  # fmt: skip
    assert layout([]).nodes == () and layout([]).width == 16


def test_svg_has_a_node_per_step_coloured_by_status_and_escapes_names() -> None:
    nodes = [*DIAMOND, GraphNode("x<script>", ("make",), "succeeded", note='a "quoted" <b>')]
    svg = dag_svg(nodes, href=lambda name: f"#step-{name}")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    classes = re.findall(r'<a class="dag-node (\w+)"', svg)
    assert classes == ["ran", "cached", "failed", "skipped", "pending", "ran", "ran"]
    assert svg.count('class="dag-edge"') == 6
    assert "<script>" not in svg and "x&lt;script&gt;" in svg
    assert "&quot;quoted&quot; &lt;b&gt;" in svg
    assert 'href="#step-x&lt;script&gt;"' in svg
    assert "style=" not in svg  # the page's CSP forbids inline styles


def test_a_long_name_is_cut_in_the_box_and_whole_in_the_tooltip() -> None:
    name = "a_step_with_a_very_long_name_indeed"
    svg = dag_svg([GraphNode(name, (), "succeeded")], href=str)
    assert f"<title>{name} · succeeded</title>" in svg
    assert ">a_step_with_a_very_lo…</text>" in svg
