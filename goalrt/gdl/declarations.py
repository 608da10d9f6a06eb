"""The declarations of a workspace: collected by kind and name, and checked before anything is compiled.

Names are unique per kind across the workspace; an app sees its own
declarations, ``shared/``'s, and another app's only through that app's
contract. Types, events and parameters are checked here, and each declared
type becomes the planner's ``ObjectType``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from goalrt.errors import PlanningError
from goalrt.gdl import ast
from goalrt.gdl.compiled import SHARED, TESTS, CompiledEvent
from goalrt.gdl.diagnostics import Problem
from goalrt.planner import ObjectType
from goalrt.planner.values import NAME as PLANNER_NAME

_SCALAR_TYPES: Final = ("any", "boolean", "integer", "number", "string")
_KINDS: Final = ("type", "event", "action", "goal", "contract", "policy", "test")
# The first segments of the event types goalrt appends itself (goal.submitted, state.changed, ...).
_RESERVED_EVENT_PREFIXES: Final = ("gdl", "goal", "schedule", "state", "step")
_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOTTED: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
# Action names (and handler names), type names and action parameters take '-' as the planner does (PDDL's
# drive-truck, from-loc); events, goals, fields and goal parameters stay identifiers.
ACTION_NAME: Final = re.compile(rf"{PLANNER_NAME.pattern}(?:\.{PLANNER_NAME.pattern})*")
_VAR: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}")


@dataclass
class Declared:
    """One declaration, with its kind, name and the app whose folder holds it."""

    kind: str
    name: str
    app: str
    decl: Any


class Declarations:
    """Every declaration of the workspace by kind and name, what contracts export, and the problems found."""

    def __init__(self, files: Sequence[ast.SourceFile], apps: tuple[str, ...]) -> None:
        self.files = files
        self.apps = apps
        self.problems: list[Problem] = []
        self.declared: dict[str, dict[str, Declared]] = {kind: {} for kind in _KINDS}
        # app -> kind -> names exported by a contract of that app
        self.exported: dict[str, dict[str, set[str]]] = {}

    def fail(self, pos: ast.Pos, message: str) -> None:
        """Record a problem; compiling goes on so that every problem is reported at once."""
        self.problems.append(Problem(pos, message))

    def collect(self) -> None:
        """Collect every declaration by kind and name, recording duplicates and misplaced tests."""
        kinds: dict[type, str] = {
            ast.TypeDecl: "type",
            ast.EventDecl: "event",
            ast.ActionDecl: "action",
            ast.GoalDecl: "goal",
            ast.ContractDecl: "contract",
            ast.PolicyDecl: "policy",
            ast.TestDecl: "test",
        }
        for source in self.files:
            for decl in source.decls:
                if isinstance(decl, ast.BuiltinDecl):
                    self.fail(decl.pos, "builtin declarations come with goalrt (gdl/builtin) and its plugins")
                    continue
                kind = kinds[type(decl)]
                if kind == "test" and source.app != TESTS:
                    self.fail(decl.pos, f"test {decl.name.text}: tests belong in the tests/ folder")
                    continue
                if kind != "test" and source.app == TESTS:
                    self.fail(decl.pos, f"{kind} {decl.name.text}: the tests/ folder holds only tests")
                    continue
                self._check_decl_name(kind, decl.name)
                table = self.declared[kind]
                first = table.get(decl.name.text)
                if first is not None:
                    self.fail(decl.name.pos, f"{kind} {decl.name.text} is declared twice (first at {first.decl.pos})")
                    continue
                table[decl.name.text] = Declared(kind, decl.name.text, source.app, decl)

    def _check_decl_name(self, kind: str, name: ast.Name) -> None:
        patterns = {"event": _DOTTED, "goal": _DOTTED, "action": ACTION_NAME, "type": PLANNER_NAME}
        pattern = patterns.get(kind, _IDENT)
        if not pattern.fullmatch(name.text):
            shape = {
                _DOTTED: "dot-separated identifiers",
                ACTION_NAME: "dot-separated names of letters, digits, _ and -",
                PLANNER_NAME: "letters, digits, _ and -, not starting with -",
            }.get(pattern, "an identifier (letters, digits, _)")
            self.fail(name.pos, f"invalid {kind} name {name.text!r}: use {shape}")
        elif kind == "event" and name.text.split(".", 1)[0] in _RESERVED_EVENT_PREFIXES:
            # The database checks appends of declared types: goalrt's own events must stay its own.
            self.fail(
                name.pos,
                f"event {name.text}: {name.text.split('.', 1)[0]}.* are goalrt's own event types"
                f" (reserved: {', '.join(p + '.*' for p in _RESERVED_EVENT_PREFIXES)})",
            )

    def contracts(self) -> None:
        """Record what each contract exports; a contract exports only its own app's declarations."""
        for contract in self.declared["contract"].values():
            exported = self.exported.setdefault(contract.app, {"type": set(), "event": set(), "action": set()})
            for item in contract.decl.exports:
                target = self.declared[item.kind].get(item.name.text)
                if target is None:
                    self.fail(item.name.pos, f"contract {contract.name}: unknown {item.kind} {item.name.text!r}")
                elif target.app != contract.app:
                    self.fail(
                        item.name.pos,
                        f"contract {contract.name} of app {contract.app} exports {item.kind} {item.name.text} "
                        f"of app {target.app}; a contract exports only its own app's declarations",
                    )
                else:
                    exported[item.kind].add(item.name.text)

    def visible(self, kind: str, name: ast.Name, app: str) -> Declared | None:
        """Return the declaration ``app`` may use, or record why it may not."""
        target = self.declared[kind].get(name.text)
        if target is None:
            known = sorted(self.declared[kind])
            hint = f" (declared {kind}s: {', '.join(known[:8])}{', ...' if len(known) > 8 else ''})" if known else ""
            self.fail(name.pos, f"unknown {kind} {name.text!r}{hint}")
            return None
        if target.app in (app, SHARED) or app == TESTS:
            return target
        if name.text in self.exported.get(target.app, {}).get(kind, set()):
            return target
        self.fail(
            name.pos,
            f"{kind} {name.text} belongs to app {target.app}; app {app} may use it only through a contract of "
            f"{target.app}",
        )
        return None

    def _field_type(self, type_name: ast.Name, app: str) -> str:
        if type_name.text in _SCALAR_TYPES:
            return type_name.text
        if type_name.text not in self.declared["type"]:
            scalars = ", ".join(_SCALAR_TYPES)
            self.fail(type_name.pos, f"unknown type {type_name.text!r} (use {scalars} or a declared type)")
            return type_name.text
        self.visible("type", type_name, app)
        return type_name.text

    def _fields(self, fields: Sequence[ast.Field], app: str, where: str) -> tuple[tuple[str, str], ...]:
        out: dict[str, str] = {}
        for f in fields:
            if not _IDENT.fullmatch(f.name.text):
                self.fail(f.name.pos, f"{where}: invalid field name {f.name.text!r}: use letters, digits and _")
            elif f.name.text in out:
                self.fail(f.name.pos, f"{where}: field {f.name.text} is declared twice")
            out[f.name.text] = self._field_type(f.type, app)
        return tuple(out.items())

    def types(self) -> dict[str, tuple[tuple[str, str], ...]]:
        """Return each type's checked fields, checking its ``under`` path too."""
        out = {}
        for name, d in self.declared["type"].items():
            out[name] = self._fields(d.decl.fields, d.app, f"type {name}")
            under = d.decl.under
            if under is not None and not re.fullmatch(r"[A-Za-z0-9_@-]+(\.[A-Za-z0-9_@-]+)*", under.text):
                self.fail(under.pos, f"type {name}: 'under' takes a plain path (e.g. orders), got {under.text!r}")
        return out

    def events(self) -> dict[str, CompiledEvent]:
        """Return each event with its checked fields."""
        return {
            name: CompiledEvent(name, d.app, self._fields(d.decl.fields, d.app, f"event {name}"))
            for name, d in sorted(self.declared["event"].items())
        }

    def params(self, decl: ast.ActionDecl | ast.GoalDecl, app: str, *, objects_only: bool) -> dict[str, str]:
        """Return a declaration's checked parameters and their types (for an action, declared types only)."""
        kind = "action" if isinstance(decl, ast.ActionDecl) else "goal"
        out: dict[str, str] = {}
        for p in decl.params:
            where = f"{kind} {decl.name.text} parameter {p.name.text}"
            if not (PLANNER_NAME if kind == "action" else _IDENT).fullmatch(p.name.text):
                allowed = "letters, digits, _ and -" if kind == "action" else "letters, digits and _"
                self.fail(p.name.pos, f"{where}: invalid name: use {allowed}")
                continue
            if p.name.text in out:
                self.fail(p.name.pos, f"{kind} {decl.name.text}: parameter {p.name.text} is declared twice")
                continue
            if objects_only and p.type.text in _SCALAR_TYPES:
                self.fail(
                    p.type.pos,
                    f"{where}: {p.type.text!r} is not a declared type; an action's parameters range over the "
                    "objects of a declared type",
                )
                continue
            out[p.name.text] = self._field_type(p.type, app)
        return out

    def object_types(
        self, action_params: Mapping[str, Mapping[str, str]], goal_params: Mapping[str, Mapping[str, str]]
    ) -> dict[str, ObjectType]:
        """Return each declared type as an ``ObjectType``: ``under`` if given, else the prefixes where it is used.

        A parameter ``o: Order`` used as a whole segment of a path
        (``orders.{o}.status``) makes ``orders`` a prefix of ``Order``: its
        objects are the keys found under ``orders.`` in the state.
        """
        prefixes: dict[str, set[str]] = {name: set() for name in self.declared["type"]}
        for kind, params_of in (("action", action_params), ("goal", goal_params)):
            for name, params in params_of.items():
                for path in _decl_paths(self.declared[kind][name].decl):
                    segments = path.split(".")
                    for i, segment in enumerate(segments):
                        hole = _VAR.fullmatch(segment)
                        if i and hole and params.get(hole.group(1)) in prefixes and "{" not in ".".join(segments[:i]):
                            prefixes[params[hole.group(1)]].add(".".join(segments[:i]))
        out = {}
        for name, d in self.declared["type"].items():
            under = d.decl.under
            keys = (under.text,) if under is not None else tuple(sorted(prefixes[name]))
            try:
                out[name] = ObjectType(name, keys)
            except PlanningError as exc:
                self.fail(d.decl.pos, f"type {name}: {exc}")
                out[name] = ObjectType(name)
        return out

    def may_use(self, app: str, kind: str, target: Declared) -> bool:
        """Return whether ``app`` may use ``target`` without naming it (its own, shared/'s, or exported)."""
        return target.app in (app, SHARED) or target.name in self.exported.get(target.app, {}).get(kind, set())

    def event_fields(self, event: Declared) -> tuple[tuple[str, str], ...]:
        """Return an event's fields as written: (name, type) pairs."""
        return tuple((f.name.text, f.type.text) for f in event.decl.fields)


def exports(contract: ast.ContractDecl, kind: str) -> tuple[str, ...]:
    """Return the names of ``kind`` a contract exports, sorted."""
    return tuple(sorted(e.name.text for e in contract.exports if e.kind == kind))


def _decl_paths(decl: ast.ActionDecl | ast.GoalDecl) -> Iterator[str]:
    for clause in decl.clauses:
        if isinstance(clause, ast.Require | ast.AchieveClause):
            yield from _cond_paths(clause.condition)
        elif isinstance(clause, ast.SetEffect | ast.IncEffect | ast.DeleteEffect):
            yield clause.path.text


def _cond_paths(node: ast.Cond) -> Iterator[str]:
    if isinstance(node, ast.Compare):
        for term in (node.left, node.right):
            if isinstance(term, ast.Name) and _VAR.fullmatch(term.text) is None:
                yield term.text
    elif isinstance(node, ast.Member):
        if isinstance(node.left, ast.Name):
            yield node.left.text
    elif isinstance(node, ast.ExistsCond):
        yield node.path.text
    elif isinstance(node, ast.AllOf | ast.AnyOf):
        for part in node.parts:
            yield from _cond_paths(part)
    elif isinstance(node, ast.Negation):
        yield from _cond_paths(node.arg)


__all__ = ["ACTION_NAME", "Declarations", "Declared", "exports"]
