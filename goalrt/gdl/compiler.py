"""Check GDL declarations and compile them into what the runtime runs: planner schemas, goal specs, policies.

``compile_sources`` parses every source (all syntax errors at once, one per
file), then checks the whole workspace and reports every semantic problem at
once, sorted by file and line, as one ``GdlError``. What it returns, a
``CompiledWorkspace``, holds the planner's objects (``ObjectType``,
``ActionSchema``, ``goal_conditions.Achieve``, conditions) and the runtime
options, and serializes to canonical JSON with a content hash.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from goalrt.errors import ConfigError, GdlError, GdlSyntaxError, PlanningError
from goalrt.gdl import ast
from goalrt.gdl.compiled import (
    SHARED,
    TESTS,
    CompiledAction,
    CompiledContract,
    CompiledEvent,
    CompiledExpect,
    CompiledGoal,
    CompiledPolicy,
    CompiledTest,
    CompiledTrigger,
    CompiledType,
    CompiledWorkspace,
)
from goalrt.gdl.diagnostics import Problem, render_all
from goalrt.gdl.parser import parse_or_problem
from goalrt.gdl.satisfiability import never_holds
from goalrt.goals.conditions import Achieve
from goalrt.goals.retry import Retry
from goalrt.planner import (
    FALSE,
    TRUE,
    ActionSchema,
    And,
    Compare,
    Condition,
    Const,
    Delete,
    Effect,
    Exists,
    In,
    Increment,
    Not,
    ObjectType,
    Or,
    Path,
    Set,
    Term,
    Var,
)
from goalrt.planner.conditions import bind
from goalrt.planner.values import Scalar

SCALAR_TYPES: Final = ("any", "boolean", "integer", "number", "string")
_HOLE: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_VAR: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOTTED: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_KINDS: Final = ("type", "event", "action", "goal", "contract", "policy", "test")


# -- compiling -----------------------------------------------------------------------


def compile_sources(
    sources: Sequence[ast.Source], *, name: str = "workspace", version: str = "0", apps: Iterable[str] = ()
) -> CompiledWorkspace:
    """Parse and check every source; return the compiled workspace or raise one ``GdlError`` naming every problem."""
    texts = {s.path: s.text for s in sources}
    files: list[ast.SourceFile] = []
    syntax: list[Problem] = []
    for source in sources:
        parsed = parse_or_problem(source.text, source.path, source.app)
        if isinstance(parsed, Problem):
            syntax.append(parsed)
        else:
            files.append(parsed)
    if syntax:
        err = GdlSyntaxError(render_all(syntax, texts))
        first = min(syntax)
        err.filename, err.lineno, err.offset, err.msg = first.pos.file, first.pos.line, first.pos.column, first.message
        raise err
    app_names = tuple(sorted({*apps, *(f.app for f in files if f.app not in (SHARED, TESTS))}))
    compiler = _Compiler(files, app_names)
    result = compiler.run(name, version, len(sources))
    if compiler.problems:
        raise GdlError(render_all(compiler.problems, texts))
    assert result is not None
    return result


@dataclass
class _Declared:
    kind: str
    name: str
    app: str
    decl: Any


class _Compiler:
    def __init__(self, files: Sequence[ast.SourceFile], apps: tuple[str, ...]) -> None:
        self.files = files
        self.apps = apps
        self.problems: list[Problem] = []
        self.declared: dict[str, dict[str, _Declared]] = {kind: {} for kind in _KINDS}
        # app -> kind -> names exported by a contract of that app
        self.exported: dict[str, dict[str, set[str]]] = {}

    def fail(self, pos: ast.Pos, message: str) -> None:
        self.problems.append(Problem(pos, message))

    # -- the passes ----------------------------------------------------------------

    def run(self, name: str, version: str, nfiles: int) -> CompiledWorkspace | None:
        self._collect()
        self._contracts()
        type_fields = self._types()
        events = self._events()
        params_of = {n: self._params(d.decl, d.app, objects_only=True) for n, d in self.declared["action"].items()}
        goal_params = {n: self._params(d.decl, d.app, objects_only=False) for n, d in self.declared["goal"].items()}
        object_types = self._object_types(params_of, goal_params)
        actions = {n: self._action(d, params_of[n]) for n, d in self.declared["action"].items()}
        goals = {n: self._goal(d, goal_params[n], actions, object_types) for n, d in self.declared["goal"].items()}
        policies = {n: self._policy(d) for n, d in self.declared["policy"].items()}
        tests = {n: self._test(d, goal_params) for n, d in self.declared["test"].items()}
        if self.problems:
            return None
        types = {
            n: CompiledType(n, d.app, type_fields[n], object_types[n]) for n, d in sorted(self.declared["type"].items())
        }
        contracts = {
            n: CompiledContract(
                n,
                d.app,
                *(_exports(d.decl, kind) for kind in ("type", "event", "action")),
            )
            for n, d in sorted(self.declared["contract"].items())
        }
        return CompiledWorkspace(
            name=name,
            version=version,
            files=nfiles,
            apps=self.apps,
            types=types,
            events=events,
            actions={n: a for n, a in sorted(actions.items()) if a is not None},
            goals={n: g for n, g in sorted(goals.items()) if g is not None},
            contracts=contracts,
            policies={n: p for n, p in sorted(policies.items()) if p is not None},
            tests={n: t for n, t in sorted(tests.items()) if t is not None},
        )

    def _collect(self) -> None:
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
                table[decl.name.text] = _Declared(kind, decl.name.text, source.app, decl)

    def _check_decl_name(self, kind: str, name: ast.Name) -> None:
        pattern = _DOTTED if kind in ("event", "action", "goal") else _IDENT
        if not pattern.fullmatch(name.text):
            shape = "dot-separated identifiers" if pattern is _DOTTED else "an identifier (letters, digits, _)"
            self.fail(name.pos, f"invalid {kind} name {name.text!r}: use {shape}")

    def _contracts(self) -> None:
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

    def _visible(self, kind: str, name: ast.Name, app: str) -> _Declared | None:
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
        if type_name.text in SCALAR_TYPES:
            return type_name.text
        if type_name.text not in self.declared["type"]:
            scalars = ", ".join(SCALAR_TYPES)
            self.fail(type_name.pos, f"unknown type {type_name.text!r} (use {scalars} or a declared type)")
            return type_name.text
        self._visible("type", type_name, app)
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

    def _types(self) -> dict[str, tuple[tuple[str, str], ...]]:
        out = {}
        for name, d in self.declared["type"].items():
            out[name] = self._fields(d.decl.fields, d.app, f"type {name}")
            under = d.decl.under
            if under is not None and not re.fullmatch(r"[A-Za-z0-9_@-]+(\.[A-Za-z0-9_@-]+)*", under.text):
                self.fail(under.pos, f"type {name}: 'under' takes a plain path (e.g. orders), got {under.text!r}")
        return out

    def _events(self) -> dict[str, CompiledEvent]:
        return {
            name: CompiledEvent(name, d.app, self._fields(d.decl.fields, d.app, f"event {name}"))
            for name, d in sorted(self.declared["event"].items())
        }

    def _params(self, decl: ast.ActionDecl | ast.GoalDecl, app: str, *, objects_only: bool) -> dict[str, str]:
        kind = "action" if isinstance(decl, ast.ActionDecl) else "goal"
        out: dict[str, str] = {}
        for p in decl.params:
            where = f"{kind} {decl.name.text} parameter {p.name.text}"
            if not _IDENT.fullmatch(p.name.text):
                self.fail(p.name.pos, f"{where}: invalid name: use letters, digits and _")
                continue
            if p.name.text in out:
                self.fail(p.name.pos, f"{kind} {decl.name.text}: parameter {p.name.text} is declared twice")
                continue
            if objects_only and p.type.text in SCALAR_TYPES:
                self.fail(
                    p.type.pos,
                    f"{where}: {p.type.text!r} is not a declared type; an action's parameters range over the "
                    "objects of a declared type",
                )
                continue
            out[p.name.text] = self._field_type(p.type, app)
        return out

    def _object_types(
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

    # -- conditions and terms ------------------------------------------------------------------

    def _path(self, name: ast.Name, scope: _Scope) -> Path:
        text = name.text
        for match in _HOLE.finditer(text):
            if match.group(1) not in scope.params:
                self.fail(
                    _shift(name.pos, match.start()),
                    f"unbound variable {{{match.group(1)}}} in {text} ({scope.describe_params()})",
                )
        if "*" in text.split("."):
            if scope.wildcards is None:
                self.fail(name.pos, f"{text}: '*' is allowed only in policies")
                return Path("invalid")
            else:
                segments = text.split(".")
                for i, segment in enumerate(segments):
                    if segment == "*":
                        prefix = ".".join(segments[:i])
                        if not prefix or "*" in prefix.split(".") or "{" in prefix:
                            self.fail(name.pos, f"{text}: '*' needs a plain prefix (e.g. orders.*.amount)")
                            return Path("invalid")
                        var = scope.wildcards.setdefault(prefix, f"_{len(scope.wildcards) + 1}")
                        segments[i] = "{" + var + "}"
                text = ".".join(segments)
        try:
            return Path(text)
        except PlanningError as exc:
            self.fail(name.pos, str(exc))
            return Path("invalid")

    def _term(self, term: ast.Term, scope: _Scope) -> Term:
        if isinstance(term, ast.Literal):
            return self._const(term)
        var = _VAR.fullmatch(term.text)
        if var is not None:
            if var.group(1) not in scope.params:
                self.fail(term.pos, f"unbound variable {term.text} ({scope.describe_params()})")
            return Var(var.group(1))
        return self._path(term, scope)

    def _const(self, literal: ast.Literal) -> Const:
        try:
            return Const(literal.value)
        except PlanningError:
            self.fail(literal.pos, f"number {literal.value!r} is out of range")
            return Const(0)

    def _cond(self, node: ast.Cond, scope: _Scope) -> Condition:
        try:
            return self._cond_unchecked(node, scope)
        except PlanningError as exc:
            self.fail(node.pos, str(exc))
            return TRUE

    def _cond_unchecked(self, node: ast.Cond, scope: _Scope) -> Condition:
        if isinstance(node, ast.Compare):
            return Compare(node.op, self._term(node.left, scope), self._term(node.right, scope))
        if isinstance(node, ast.Member):
            options = []
            for option in node.options:
                if isinstance(option, ast.Name) and _VAR.fullmatch(option.text) is None:
                    self.fail(option.pos, f"'in' lists constants or parameters, not a path ({option.text})")
                    continue
                options.append(self._term(option, scope))
            return In(self._term(node.left, scope), options)
        if isinstance(node, ast.ExistsCond):
            return Exists(self._path(node.path, scope))
        if isinstance(node, ast.AllOf):
            return And(*(self._cond(p, scope) for p in node.parts))
        if isinstance(node, ast.AnyOf):
            return Or(*(self._cond(p, scope) for p in node.parts))
        if isinstance(node, ast.Negation):
            return Not(self._cond(node.arg, scope))
        return TRUE if node.value else FALSE

    def _value(self, term: ast.Term, scope: _Scope, where: str) -> Const | Var:
        if isinstance(term, ast.Name) and _VAR.fullmatch(term.text) is None:
            self.fail(term.pos, f"{where}: the value must be a constant or a parameter ({{name}}), not a path")
            return Const(None)
        value = self._term(term, scope)
        assert isinstance(value, Const | Var)
        return value

    def _once(self, clauses: Sequence[Any], kinds: tuple[type, ...], where: str, word: str) -> Any:
        found: list[Any] = [c for c in clauses if isinstance(c, kinds)]
        for extra in found[1:]:
            self.fail(extra.pos, f"{where}: {word} is given twice")
        return found[0] if found else None

    def _int(self, literal: ast.Literal, where: str, minimum: int) -> int:
        value = literal.value
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.fail(literal.pos, f"{where} must be an integer >= {minimum}, got {literal.value!r}")
            return minimum
        return value

    def _never(self, condition: Condition, pos: ast.Pos, message: str) -> None:
        # Called only on declarations without other problems, so the condition is the one written.
        if never_holds(condition):
            self.fail(pos, message)

    # -- actions ---------------------------------------------------------------------------

    def _action(self, d: _Declared, params: Mapping[str, str]) -> CompiledAction | None:
        decl: ast.ActionDecl = d.decl
        where = f"action {d.name}"
        before = len(self.problems)
        scope = _Scope(params)
        requires = [c for c in decl.clauses if isinstance(c, ast.Require)]
        pre_parts = [self._cond(r.condition, scope) for r in requires]
        pre = pre_parts[0] if len(pre_parts) == 1 else And(*pre_parts)
        effects: list[Effect] = []
        written: dict[str, ast.Pos] = {}
        for clause in decl.clauses:
            if not isinstance(clause, ast.SetEffect | ast.IncEffect | ast.DeleteEffect):
                continue
            path = self._path(clause.path, scope)
            if path.template in written:
                first = written[path.template]
                self.fail(clause.pos, f"{where}: {clause.path.text} is changed twice (first at {first})")
                continue
            written[path.template] = clause.pos
            try:
                if isinstance(clause, ast.SetEffect):
                    effects.append(Set(path, self._value(clause.value, scope, f"{where}: effect {clause.path.text}")))
                elif isinstance(clause, ast.IncEffect):
                    effects.append(Increment(path, clause.by.value))
                else:
                    effects.append(Delete(path))
            except PlanningError as exc:
                self.fail(clause.pos, f"{where}: {exc}")
        cost_clause = self._once(decl.clauses, (ast.Cost,), where, "cost")
        cost: float = 1
        if cost_clause is not None:
            value = cost_clause.value.value
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
                self.fail(cost_clause.value.pos, f"{where}: cost must be a number >= 0, got {value!r}")
            else:
                cost = value
        retry = Retry()
        retry_clause = self._once(decl.clauses, (ast.RetryClause,), where, "retry")
        if retry_clause is not None:
            attempts = self._int(retry_clause.attempts, f"{where}: retry", 1)
            delay = retry_clause.delay.seconds if retry_clause.delay is not None else Retry().backoff
            factor = 1.0 if retry_clause.backoff == "fixed" else Retry().factor
            try:
                retry = Retry(max_attempts=attempts, backoff=delay, factor=factor, max_backoff=max(delay, 300.0))
            except ConfigError as exc:
                self.fail(retry_clause.pos, f"{where}: {exc}")
        timeout_clause = self._once(decl.clauses, (ast.Timeout,), where, "timeout")
        timeout = None
        if timeout_clause is not None:
            timeout = timeout_clause.duration.seconds
            if timeout <= 0:
                self.fail(timeout_clause.duration.pos, f"{where}: timeout must be longer than 0s")
        concurrency_clause = self._once(decl.clauses, (ast.Concurrency,), where, "concurrency")
        concurrency = None
        if concurrency_clause is not None:
            concurrency = self._int(concurrency_clause.value, f"{where}: concurrency", 1)
        rate_clause = self._once(decl.clauses, (ast.Rate,), where, "rate")
        rate = None
        if rate_clause is not None:
            count = self._int(rate_clause.count, f"{where}: rate", 1)
            if rate_clause.per.seconds <= 0:
                self.fail(rate_clause.per.pos, f"{where}: rate needs a period longer than 0s")
            rate = (count, rate_clause.per.seconds)
        handler_clause = self._once(decl.clauses, (ast.Handler,), where, "handler")
        handler = d.name
        if handler_clause is not None:
            handler = handler_clause.name.text
            if not _DOTTED.fullmatch(handler):
                self.fail(handler_clause.name.pos, f"{where}: invalid handler name {handler!r}")
        if len(self.problems) > before:
            return None
        try:
            schema = ActionSchema(d.name, params, pre, effects, cost)
        except PlanningError as exc:
            self.fail(decl.pos, str(exc))
            return None
        if requires:
            self._never(pre, requires[0].pos, f"{where} can never run: its require conditions can never all hold")
        return CompiledAction(d.name, d.app, schema, handler, timeout, retry, concurrency, rate)

    # -- goals -----------------------------------------------------------------------------

    def _goal(
        self,
        d: _Declared,
        params: Mapping[str, str],
        actions: Mapping[str, CompiledAction | None],
        object_types: Mapping[str, ObjectType],
    ) -> CompiledGoal | None:
        decl: ast.GoalDecl = d.decl
        where = f"goal {d.name}"
        before = len(self.problems)
        scope = _Scope(params)
        achieves = [c for c in decl.clauses if isinstance(c, ast.AchieveClause)]
        if not achieves:
            self.fail(decl.name.pos, f"{where}: needs an 'achieve' or a 'maintain' condition")
            return None
        if len({a.maintain for a in achieves}) > 1:
            self.fail(achieves[1].pos, f"{where}: use either 'achieve' or 'maintain', not both")
        parts = [self._cond(a.condition, scope) for a in achieves]
        condition = parts[0] if len(parts) == 1 else And(*parts)
        priority_clause = self._once(decl.clauses, (ast.Priority,), where, "priority")
        priority = 0
        if priority_clause is not None:
            priority = self._int(priority_clause.value, f"{where}: priority", -(2**31))
        deadline_clause = self._once(decl.clauses, (ast.Deadline,), where, "deadline")
        deadline = None
        if deadline_clause is not None:
            deadline = deadline_clause.duration.seconds
            if deadline <= 0:
                self.fail(deadline_clause.duration.pos, f"{where}: deadline must be longer than 0s")
        replans_clause = self._once(decl.clauses, (ast.MaxReplans,), where, "max_replans")
        max_replans = 3 if replans_clause is None else self._int(replans_clause.value, f"{where}: max_replans", 0)
        uses = self._once(decl.clauses, (ast.Uses,), where, "actions")
        if uses is not None:
            chosen = []
            for action in uses.actions:
                if self._visible("action", action, d.app) is not None:
                    chosen.append(action.text)
            names = tuple(sorted(set(chosen)))
        else:
            names = tuple(sorted(n for n, a in self.declared["action"].items() if self._may_use(d.app, "action", a)))
        compiled = [self._trigger(d, t, params) for t in decl.clauses if isinstance(t, ast.Trigger)]
        triggers = tuple(t for t in compiled if t is not None)
        if len(self.problems) > before:
            return None
        self._never(condition, achieves[0].pos, f"{where} can never be reached: its condition can never hold")
        used_types = set(params.values())
        for n in names:
            schema = actions.get(n)
            if schema is not None:
                used_types.update(t for _, t in schema.schema.params)
        types = tuple(object_types[t] for t in sorted(used_types) if t in object_types)
        param_types = {p: t for p, t in params.items() if t in object_types}
        achieve = Achieve(condition, types, {}, param_types, max_replans, maintain=achieves[0].maintain)
        return CompiledGoal(d.name, d.app, tuple(params.items()), achieve, names, priority, deadline, triggers)

    def _may_use(self, app: str, kind: str, target: _Declared) -> bool:
        return target.app in (app, SHARED) or target.name in self.exported.get(target.app, {}).get(kind, set())

    def _trigger(self, d: _Declared, trigger: ast.Trigger, params: Mapping[str, str]) -> CompiledTrigger | None:
        where = f"goal {d.name}: trigger on {trigger.event.text}"
        event = self._visible("event", trigger.event, d.app)
        fields = dict(self._event_fields(event)) if event is not None else {}
        bound: dict[str, tuple[str, Scalar]] = {}
        alias = trigger.alias.text
        for binding in trigger.bindings:
            param = binding.name.text
            if param not in params:
                self.fail(binding.name.pos, f"{where}: {param} is not a parameter of goal {d.name}")
                continue
            if param in bound:
                self.fail(binding.name.pos, f"{where}: {param} is bound twice")
                continue
            if isinstance(binding.value, ast.Literal):
                bound[param] = ("value", self._const(binding.value).value)
                continue
            head, _, rest = binding.value.text.partition(".")
            if head != alias or not rest:
                self.fail(binding.value.pos, f"{where}: expected {alias}.FIELD or a constant, got {binding.value.text}")
                continue
            if event is not None and rest not in fields:
                known = ", ".join(sorted(fields)) or "none"
                event_name = trigger.event.text
                self.fail(binding.value.pos, f"{where}: event {event_name} has no field {rest!r} (fields: {known})")
                continue
            bound[param] = ("field", rest)
        written = {b.name.text for b in trigger.bindings}
        for param in params:
            if param not in written:
                self.fail(trigger.pos, f"{where}: parameter {param} is not bound")
        if event is None:
            return None
        return CompiledTrigger(trigger.event.text, tuple(sorted(bound.items())))

    def _event_fields(self, event: _Declared) -> tuple[tuple[str, str], ...]:
        return tuple((f.name.text, f.type.text) for f in event.decl.fields)

    # -- policies --------------------------------------------------------------------------

    def _policy(self, d: _Declared) -> CompiledPolicy | None:
        decl: ast.PolicyDecl = d.decl
        before = len(self.problems)
        if not decl.conditions:
            self.fail(decl.name.pos, f"policy {d.name}: needs at least one 'require' condition")
            return None
        wildcards: dict[str, str] = {}
        scope = _Scope({}, wildcards, "a policy has no parameters; use * for every key")
        parts = [self._cond(c, scope) for c in decl.conditions]
        if len(self.problems) > before:
            return None
        condition = parts[0] if len(parts) == 1 else And(*parts)
        # The same key for every wildcard: if the policy cannot hold for one key, it cannot hold for any.
        ground = bind_wildcards(condition, wildcards)
        if never_holds(ground):
            self.fail(decl.conditions[0].pos, f"policy {d.name} can never hold: no state satisfies its conditions")
            return None
        return CompiledPolicy(d.name, d.app, condition, tuple(sorted((v, p) for p, v in wildcards.items())))

    # -- tests -----------------------------------------------------------------------------

    def _test(self, d: _Declared, goal_params: Mapping[str, Mapping[str, str]]) -> CompiledTest | None:
        decl: ast.TestDecl = d.decl
        where = f"test {d.name}"
        before = len(self.problems)
        scope = _Scope({}, None, "a test has no parameters; write concrete paths")
        given: dict[str, Scalar] = {}
        simulate: list[str] = []
        expects: list[CompiledExpect] = []
        when: dict[str, Any] | None = None
        whens = [c for c in decl.clauses if isinstance(c, ast.WhenGoal | ast.WhenEvent)]
        for extra in whens[1:]:
            self.fail(extra.pos, f"{where}: a test has one 'when'")
        for clause in decl.clauses:
            if isinstance(clause, ast.Given):
                path = self._path(clause.path, scope)
                if path.template in given:
                    self.fail(clause.pos, f"{where}: {clause.path.text} is given twice")
                given[path.template] = self._given_value(clause.value, where)
            elif isinstance(clause, ast.Simulate):
                for action in clause.actions:
                    if self._visible("action", action, TESTS) is not None:
                        simulate.append(action.text)
            elif isinstance(clause, ast.WhenGoal) and clause is whens[0]:
                goal = self._visible("goal", clause.goal, TESTS)
                args = self._args(clause.args, dict(goal_params.get(clause.goal.text, {})) if goal else None, where)
                when = {"goal": clause.goal.text, "params": args}
                if goal is not None:
                    for param in goal_params.get(clause.goal.text, {}):
                        if param not in args:
                            self.fail(clause.pos, f"{where}: goal {clause.goal.text} needs parameter {param}")
            elif isinstance(clause, ast.WhenEvent) and clause is whens[0]:
                event = self._visible("event", clause.event, TESTS)
                fields = dict(self._event_fields(event)) if event is not None else None
                when = {"event": clause.event.text, "data": self._args(clause.data, fields, where)}
            elif isinstance(clause, ast.ExpectEvent):
                self._visible("event", clause.event, TESTS)
                expects.append(CompiledExpect("event", event=clause.event.text))
            elif isinstance(clause, ast.ExpectGoal):
                if not any(isinstance(w, ast.WhenGoal) for w in whens):
                    self.fail(clause.pos, f"{where}: 'expect goal' needs a 'when goal'")
                expects.append(CompiledExpect("goal", status=clause.status))
            elif isinstance(clause, ast.ExpectState):
                expects.append(CompiledExpect("state", condition=self._cond(clause.condition, scope)))
        if not expects:
            self.fail(decl.name.pos, f"{where}: needs at least one 'expect'")
        if len(self.problems) > before:
            return None
        return CompiledTest(
            d.name,
            tuple(given.items()),
            tuple(sorted(set(simulate))),
            when,
            tuple(expects),
            f"{decl.pos.file}:{decl.pos.line}",
        )

    def _given_value(self, term: ast.Term, where: str) -> Scalar:
        if isinstance(term, ast.Name):
            self.fail(term.pos, f"{where}: a value must be a constant, not {term.text}")
            return None
        return self._const(term).value

    def _args(self, bindings: Sequence[ast.Binding], allowed: Mapping[str, str] | None, where: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for binding in bindings:
            key = binding.name.text
            if allowed is not None and key not in allowed:
                known = ", ".join(sorted(allowed)) or "none"
                self.fail(binding.name.pos, f"{where}: unknown parameter {key!r} (expected: {known})")
                continue
            if key in out:
                self.fail(binding.name.pos, f"{where}: {key} is given twice")
                continue
            out[key] = self._given_value(binding.value, where)
        return out


@dataclass
class _Scope:
    """What a condition may refer to: parameters, and in a policy the wildcards it introduces."""

    params: Mapping[str, str]
    wildcards: dict[str, str] | None = None
    no_params: str = "no parameters"

    def describe_params(self) -> str:
        if not self.params:
            return self.no_params
        return "parameters: " + ", ".join(self.params)


def _exports(contract: ast.ContractDecl, kind: str) -> tuple[str, ...]:
    return tuple(sorted(e.name.text for e in contract.exports if e.kind == kind))


def _shift(pos: ast.Pos, offset: int) -> ast.Pos:
    return ast.Pos(pos.file, pos.line, pos.column + offset)


def bind_wildcards(condition: Condition, wildcards: Mapping[str, str]) -> Condition:
    """Return the condition with each wildcard variable replaced by one fixed key (``_1`` -> ``_1``)."""
    return bind(condition, {var: var for var in wildcards.values()})


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


__all__ = ["SCALAR_TYPES", "bind_wildcards", "compile_sources"]
