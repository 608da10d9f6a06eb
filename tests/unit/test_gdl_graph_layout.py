"""The workspace graph read from compiled JSON, and its layered layout (the console's GDL page)."""

from __future__ import annotations

import json
import re

from goalrt.gdl import check
from goalrt.gdl.graph import Edge, Graph, Node, mermaid, workspace_graph
from goalrt.gdl.graph_layout import layout

SHOP = "gdl/examples/shop"


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def test_the_stored_json_gives_the_graph_mermaid_prints() -> None:
    compiled = check(SHOP)
    body = compiled.to_json()
    body.pop("content_hash")
    # As goalrt gdl load stores it: plain JSON, read back.
    graph = workspace_graph(json.loads(json.dumps(body)))
    text = mermaid(compiled)
    assert len(graph.nodes) == len(re.findall(r"^\s+n\d+[\[({]", text, re.MULTILINE)) == 15
    assert len(graph.edges) == text.count("->|") == 19
    assert {n.app for n in graph.nodes if n.kind in ("goal", "action")} == {"fulfillment", "orders", "payments"}
    assert all(n.app is None for n in graph.nodes if n.kind in ("event", "path"))


def test_layout_places_every_node_apart_and_routes_every_edge() -> None:
    graph = workspace_graph(check(SHOP).to_json())
    drawn = layout(graph)
    boxes = [(p.x, p.y, p.width, p.height) for p in drawn.nodes]
    assert [p.node for p in drawn.nodes] == list(graph.nodes)
    assert not any(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert all(x >= 0 and x + w <= drawn.width and y >= 0 and y + h <= drawn.height for x, y, w, h in boxes)
    # An action that needs and sets the same path is one line: every edge is drawn once, alone or paired.
    drawn_edges = [r.edge for r in drawn.routes] + [r.back for r in drawn.routes if r.back is not None]
    assert sorted(drawn_edges, key=repr) == sorted(graph.edges, key=repr)
    paired = next(r for r in drawn.routes if r.back is not None)
    assert paired.label == f"{paired.edge.verb} / {paired.back.verb}" and not paired.dashed  # type: ignore[union-attr]
    assert all(r.d.startswith("M") and " C" in r.d for r in drawn.routes)
    assert layout(graph) == drawn  # the same graph, the same picture


def test_cycles_long_edges_and_a_goal_that_starts_itself() -> None:
    nodes = tuple(Node(f"goal:{n}", "goal", n, "a") for n in "abcd")
    edges = (
        Edge("goal:a", "goal:b", "starts", False),
        Edge("goal:b", "goal:c", "starts", False),
        Edge("goal:c", "goal:a", "starts", False),  # closes a cycle: turned round for the layout
        Edge("goal:a", "goal:d", "starts", False),
        Edge("goal:d", "goal:d", "starts", False),
    )
    drawn = layout(Graph(nodes, edges, (("a", tuple(n.key for n in nodes)),)))
    assert len(drawn.routes) == 5
    box = {p.node.name: p for p in drawn.nodes}
    assert box["a"].x < box["b"].x < box["c"].x
    # The edge that closes the cycle is drawn from its own source: c's left side, back to a's right side.
    back = next(r for r in drawn.routes if r.edge.source == "goal:c")
    start = float(back.d[1:].split(",")[0])
    end = float(back.d.split(" ")[-1].split(",")[0])
    assert (start, end) == (box["c"].x, round(box["a"].x + box["a"].width, 1))
    assert layout(Graph((), (), ())).nodes == ()
