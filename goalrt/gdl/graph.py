"""Draw a compiled workspace as a Mermaid flowchart: goals, actions, and the events and paths that connect them.

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
from typing import Any

from goalrt.gdl.compiled import CompiledWorkspace
from goalrt.planner import Condition, Delete, Path, Set
from goalrt.planner.conditions import And, Compare, Exists, In, Not, Or

_HOLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}")


def mermaid(compiled: CompiledWorkspace) -> str:
    """Return the Mermaid source (``flowchart LR``) of the workspace."""
    ids: dict[str, str] = {}
    lines = ["flowchart LR"]
    edges: list[str] = []

    def node(key: str) -> str:
        if key not in ids:
            ids[key] = f"n{len(ids) + 1}"
        return ids[key]

    paths: set[str] = set()
    events: set[str] = set()
    for app in sorted({*(g.app for g in compiled.goals.values()), *(a.app for a in compiled.actions.values())}):
        lines.append(f"  subgraph app_{_ident(app)} [{_quote(app)}]")
        for name, goal in sorted(compiled.goals.items()):
            if goal.app != app:
                continue
            lines.append(f"    {node('goal:' + name)}([{_quote('goal ' + name)}])")
            wanted = _condition_paths(goal.achieve.condition) if goal.achieve is not None else []
            for path in _typed(wanted, dict(goal.params)):
                paths.add(path)
                edges.append(f"  {node('goal:' + name)} -.->|wants| {node('path:' + path)}")
            for step in _all_steps(goal.steps or ()):
                if step["kind"] == "action":
                    edges.append(f"  {node('goal:' + name)} -->|runs| {node('action:' + step['action'])}")
                elif step["kind"] == "event":
                    events.add(step["event"])
                    edges.append(f"  {node('event:' + step['event'])} -.->|resumes| {node('goal:' + name)}")
                elif step["kind"] == "children":
                    for child in step["goals"]:
                        edges.append(f"  {node('goal:' + name)} -->|starts| {node('goal:' + child['name'])}")
            for trigger in goal.triggers:
                events.add(trigger.event)
                edges.append(f"  {node('event:' + trigger.event)} -->|starts| {node('goal:' + name)}")
        for name, action in sorted(compiled.actions.items()):
            if action.app != app:
                continue
            params = dict(action.schema.params)
            lines.append(f"    {node('action:' + name)}[{_quote('action ' + name)}]")
            for path in _typed(_condition_paths(action.schema.pre), params):
                paths.add(path)
                edges.append(f"  {node('path:' + path)} -.->|needs| {node('action:' + name)}")
            for effect in action.schema.effects:
                verb = "sets" if isinstance(effect, Set) else "deletes" if isinstance(effect, Delete) else "adds to"
                (path,) = _typed([effect.path], params)
                paths.add(path)
                edges.append(f"  {node('action:' + name)} -->|{verb}| {node('path:' + path)}")
        lines.append("  end")
    for event in sorted(events):
        lines.append(f"  {node('event:' + event)}{{{{{_quote('event ' + event)}}}}}")
    for path in sorted(paths):
        lines.append(f"  {node('path:' + path)}[({_quote(path)})]")
    return "\n".join([*lines, *sorted(set(edges), key=edges.index)]) + "\n"


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


__all__ = ["mermaid"]
