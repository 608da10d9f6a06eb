"""Lay a workspace graph out in layers, left to right, for drawing as SVG (the console's GDL page).

A small Sugiyama layout, enough for workspaces of tens of nodes: edges that
close a cycle are turned round (found by a depth-first walk in node order),
each node goes one layer right of its furthest predecessor, an edge that
spans several layers passes through a hidden point in each, and a few
sweeps sort each layer by the mean position of its neighbours to uncross
edges. Every step is deterministic: the same graph, the same picture.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from goalrt.gdl.graph import Edge, Graph, Node

# Sizes in SVG units: a node's height, the width of a character of its name, gaps and margins.
NODE_H, CHAR_W, NODE_PAD, MIN_W = 36, 6.8, 18, 70
LAYER_GAP, ROW_GAP, MARGIN = 90, 18, 12
SWEEPS = 8


@dataclass(frozen=True, slots=True)
class Placed:
    """A node with its box (x, y: the top left corner)."""

    node: Node
    x: float
    y: float
    width: float
    height: float

    @property
    def subtitle(self) -> str:
        return self.node.kind if self.node.app is None else f"{self.node.kind} · {self.node.app}"

    @property
    def hexagon(self) -> str:
        """Return the points of a hexagon filling the box (events are drawn so)."""
        x, y, w, h, c = self.x, self.y, self.width, self.height, 10
        return f"{x},{y + h / 2} {x + c},{y} {x + w - c},{y} {x + w},{y + h / 2} {x + w - c},{y + h} {x + c},{y + h}"


@dataclass(frozen=True, slots=True)
class Route:
    """An edge as an SVG path (``d``) with the place of its label; ``back``: the edge the other way, drawn as one."""

    edge: Edge
    back: Edge | None
    d: str
    label_x: float
    label_y: float

    @property
    def label(self) -> str:
        return self.edge.verb if self.back is None else f"{self.edge.verb} / {self.back.verb}"

    @property
    def dashed(self) -> bool:
        return self.edge.dashed and (self.back is None or self.back.dashed)


@dataclass(frozen=True, slots=True)
class Layout:
    width: float
    height: float
    nodes: tuple[Placed, ...]
    routes: tuple[Route, ...]


def layout(graph: Graph) -> Layout:
    """Return where each node of ``graph`` goes and the path of each edge."""
    keys = [n.key for n in graph.nodes]
    order = {k: i for i, k in enumerate(keys)}
    pairs = _pairs(graph.edges)
    edges = [e for e, _ in pairs]
    back = _back_edges(keys, edges)
    forward = [(e, *_ends(e, back)) for e in edges]
    layer = _layers(keys, [(s, t) for _, s, t in forward])
    # Chains: each edge as the list of points (real or hidden) it passes, from its lower layer to its higher one.
    chains: list[list[str]] = []
    members: dict[int, list[str]] = {}
    for k in keys:
        members.setdefault(layer[k], []).append(k)
    for i, (_, s, t) in enumerate(forward):
        chain = [s]
        for at in range(layer[s] + 1, layer[t]):
            hidden = f"~{i}~{at}"
            layer[hidden] = at
            members[at].append(hidden)
            chain.append(hidden)
        chains.append([*chain, t])
    ranks = _order(members, chains, order)
    boxes = _place(graph.nodes, members, ranks)
    placed = tuple(Placed(n, *boxes[n.key]) for n in graph.nodes)
    routes = _routes(forward, [b for _, b in pairs], chains, boxes)
    width = max((x + w for x, _, w, _ in boxes.values()), default=0.0) + MARGIN
    height = max((y + h for _, y, _, h in boxes.values()), default=0.0) + MARGIN
    return Layout(round(width, 1), round(height, 1), placed, routes)


def _pairs(edges: Sequence[Edge]) -> list[tuple[Edge, Edge | None]]:
    """Return the edges, each with the one going the other way between the same nodes (drawn as one line)."""
    pairs: list[tuple[Edge, Edge | None]] = []
    at: dict[tuple[str, str], int] = {}
    for e in edges:
        i = at.get((e.target, e.source))
        if i is not None and pairs[i][1] is None and e.source != e.target:
            pairs[i] = (pairs[i][0], e)
            del at[(e.target, e.source)]
        else:
            at.setdefault((e.source, e.target), len(pairs))
            pairs.append((e, None))
    return pairs


def _back_edges(keys: Sequence[str], edges: Sequence[Edge]) -> set[tuple[str, str]]:
    """Return the edges that close a cycle, found by a depth-first walk in node order (iterative)."""
    out: dict[str, list[str]] = {k: [] for k in keys}
    for e in edges:
        out[e.source].append(e.target)
    state: dict[str, int] = {}  # 1: on the walk's path, 2: done
    back: set[tuple[str, str]] = set()
    for root in keys:
        if root in state:
            continue
        stack = [(root, iter(out[root]))]
        state[root] = 1
        while stack:
            node, rest = stack[-1]
            nxt = next(rest, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                back.add((node, nxt))
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(out[nxt])))
    return back


def _ends(edge: Edge, back: set[tuple[str, str]]) -> tuple[str, str]:
    return (edge.target, edge.source) if (edge.source, edge.target) in back else (edge.source, edge.target)


def _layers(keys: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Return each node's layer: one more than its furthest predecessor's (the edges are acyclic)."""
    incoming = {k: 0 for k in keys}
    out: dict[str, list[str]] = {k: [] for k in keys}
    for s, t in edges:
        if s != t:
            out[s].append(t)
            incoming[t] += 1
    layer = dict.fromkeys(keys, 0)
    ready = [k for k in keys if incoming[k] == 0]
    while ready:
        k = ready.pop(0)
        for t in out[k]:
            layer[t] = max(layer[t], layer[k] + 1)
            incoming[t] -= 1
            if incoming[t] == 0:
                ready.append(t)
    return layer


def _order(
    members: Mapping[int, list[str]], chains: Sequence[Sequence[str]], order: Mapping[str, int]
) -> dict[str, float]:
    """Return each point's rank in its layer after sweeps that sort layers by their neighbours' mean rank."""
    left: dict[str, list[str]] = {k: [] for ks in members.values() for k in ks}
    right: dict[str, list[str]] = {k: [] for k in left}
    for chain in chains:
        for a, b in pairwise(chain):
            right[a].append(b)
            left[b].append(a)
    rank = {k: float(i) for ks in members.values() for i, k in enumerate(ks)}
    layers = sorted(members)
    for sweep in range(SWEEPS):
        downward = sweep % 2 == 0
        for at in layers[1:] if downward else reversed(layers[:-1]):
            near = left if downward else right

            def key(k: str, near: dict[str, list[str]] = near) -> tuple[float, float, int]:
                ns = near[k]
                mean = sum(rank[n] for n in ns) / len(ns) if ns else rank[k]
                return (mean, rank[k], order.get(k, len(order)))

            for i, k in enumerate(sorted(members[at], key=key)):
                rank[k] = float(i)
    return rank


def _place(
    nodes: Sequence[Node], members: Mapping[int, list[str]], rank: Mapping[str, float]
) -> dict[str, tuple[float, float, float, float]]:
    """Return each point's box: layers side by side, each layer's column centred on the tallest."""
    widths = {n.key: max(MIN_W, NODE_PAD + CHAR_W * max(len(n.name), _subtitle_len(n))) for n in nodes}
    heights = {k: (NODE_H if k in widths else 0.0) for ks in members.values() for k in ks}
    columns = {at: sorted(ks, key=lambda k: rank[k]) for at, ks in members.items()}
    tall = {at: sum(heights[k] + ROW_GAP for k in ks) - ROW_GAP for at, ks in columns.items()}
    tallest = max(tall.values(), default=0.0)
    boxes: dict[str, tuple[float, float, float, float]] = {}
    x = float(MARGIN)
    for at in sorted(columns):
        col_w = max((widths.get(k, 0.0) for k in columns[at]), default=0.0)
        y = MARGIN + (tallest - tall[at]) / 2
        for k in columns[at]:
            w = widths.get(k, 0.0)
            boxes[k] = (round(x + (col_w - w) / 2, 1), round(y, 1), round(w, 1), heights[k])
            y += heights[k] + ROW_GAP
        x += col_w + LAYER_GAP
    return boxes


def _routes(
    forward: Sequence[tuple[Edge, str, str]],
    backs: Sequence[Edge | None],
    chains: Sequence[Sequence[str]],
    boxes: Mapping[str, tuple[float, float, float, float]],
) -> tuple[Route, ...]:
    """Return each edge's path through its points, the edges at a node's side spread down that side."""
    # Each side of each node: the chains that meet it, sorted by where their other end is, to spread them.
    sides: dict[tuple[str, str], list[tuple[float, int]]] = {}
    for i, chain in enumerate(chains):
        sides.setdefault((chain[0], "right"), []).append((_mid(boxes[chain[1]])[1], i))
        sides.setdefault((chain[-1], "left"), []).append((_mid(boxes[chain[-2]])[1], i))
    port: dict[tuple[str, str, int], float] = {}
    for (k, side), met in sides.items():
        _, y, _, h = boxes[k]
        step = min(10.0, (h - 6) / max(1, len(met)))
        for j, (_, i) in enumerate(sorted(met)):
            port[(k, side, i)] = y + h / 2 + (j - (len(met) - 1) / 2) * step
    routes = []
    for i, ((edge, s, _t), chain) in enumerate(zip(forward, chains, strict=True)):
        sx, _, sw, _ = boxes[chain[0]]
        tx, _, _, _ = boxes[chain[-1]]
        points = [(sx + sw, port[(chain[0], "right", i)])]
        points += [_mid(boxes[k]) for k in chain[1:-1]]
        points.append((tx, port[(chain[-1], "left", i)]))
        if s != edge.source:  # turned round for the layout: drawn from its real source
            points.reverse()
        d = f"M{points[0][0]:.1f},{points[0][1]:.1f}"
        for (x0, y0), (x1, y1) in pairwise(points):
            bend = (x1 - x0) / 2
            d += f" C{x0 + bend:.1f},{y0:.1f} {x1 - bend:.1f},{y1:.1f} {x1:.1f},{y1:.1f}"
        (ax, ay), (bx, by) = points[len(points) // 2 - 1], points[len(points) // 2]
        routes.append(Route(edge, backs[i], d, round((ax + bx) / 2, 1), round((ay + by) / 2 - 3, 1)))
    return tuple(routes)


def _subtitle_len(node: Node) -> int:
    # The subtitle is smaller (10 against 12 units): count it as five sixths of its characters.
    return (len(node.kind) + 3 + len(node.app or "")) * 5 // 6


def _mid(box: tuple[float, float, float, float]) -> tuple[float, float]:
    x, y, w, h = box
    return (x + w / 2, y + h / 2)


__all__ = ["Layout", "Placed", "Route", "layout"]
