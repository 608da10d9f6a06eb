"""Compile a workspace's ``test`` blocks: givens, simulate, the ``when``, the ``then``\\ s and the ``expect``\\ s.

Besides each clause on its own, what a test expects must be able to happen:
``expect refused [by POLICY]`` speaks of what the test did just before (the
last ``then`` before it, else the ``when``, else the givens) and is refused
here when nothing can refuse that (no policy reads the paths a change sets,
params that match their goal's types, an event append, a ``then advance``);
``by POLICY`` after a ``when goal`` means a step of its goals was refused by
the policy (a submit is refused by the params schema only);
``expect goal GOAL STATUS`` names a goal the test's ``when`` (or a ``then
event``) submits: the ``when goal`` itself, a goal with an ``on event``
trigger for an event the test appends, or a child goal one of those starts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from goalrt.gdl import ast
from goalrt.gdl.ast_steps import ThenAdvance, ThenAnswer, ThenClause, ThenEvent
from goalrt.gdl.compiled import TESTS, CompiledExpect, CompiledGoal, CompiledPolicy, CompiledTest
from goalrt.gdl.declarations import Declarations, Declared
from goalrt.gdl.event_data import data_problems, value_problem
from goalrt.gdl.expressions import Expressions, Scope
from goalrt.gdl.runtime import policy_json
from goalrt.gdl.steps import Steps
from goalrt.planner.values import Scalar

_GOAL_STATUSES = ("complete", "failed", "cancelled", "waiting", "active", "pending")

_When = ast.WhenGoal | ast.WhenEvent | ast.WhenChange


class Cases:
    """Compile tests, recording problems in the workspace's ``Declarations``."""

    def __init__(
        self,
        decls: Declarations,
        exprs: Expressions,
        steps: Steps,
        goal_params: Mapping[str, Mapping[str, str]],
        goals: Mapping[str, CompiledGoal | None],
        policies: Mapping[str, CompiledPolicy | None],
    ) -> None:
        self.decls = decls
        self.exprs = exprs
        self.steps = steps
        self.fail = decls.fail
        self.goal_params = goal_params
        self.goals = {n: g for n, g in goals.items() if g is not None}
        self.policies = {n: p for n, p in policies.items() if p is not None}

    def test(self, d: Declared) -> CompiledTest | None:
        """Return the compiled test (given, simulate, when, then, expect), or None after recording its problems."""
        decl: ast.TestDecl = d.decl
        where = f"test {d.name}"
        before = len(self.decls.problems)
        scope = Scope({}, None, "a test has no parameters; write concrete paths")
        given: dict[str, Scalar] = {}
        simulate: list[str] = []
        expects: list[CompiledExpect] = []
        when: dict[str, Any] | None = None
        then: list[dict[str, Any]] = []
        thens: list[ThenClause] = []
        refusals: list[tuple[ast.ExpectRefused, int]] = []
        goal_expects: list[ast.ExpectGoal] = []
        whens = [c for c in decl.clauses if isinstance(c, _When)]
        for extra in whens[1:]:
            self.fail(extra.pos, f"{where}: a test has one 'when'")
        for clause in decl.clauses:
            if isinstance(clause, ast.Given):
                path = self.exprs.path(clause.path, scope)
                if path.template in given:
                    self.fail(clause.pos, f"{where}: {clause.path.text} is given twice")
                given[path.template] = self._given_value(clause.value, where)
            elif isinstance(clause, ast.Simulate):
                for action in clause.actions:
                    if self.decls.visible("action", action, TESTS) is not None:
                        simulate.append(action.text)
            elif isinstance(clause, _When) and clause is whens[0]:
                when = self._when(clause, where, scope)
            elif isinstance(clause, ThenAnswer | ThenEvent | ThenAdvance):
                if when is None:
                    self.fail(clause.pos, f"{where}: a 'then' comes after the test's 'when'")
                known = len(self.decls.problems)
                then.append(self.steps.then(where, clause))
                thens.append(clause)
                if isinstance(clause, ThenEvent) and len(self.decls.problems) == known:
                    self._event_data(clause.event, then[-1]["data"], clause.pos, where)
            elif isinstance(clause, ast.ExpectEvent):
                self.decls.visible("event", clause.event, TESTS)
                expects.append(CompiledExpect("event", event=clause.event.text, after=len(then)))
            elif isinstance(clause, ast.ExpectGoal):
                goal_expects.append(clause)
                name = clause.goal.text if clause.goal is not None else None
                expects.append(CompiledExpect("goal", status=clause.status, after=len(then), name=name))
            elif isinstance(clause, ast.ExpectRefused):
                refusals.append((clause, len(then)))
                name = clause.policy.text if clause.policy is not None else None
                expects.append(CompiledExpect("refused", after=len(then), name=name))
            elif isinstance(clause, ast.ExpectState):
                condition = self.exprs.cond(clause.condition, scope)
                expects.append(CompiledExpect("state", condition=condition, after=len(then)))
        if not expects:
            self.fail(decl.name.pos, f"{where}: needs at least one 'expect'")
        first = whens[0] if whens else None
        for expect in goal_expects:
            self._expect_goal(expect, first, thens, where)
        seen: set[int] = set()
        for refused, after in refusals:
            if after in seen:
                self.fail(refused.pos, f"{where}: {_act(first, thens, after)} is expected refused twice")
            seen.add(after)
            self._expect_refused(refused, after, first, thens, given, when, where)
        if len(self.decls.problems) > before:
            return None
        return CompiledTest(
            d.name,
            tuple(given.items()),
            tuple(sorted(set(simulate))),
            when,
            tuple(expects),
            f"{decl.pos.file}:{decl.pos.line}",
            tuple(then),
        )

    # -- when ------------------------------------------------------------------------------

    def _when(self, clause: _When, where: str, scope: Scope) -> dict[str, Any]:
        if isinstance(clause, ast.WhenGoal):
            goal = self.decls.visible("goal", clause.goal, TESTS)
            params = dict(self.goal_params.get(clause.goal.text, {})) if goal else None
            args = self._args(clause.args, params, where)
            for param in params or {}:
                if param not in args:
                    self.fail(clause.pos, f"{where}: goal {clause.goal.text} needs parameter {param}")
            return {"goal": clause.goal.text, "params": args}
        if isinstance(clause, ast.WhenEvent):
            event = self.decls.visible("event", clause.event, TESTS)
            fields = dict(self.decls.event_fields(event)) if event is not None else None
            known = len(self.decls.problems)
            data = self._args(clause.data, fields, where)
            if len(self.decls.problems) == known:
                self._event_data(clause.event, data, clause.pos, where)
            return {"event": clause.event.text, "data": data}
        changes: dict[str, Scalar] = {}
        for change in clause.changes:
            path = self.exprs.path(change.name, scope)
            if path.template in changes:
                self.fail(change.name.pos, f"{where}: when change: {change.name.text} is set twice")
            changes[path.template] = self._given_value(change.value, where)
        if not changes:
            self.fail(clause.pos, f"{where}: when change needs at least one PATH = VALUE")
        return {"change": changes}

    def _event_data(self, event: ast.Name, data: Mapping[str, Any], pos: ast.Pos, where: str) -> None:
        """Record each way ``data`` does not match the event's declaration (a missing field, a wrong type)."""
        declared = self.decls.declared["event"].get(event.text)
        if declared is None:
            return
        for problem in data_problems(dict(self.decls.event_fields(declared)), data):
            self.fail(pos, f"{where}: event {event.text}: {problem}")

    # -- expect goal -----------------------------------------------------------------------

    def _expect_goal(self, clause: ast.ExpectGoal, when: _When | None, thens: Sequence[ThenClause], where: str) -> None:
        if clause.status not in _GOAL_STATUSES:
            self.fail(
                clause.pos,
                f"{where}: expect goal: {clause.status!r} is not a goal status (expected: {', '.join(_GOAL_STATUSES)})",
            )
        if not isinstance(when, ast.WhenGoal | ast.WhenEvent):
            self.fail(clause.pos, f"{where}: 'expect goal' needs a 'when goal' or a 'when event'")
            return
        if clause.goal is None or self.decls.visible("goal", clause.goal, TESTS) is None:
            return
        events = [t.event.text for t in thens if isinstance(t, ThenEvent)]
        starts = [when.goal.text] if isinstance(when, ast.WhenGoal) else []
        events += [when.event.text] if isinstance(when, ast.WhenEvent) else []
        starts += [n for n, g in sorted(self.goals.items()) if any(t.event in events for t in g.triggers)]
        if clause.goal.text not in _reachable(starts, ((g, c) for g, c, _ in self.steps.starts)):
            whence = f"goal {when.goal.text}" if isinstance(when, ast.WhenGoal) else f"event {when.event.text}"
            triggered = f"; the test's events submit {', '.join(starts)}" if starts and events else ""
            self.fail(
                clause.goal.pos,
                f"{where}: expect goal {clause.goal.text}: nothing in this test submits it (the when is "
                f"{whence}{triggered}, with their child goals)",
            )

    # -- expect refused --------------------------------------------------------------------

    def _expect_refused(
        self,
        clause: ast.ExpectRefused,
        after: int,
        when: _When | None,
        thens: Sequence[ThenClause],
        given: Mapping[str, Scalar],
        compiled_when: Mapping[str, Any] | None,
        where: str,
    ) -> None:
        """Record why nothing can refuse what ``clause`` speaks of (or an unknown policy)."""
        by = clause.policy
        if by is not None and self.decls.visible("policy", by, TESTS) is None:
            return
        act = _act(when, thens, after)
        pos = clause.pos
        if after:
            then = thens[after - 1]
            if isinstance(then, ThenAnswer):
                if by is not None:
                    self.fail(by.pos, f"{where}: {act} is refused by the ask's answer schema, never by a policy")
                return
            self.fail(pos, f"{where}: nothing can refuse {act}: only an answer or a change of state is refused")
            return
        if isinstance(when, ast.WhenEvent):
            self.fail(
                pos,
                f"{where}: nothing can refuse {act}: an event is appended as declared (its data is checked here)",
            )
            return
        if isinstance(when, ast.WhenGoal):
            if by is not None:
                return  # a step of the goals refused by the policy (its action's result broke it): checked at run time
            params = self.goal_params.get(when.goal.text, {})
            args = dict((compiled_when or {}).get("params") or {})
            if params and all(value_problem(v, params[k]) is None for k, v in args.items() if k in params):
                self.fail(
                    pos, f"{where}: nothing can refuse {act}: its params match goal {when.goal.text}'s parameter types"
                )
            return
        paths = sorted((compiled_when or {}).get("change") or given) if when is not None else sorted(given)
        if not paths:
            self.fail(pos, f"{where}: nothing to refuse: the test has no given, when or then before this expect")
            return
        readers = [n for n, p in sorted(self.policies.items()) if any(_reads(p, path) for path in paths)]
        shown = ", ".join(paths)
        if by is None and not readers:
            self.fail(pos, f"{where}: nothing can refuse {act}: no policy reads {shown}")
        elif by is not None and by.text not in readers:
            self.fail(by.pos, f"{where}: policy {by.text} reads none of {shown}: it cannot refuse {act}")

    # -- values ----------------------------------------------------------------------------

    def _given_value(self, term: ast.Term, where: str) -> Scalar:
        if isinstance(term, ast.Name):
            self.fail(term.pos, f"{where}: a value must be a constant, not {term.text}")
            return None
        return self.exprs.const(term).value

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


def _act(when: _When | None, thens: Sequence[ThenClause], after: int) -> str:
    """Name what a test did at ``after`` (0: its when, or its givens), for messages."""
    if after:
        then = thens[after - 1]
        kind = {ThenAnswer: "answer", ThenEvent: "event", ThenAdvance: "advance"}[type(then)]
        return f"'then {kind}'"
    if isinstance(when, ast.WhenGoal):
        return f"'when goal {when.goal.text}'"
    if isinstance(when, ast.WhenEvent):
        return f"'when event {when.event.text}'"
    return "'when change'" if when is not None else "the givens"


def _reads(policy: CompiledPolicy, path: str) -> bool:
    """Return whether a change of ``path`` makes the database check ``policy``: the regexes it installs."""
    return any(re.search(read["regex"], path) for read in policy_json(policy)["reads"])


def _reachable(starts: Iterable[str], edges: Iterable[tuple[str, str]]) -> set[str]:
    """Return ``starts`` and every goal their child goals reach."""
    children: dict[str, set[str]] = {}
    for goal, child in edges:
        children.setdefault(goal, set()).add(child)
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        goal = todo.pop()
        if goal not in seen:
            seen.add(goal)
            todo.extend(children.get(goal, ()))
    return seen


__all__ = ["Cases"]
