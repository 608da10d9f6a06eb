"""Compile a goal's ``steps`` and an action's ``emit`` clauses into the templates the runtime fills in.

A step compiles to the JSON the runtime's steps take (``goalrt.waits``,
docs/coordination.md), except that a value may be a goal parameter, filled in
when a worker first takes the goal: ``{"param": "o"}`` for ``{o}`` and
``{"value": CONST}`` for a constant (as a trigger's bindings are stored). An
emit's values may also be a state path (``{"path": "orders.{o}.amount"}``),
read when a pure or simulated action runs.

What is refused, each at its file:line:column: an unknown action, event or
goal (or one the goal's app may not use), an argument that is not a
parameter of the action or goal, one missing or given twice, a value of the
wrong type, a path where a value must be a parameter or a constant, an
option a kind of step does not take or given twice, ``on timeout`` without
``timeout``, a duration of 0s, a prompt naming an unknown parameter, an
answer field of an unknown type or declared twice, two steps with one
label, and child goals that start each other without end.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from goalrt.gdl import ast
from goalrt.gdl.ast_steps import (
    ActionStep,
    AnswerField,
    AskStep,
    ChildrenStep,
    Emit,
    SleepStep,
    StepNode,
    StepOption,
    StepsClause,
    ThenAdvance,
    ThenClause,
    ThenEvent,
    WaitStep,
)
from goalrt.gdl.compiled import TESTS
from goalrt.gdl.declarations import Declarations
from goalrt.gdl.expressions import Expressions, Scope
from goalrt.gdl.schedule_clause import ACCEPTS

_HOLE: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}")
_SCALARS: Final = ("any", "boolean", "integer", "number", "string")
# The options each kind of step takes.
_OPTIONS: Final = {
    "action": ("label",),
    "event": ("where", "since", "timeout", "on_timeout", "label"),
    "sleep": ("label",),
    "ask": ("answer", "timeout", "on_timeout", "label"),
    "children": ("on_failure", "timeout", "on_timeout", "label"),
}
_WORDS: Final = {
    "where": "where",
    "since": "since",
    "answer": "answer",
    "timeout": "timeout",
    "on_timeout": "on timeout",
    "on_failure": "on failure",
    "label": "as",
}
_KIND_WORDS: Final = {
    "action": "an action step",
    "event": "a wait event step",
    "sleep": "a sleep step",
    "ask": "an ask step",
    "children": "a children step",
}
# JSON Schema of an answer field of each GDL type (a declared type's value is an object's key).
_JSON_TYPES: Final = {"string": "string", "number": "number", "integer": "integer", "boolean": "boolean"}


class Steps:
    """Compile steps and emits, recording problems through the workspace's ``Declarations``."""

    def __init__(self, decls: Declarations, exprs: Expressions, goal_params: Mapping[str, Mapping[str, str]]) -> None:
        self.decls = decls
        self.exprs = exprs
        self.fail = decls.fail
        self.goal_params = goal_params
        # (goal, child goal, where the child is named): the goals a goal's steps start, for cycles.
        self.starts: list[tuple[str, str, ast.Pos]] = []
        # Inside an `on timeout`: what starts there starts only if the wait times out (no cycle check).
        self._fallback = 0

    # -- steps -------------------------------------------------------------------------------

    def goal_steps(self, goal: str, app: str, clause: StepsClause, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """Return the step templates of ``steps { ... }`` of goal ``goal``."""
        where = f"goal {goal}"
        if not clause.steps:
            self.fail(clause.pos, f"{where}: steps needs at least one step")
        labels: dict[str, ast.Pos] = {}
        return [self._step(where, app, s, params, labels) for s in clause.steps]

    def _step(
        self, where: str, app: str, node: StepNode, params: Mapping[str, str], labels: dict[str, ast.Pos]
    ) -> dict[str, Any]:
        kind = {ActionStep: "action", WaitStep: "event", SleepStep: "sleep", AskStep: "ask", ChildrenStep: "children"}[
            type(node)
        ]
        options = self._options(where, kind, node.options)
        out: dict[str, Any] = {"kind": kind}
        if isinstance(node, ActionStep):
            out.update(self._action(where, app, node, params))
        elif isinstance(node, WaitStep):
            out.update(self._wait(where, app, node, options, params))
        elif isinstance(node, SleepStep):
            out["seconds"] = self._positive(node.duration, f"{where}: sleep")
        elif isinstance(node, AskStep):
            out.update(self._ask(where, app, node, options, params))
        else:
            out.update(self._children(where, app, node, options, params))
        timeout = options.get("timeout")
        if timeout is not None:
            assert isinstance(timeout.value, ast.Duration)
            out["timeout"] = self._positive(timeout.value, f"{where}: timeout")
        fallback = options.get("on_timeout")
        if fallback is not None:
            if timeout is None:
                self.fail(fallback.pos, f"{where}: on timeout needs a timeout")
            steps = fallback.value
            assert isinstance(steps, tuple)
            if not steps:
                self.fail(fallback.pos, f"{where}: on timeout needs at least one step")
            nodes = [s for s in steps if isinstance(s, ActionStep | WaitStep | SleepStep | AskStep | ChildrenStep)]
            self._fallback += 1
            out["on_timeout"] = [self._step(where, app, s, params, labels) for s in nodes]
            self._fallback -= 1
        label = options.get("label")
        if label is not None:
            assert isinstance(label.value, ast.Name)
            text = label.value.text
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
                self.fail(label.value.pos, f"{where}: invalid label {text!r}: use letters, digits and _")
            elif text in labels:
                self.fail(label.value.pos, f"{where}: label {text} is given twice (first at {labels[text]})")
            labels.setdefault(text, label.value.pos)
            out["label"] = text
        return out

    def _options(self, where: str, kind: str, options: Sequence[StepOption]) -> dict[str, StepOption]:
        out: dict[str, StepOption] = {}
        for option in options:
            if option.kind not in _OPTIONS[kind]:
                self.fail(option.pos, f"{where}: {_KIND_WORDS[kind]} takes no {_WORDS[option.kind]}")
            elif option.kind in out:
                self.fail(option.pos, f"{where}: {_WORDS[option.kind]} is given twice")
            else:
                out[option.kind] = option
        return out

    def _positive(self, duration: ast.Duration, what: str) -> float:
        if duration.seconds <= 0:
            self.fail(duration.pos, f"{what} must be longer than 0s")
        return duration.seconds

    def _action(self, where: str, app: str, node: ActionStep, params: Mapping[str, str]) -> dict[str, Any]:
        target = self.decls.visible("action", node.action, app)
        expected = None
        if target is not None:
            expected = {p.name.text: p.type.text for p in target.decl.params}
        what = f"{where}: action {node.action.text}"
        args = self._bindings(what, node.args, expected, params, node.pos, f"a parameter of action {node.action.text}")
        return {"action": node.action.text, "args": args}

    def _wait(
        self, where: str, app: str, node: WaitStep, options: Mapping[str, StepOption], params: Mapping[str, str]
    ) -> dict[str, Any]:
        event = self.decls.visible("event", node.event, app)
        fields = dict(self.decls.event_fields(event)) if event is not None else None
        bindings = options["where"].value if "where" in options else ()
        assert isinstance(bindings, tuple)
        what = f"{where}: wait event {node.event.text}"
        given = [b for b in bindings if isinstance(b, ast.Binding)]
        filters = self._bindings(what, given, fields, params, None, f"a field of event {node.event.text}")
        since = options["since"].value if "since" in options else "submit"
        return {"event": node.event.text, "where": filters, "since": since}

    def _ask(
        self, where: str, app: str, node: AskStep, options: Mapping[str, StepOption], params: Mapping[str, str]
    ) -> dict[str, Any]:
        prompt = node.prompt.value
        if not isinstance(prompt, str):
            self.fail(node.prompt.pos, f"{where}: the prompt must be a string")
            prompt = ""
        for match in _HOLE.finditer(prompt):
            if match.group(1) not in params:
                known = ", ".join(params) or "none"
                self.fail(
                    node.prompt.pos,
                    f"{where}: the prompt names {{{match.group(1)}}}, not a parameter (parameters: {known})",
                )
        out: dict[str, Any] = {"prompt": prompt}
        answer = options.get("answer")
        if answer is not None:
            fields = [f for f in answer.value if isinstance(f, AnswerField)] if isinstance(answer.value, tuple) else []
            out["schema"] = self._schema(where, app, fields)
        return out

    def _schema(self, where: str, app: str, fields: Sequence[AnswerField]) -> dict[str, Any]:
        """Return the JSON Schema an answer must satisfy: the fields (required unless ``?``), no others."""
        properties: dict[str, Any] = {}
        required: list[str] = []
        for f in fields:
            name, kind = f.name.text, f.type.text
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                self.fail(f.name.pos, f"{where}: invalid answer field {name!r}: use letters, digits and _")
                continue
            if name in properties:
                self.fail(f.name.pos, f"{where}: answer field {name} is declared twice")
                continue
            if kind not in _SCALARS:
                if kind not in self.decls.declared["type"]:
                    scalars = ", ".join(_SCALARS)
                    self.fail(f.type.pos, f"{where}: unknown type {kind!r} (use {scalars} or a declared type)")
                    continue
                self.decls.visible("type", f.type, app)
            spec: dict[str, Any] = {} if kind == "any" else {"type": _JSON_TYPES.get(kind, "string")}
            if f.optional and spec:
                spec = {"type": [spec["type"], "null"]}
            properties[name] = spec
            if not f.optional:
                required.append(name)
        return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}

    def _children(
        self, where: str, app: str, node: ChildrenStep, options: Mapping[str, StepOption], params: Mapping[str, str]
    ) -> dict[str, Any]:
        if not node.goals:
            self.fail(node.pos, f"{where}: {node.mode} children needs at least one goal")
        goals = []
        for child in node.goals:
            # Any goal of the workspace: anyone may submit a goal (contracts export types, events and actions).
            target = self.decls.visible("goal", child.goal, TESTS)
            expected = dict(self.goal_params.get(child.goal.text, {})) if target is not None else None
            what = f"{where}: child goal {child.goal.text}"
            args = self._bindings(
                what, child.args, expected, params, child.pos, f"a parameter of goal {child.goal.text}"
            )
            goals.append({"name": child.goal.text, "params": args})
            if target is not None and not self._fallback:
                self.starts.append((where.removeprefix("goal "), child.goal.text, child.goal.pos))
        on_failure = options["on_failure"].value if "on_failure" in options else "fail"
        return {"mode": node.mode, "on_failure": on_failure, "goals": goals}

    def _bindings(
        self,
        what: str,
        bindings: Sequence[ast.Binding],
        expected: Mapping[str, str] | None,
        params: Mapping[str, str],
        complete_at: ast.Pos | None,
        noun: str,
    ) -> dict[str, Any]:
        """Return ``{name: {"param": p} | {"value": c}}``; with ``complete_at``, every expected name must be bound."""
        out: dict[str, Any] = {}
        for binding in bindings:
            key = binding.name.text
            if expected is not None and key not in expected:
                known = ", ".join(sorted(expected)) or "none"
                plural = "fields" if noun.startswith("a field") else "parameters"
                self.fail(binding.name.pos, f"{what}: {key} is not {noun} ({plural}: {known})")
                continue
            if key in out:
                self.fail(binding.name.pos, f"{what}: {key} is given twice")
                continue
            want = expected.get(key) if expected is not None else None
            out[key] = self._term(what, key, binding.value, want, params, allow_path=False)
        if complete_at is not None and expected is not None:
            for key in expected:
                if key not in out and not any(b.name.text == key for b in bindings):
                    self.fail(complete_at, f"{what}: {key} is not given")
        return out

    def _term(
        self, what: str, key: str, term: ast.Term, want: str | None, params: Mapping[str, str], *, allow_path: bool
    ) -> dict[str, Any]:
        if isinstance(term, ast.Literal):
            value = self.exprs.const(term).value
            accepts = ACCEPTS.get(want or "any", (str,)) if want not in (None, "any") else None
            if accepts is not None and (
                not isinstance(value, accepts) or (isinstance(value, bool) and bool not in accepts)
            ):
                self.fail(term.pos, f"{what}: {key} is {want}, got {json.dumps(value)}")
            return {"value": value}
        hole = _HOLE.fullmatch(term.text)
        if hole is None:
            if allow_path:
                path = self.exprs.path(term, Scope(params))
                return {"path": path.template}
            self.fail(term.pos, f"{what}: {key} must be a parameter ({{name}}) or a constant, not the path {term.text}")
            return {"value": None}
        param = hole.group(1)
        if param not in params:
            known = ", ".join(params) or "none"
            self.fail(term.pos, f"{what}: unbound variable {term.text} (parameters: {known})")
            return {"value": None}
        have = params[param]
        if want is not None and not _compatible(have, want):
            self.fail(term.pos, f"{what}: {key} is {want}, but {{{param}}} is {have}")
        return {"param": param}

    def cycles(self) -> None:
        """Record each child goal that starts, through its own steps, the goal that started it: no end to that.

        Children started in an ``on timeout`` are left out: they start only if the wait times out.
        """
        children: dict[str, set[str]] = {}
        for goal, child, _ in self.starts:
            children.setdefault(goal, set()).add(child)
        for goal, child, pos in self.starts:
            path = _path(children, child, goal)
            if path is not None and child == goal:
                self.fail(pos, f"goal {goal}: starts itself as a child goal, and so on without end")
            elif path is not None:
                chain = " -> ".join([goal, *path])
                self.fail(pos, f"goal {goal}: child goal {child} starts {goal} again ({chain}), and so on without end")

    # -- emit ----------------------------------------------------------------------------------

    def emits(self, action: str, app: str, clauses: Sequence[Any], params: Mapping[str, str]) -> list[dict[str, Any]]:
        """Return an action's ``emit`` clauses as ``[{"event": TYPE, "data": {field: term}}]``."""
        out = []
        for clause in clauses:
            if not isinstance(clause, Emit):
                continue
            event = self.decls.visible("event", clause.event, app)
            fields = dict(self.decls.event_fields(event)) if event is not None else None
            what = f"action {action}: emit {clause.event.text}"
            data: dict[str, Any] = {}
            for binding in clause.data:
                key = binding.name.text
                if fields is not None and key not in fields:
                    known = ", ".join(sorted(fields)) or "none"
                    self.fail(
                        binding.name.pos, f"{what}: event {clause.event.text} has no field {key!r} (fields: {known})"
                    )
                elif key in data:
                    self.fail(binding.name.pos, f"{what}: {key} is given twice")
                else:
                    want = fields.get(key) if fields is not None else None
                    data[key] = self._term(what, key, binding.value, want, params, allow_path=True)
            out.append({"event": clause.event.text, "data": data})
        return out

    # -- a test's then-clauses ---------------------------------------------------------------------

    def then(self, where: str, clause: ThenClause) -> dict[str, Any]:
        """Return a test's ``then``: ``{"answer", "goal"}``, ``{"event", "data"}`` or ``{"advance": seconds}``."""
        if isinstance(clause, ThenAdvance):
            return {"advance": self._positive(clause.duration, f"{where}: then advance")}
        if isinstance(clause, ThenEvent):
            event = self.decls.visible("event", clause.event, TESTS)
            fields = dict(self.decls.event_fields(event)) if event is not None else None
            what = f"{where}: then event {clause.event.text}"
            return {"event": clause.event.text, "data": self._constants(what, clause.data, fields)}
        goal = None
        if clause.goal is not None and self.decls.visible("goal", clause.goal, TESTS) is not None:
            goal = clause.goal.text
        return {"answer": self._constants(f"{where}: then answer", clause.data, None), "goal": goal}

    def _constants(
        self, what: str, bindings: Sequence[ast.Binding], fields: Mapping[str, str] | None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for binding in bindings:
            key = binding.name.text
            if fields is not None and key not in fields:
                known = ", ".join(sorted(fields)) or "none"
                self.fail(binding.name.pos, f"{what}: unknown field {key!r} (expected: {known})")
            elif key in out:
                self.fail(binding.name.pos, f"{what}: {key} is given twice")
            elif isinstance(binding.value, ast.Name):
                self.fail(binding.value.pos, f"{what}: a value must be a constant, not {binding.value.text}")
            else:
                out[key] = self.exprs.const(binding.value).value
        return out


def _path(children: Mapping[str, set[str]], start: str, goal: str) -> list[str] | None:
    """Return the goals from ``start`` to ``goal`` through child goals (both included), or None."""
    seen = {start}
    paths = [[start]]
    while paths:
        path = paths.pop(0)
        if path[-1] == goal:
            return path
        for nxt in sorted(children.get(path[-1], ())):
            if nxt not in seen:
                seen.add(nxt)
                paths.append([*path, nxt])
    return None


def _compatible(have: str, want: str) -> bool:
    """Whether a parameter of type ``have`` may be given where ``want`` is expected."""
    if "any" in (have, want) or have == want:
        return True
    if want == "number" and have == "integer":
        return True
    # A declared type's value is an object's key: a string fits it, and it fits a string.
    declared_have, declared_want = have not in _SCALARS, want not in _SCALARS
    return (declared_want and have == "string") or (declared_have and want == "string")


__all__ = ["Steps"]
