"""Compile GDL sources into what the runtime runs: planner schemas, goal specs, policies, tests.

``compile_sources`` parses every source (all syntax errors at once, one per
file), then checks the whole workspace and reports every semantic problem at
once, sorted by file and line, as one ``GdlError``. What it returns, a
``CompiledWorkspace``, holds the planner's objects (``ObjectType``,
``ActionSchema``, ``goalrt.goals.conditions.Achieve``, conditions) and the runtime
options, and serializes to canonical JSON with a content hash.

The passes live in modules named for their job: ``declarations`` (names,
visibility, types, events, parameters), ``expressions`` (conditions and
terms), ``clauses`` (each action, goal and policy), ``cases`` (each test); this module runs
them in order and assembles the workspace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from goalrt.errors import GdlError, GdlSyntaxError
from goalrt.gdl import ast
from goalrt.gdl.calls import Contract, builtin_contracts
from goalrt.gdl.cases import Cases
from goalrt.gdl.clauses import Clauses
from goalrt.gdl.compiled import SHARED, TESTS, CompiledContract, CompiledType, CompiledWorkspace
from goalrt.gdl.declarations import Declarations, exports
from goalrt.gdl.diagnostics import Problem, render_all
from goalrt.gdl.expressions import Expressions
from goalrt.gdl.parser import parse_or_problem
from goalrt.gdl.steps import Steps


def compile_sources(
    sources: Sequence[ast.Source],
    *,
    name: str = "workspace",
    version: str = "0",
    apps: Iterable[str] = (),
    contracts: Mapping[str, Contract] | None = None,
) -> CompiledWorkspace:
    """Parse and check every source; return the compiled workspace or raise one ``GdlError`` naming every problem.

    ``contracts`` are the built-ins' (default: goalrt's and the installed plugins', ``builtin_contracts()``).
    """
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
    decls = Declarations(files, app_names)
    result = _assemble(decls, name, version, len(sources), builtin_contracts() if contracts is None else contracts)
    if decls.problems:
        raise GdlError(render_all(decls.problems, texts))
    assert result is not None
    return result


def _assemble(
    decls: Declarations, name: str, version: str, nfiles: int, builtins: Mapping[str, Contract]
) -> CompiledWorkspace | None:
    """Run the passes in order; return the workspace, or None when ``decls.problems`` says why not."""
    exprs = Expressions(decls.fail)
    declared = decls.declared
    decls.collect()
    decls.contracts()
    type_fields = decls.types()
    events = decls.events()
    params_of = {n: decls.params(d.decl, d.app, objects_only=True) for n, d in declared["action"].items()}
    goal_params = {n: decls.params(d.decl, d.app, objects_only=False) for n, d in declared["goal"].items()}
    clauses = Clauses(decls, exprs, Steps(decls, exprs, goal_params), builtins)
    object_types = decls.object_types(params_of, goal_params)
    actions = {n: clauses.action(d, params_of[n]) for n, d in declared["action"].items()}
    goals = {n: clauses.goal(d, goal_params[n], actions, object_types) for n, d in declared["goal"].items()}
    clauses.steps.cycles()
    policies = {n: clauses.policy(d) for n, d in declared["policy"].items()}
    cases = Cases(decls, exprs, clauses.steps, goal_params, goals, policies)
    tests = {n: cases.test(d) for n, d in declared["test"].items()}
    if decls.problems:
        return None
    types = {n: CompiledType(n, d.app, type_fields[n], object_types[n]) for n, d in sorted(declared["type"].items())}
    contracts = {
        n: CompiledContract(n, d.app, *(exports(d.decl, kind) for kind in ("type", "event", "action")))
        for n, d in sorted(declared["contract"].items())
    }
    return CompiledWorkspace(
        name=name,
        version=version,
        files=nfiles,
        apps=decls.apps,
        types=types,
        events=events,
        actions={n: a for n, a in sorted(actions.items()) if a is not None},
        goals={n: g for n, g in sorted(goals.items()) if g is not None},
        contracts=contracts,
        policies={n: p for n, p in sorted(policies.items()) if p is not None},
        tests={n: t for n, t in sorted(tests.items()) if t is not None},
    )


__all__ = ["compile_sources"]
