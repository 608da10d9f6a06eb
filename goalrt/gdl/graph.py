"""A workspace as a graph of goals, actions, and the events and paths that connect them; drawn as Mermaid.

``workspace_graph`` reads the compiled JSON (what ``goalrt gdl load``
stores, so the console draws any stored version); ``mermaid`` prints it
(``goalrt gdl graph``) and ``goalrt.gdl.graph_layout`` lays it out as SVG.

Each app is a subgraph holding its goals (rounded) and actions (boxes);
events (hexagons) and state paths (cylinders) sit between apps. Edges:
``event -->|starts| goal`` for a trigger, ``goal -.->|wants| path`` for the
paths its condition reads, ``path -.->|needs| action`` for the paths an
action's ``require`` reads, and ``action -->|sets| path`` (or ``deletes``,
``adds to``) for its effects. A path's holes are named by their type
(``orders.{Order}.status``), so an action and a goal meet on the same node
whatever they call their parameters. A goal that lists its steps has
``goal -->|runs| action``, ``event -.->|resumes| goal`` for a wait and
``goal -->|starts| goal`` for its child goals.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from goalrt.gdl.compiled import CompiledWorkspace
from goalrt.planner import ActionSchema, Condition, Delete, Path, Set, condition_from_json
from goalrt.planner.conditions import And, Compare, Exists, In, Not, Or

_HOLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}")


@dataclass(frozen=True, slots=True)
class Node:
    """A goal, an action, an event or a state path (``key`` is ``kind:name``)."""

    key: str
    kind: str  # goal, action, event, path
    name: str
    app: str | None  # None for events and paths, which sit between apps


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    verb: str  # wants, needs, sets, deletes, adds to, starts, runs, resumes
    dashed: bool  # a reading or waiting edge, drawn dashed


@dataclass(frozen=True, slots=True)
class Graph:
    """A workspace's nodes (in the order they are first met) and edges (each once, in the order found)."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    # Each app with the keys of its goals, then its actions, sorted by name.
    apps: tuple[tuple[str, tuple[str, ...]], ...]


def mermaid(compiled: CompiledWorkspace) -> str:
    """Return the Mermaid source (``flowchart LR``) of the workspace."""
    graph = workspace_graph(compiled.to_json())
    ids = {n.key: f"n{i + 1}" for i, n in enumerate(graph.nodes)}
    by_key = {n.key: n for n in graph.nodes}
    lines = ["flowchart LR"]
    for app, keys in graph.apps:
        lines.append(f"  subgraph app_{_ident(app)} [{_quote(app)}]")
        for key in keys:
            node = by_key[key]
            shape = "([{}])" if node.kind == "goal" else "[{}]"
            lines.append(f"    {ids[key]}{shape.format(_quote(node.kind + ' ' + node.name))}")
        lines.append("  end")
    for node in sorted((n for n in graph.nodes if n.kind == "event"), key=lambda n: n.name):
        lines.append(f"  {ids[node.key]}{{{{{_quote('event ' + node.name)}}}}}")
    for node in sorted((n for n in graph.nodes if n.kind == "path"), key=lambda n: n.name):
        lines.append(f"  {ids[node.key]}[({_quote(node.name)})]")
    for e in graph.edges:
        lines.append(f"  {ids[e.source]} {'-.->' if e.dashed else '-->'}|{e.verb}| {ids[e.target]}")
    return "\n".join(lines) + "\n"


def workspace_graph(definitions: Mapping[str, Any]) -> Graph:
    """Return the graph of a workspace's compiled JSON (``CompiledWorkspace.to_json()``, or a stored version)."""
    nodes: dict[str, Node] = {}
    edges: dict[Edge, None] = {}
    apps: list[tuple[str, tuple[str, ...]]] = []

    def node(kind: str, name: str, app: str | None = None) -> str:
        key = f"{kind}:{name}"
        # A goal met first as another's child gets its app when its own declaration comes.
        if key not in nodes or (app is not None and nodes[key].app is None):
            nodes[key] = Node(key, kind, name, app)
        return key

    def edge(source: str, target: str, verb: str, dashed: bool = False) -> None:
        edges.setdefault(Edge(source, target, verb, dashed), None)

    for app, items in sorted(definitions.get("apps", {}).items()):
        goals, actions = items.get("goals", []), items.get("actions", [])
        if not goals and not actions:
            continue
        keys = []
        for goal in goals:
            name = goal["name"]
            keys.append(me := node("goal", name, app))
            wanted = _condition_paths(condition_from_json(goal["condition"])) if "condition" in goal else []
            for path in _typed(wanted, goal.get("params", {})):
                edge(me, node("path", path), "wants", dashed=True)
            for step in _all_steps(goal.get("steps") or ()):
                if step["kind"] == "action":
                    edge(me, node("action", step["action"]), "runs")
                elif step["kind"] == "event":
                    edge(node("event", step["event"]), me, "resumes", dashed=True)
                elif step["kind"] == "children":
                    for child in step["goals"]:
                        edge(me, node("goal", child["name"]), "starts")
            for trigger in goal.get("triggers", []):
                edge(node("event", trigger["event"]), me, "starts")
        for action in actions:
            schema = ActionSchema.from_json(action["schema"])
            keys.append(me := node("action", schema.name, app))
            params = dict(schema.params)
            for path in _typed(_condition_paths(schema.pre), params):
                edge(node("path", path), me, "needs", dashed=True)
            for effect in schema.effects:
                verb = "sets" if isinstance(effect, Set) else "deletes" if isinstance(effect, Delete) else "adds to"
                (path,) = _typed([effect.path], params)
                edge(me, node("path", path), verb)
        apps.append((app, tuple(keys)))
    return Graph(tuple(nodes.values()), tuple(edges), tuple(apps))


def _all_steps(steps: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Return the steps and, after each, the steps of its ``on timeout``."""
    out: list[Mapping[str, Any]] = []
    for step in steps:
        out.append(step)
        out.extend(_all_steps(step.get("on_timeout") or ()))
    return out


def _condition_paths(condition: Condition) -> list[Path]:
    if isinstance(condition, Compare):
        return [t for t in (condition.left, condition.right) if isinstance(t, Path)]
    if isinstance(condition, In):
        return [condition.left] if isinstance(condition.left, Path) else []
    if isinstance(condition, Exists):
        return [condition.path]
    if isinstance(condition, Not):
        return _condition_paths(condition.arg)
    if isinstance(condition, And | Or):
        return [p for arg in condition.args for p in _condition_paths(arg)]
    return []


def _typed(paths: Iterable[Path], params: Mapping[str, str]) -> list[str]:
    out = []
    for path in paths:
        text = _HOLE.sub(lambda m: "{" + params.get(m.group(1), m.group(1)) + "}", path.template)
        if text not in out:
            out.append(text)
    return out


def _quote(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def _ident(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


__all__ = ["Edge", "Graph", "Node", "mermaid", "workspace_graph"]
