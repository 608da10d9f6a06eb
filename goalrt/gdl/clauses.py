"""Compile each action, goal and policy of a workspace from its clauses (tests: ``cases``).

Each method checks one declaration's clauses (each option at most once, in
range), compiles its conditions through ``Expressions`` and returns what the
runtime runs, or None after recording why it cannot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from goalrt.errors import ConfigError, PlanningError
from goalrt.gdl import ast
from goalrt.gdl.ast_steps import Emit, StepsClause
from goalrt.gdl.calls import Calls, Contract
from goalrt.gdl.compiled import (
    CompiledAction,
    CompiledGoal,
    CompiledPolicy,
    CompiledSchedule,
    CompiledTrigger,
)
from goalrt.gdl.declarations import ACTION_NAME, Declarations, Declared
from goalrt.gdl.expressions import Expressions, Scope
from goalrt.gdl.satisfiability import never_holds
from goalrt.gdl.schedule_clause import compile_schedule
from goalrt.gdl.steps import Steps
from goalrt.goals.conditions import Achieve
from goalrt.goals.retry import Retry
from goalrt.planner import ActionSchema, And, Condition, Delete, Effect, Increment, ObjectType, Set
from goalrt.planner.conditions import bind
from goalrt.planner.values import Scalar


class Clauses:
    """Compile declarations' clauses, recording problems in the workspace's ``Declarations``."""

    def __init__(
        self, decls: Declarations, exprs: Expressions, steps: Steps, contracts: Mapping[str, Contract]
    ) -> None:
        self.decls = decls
        self.exprs = exprs
        self.steps = steps
        self.fail = decls.fail
        # Schedule name -> where it is declared: names are unique across the workspace.
        self.schedules_seen: dict[str, ast.Pos] = {}
        self.calls = Calls(decls.fail, contracts)

    def once(self, clauses: Sequence[Any], kinds: tuple[type, ...], where: str, word: str) -> Any:
        """Return the one clause of ``kinds`` (or None), recording each repeat as a problem."""
        found: list[Any] = [c for c in clauses if isinstance(c, kinds)]
        for extra in found[1:]:
            self.fail(extra.pos, f"{where}: {word} is given twice")
        return found[0] if found else None

    def integer(self, literal: ast.Literal, where: str, minimum: int) -> int:
        """Return the literal as an int >= ``minimum``, or record why it is not and return ``minimum``."""
        value = literal.value
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.fail(literal.pos, f"{where} must be an integer >= {minimum}, got {literal.value!r}")
            return minimum
        return value

    def never(self, condition: Condition, pos: ast.Pos, message: str) -> None:
        """Record ``message`` at ``pos`` when ``condition`` can hold in no state."""
        # Called only on declarations without other problems, so the condition is the one written.
        if never_holds(condition):
            self.fail(pos, message)

    # -- actions ---------------------------------------------------------------------------

    def action(self, d: Declared, params: Mapping[str, str]) -> CompiledAction | None:
        """Return the compiled action, or None after recording its problems."""
        decl: ast.ActionDecl = d.decl
        where = f"action {d.name}"
        before = len(self.decls.problems)
        scope = Scope(params)
        requires = [c for c in decl.clauses if isinstance(c, ast.Require)]
        pre_parts = [self.exprs.cond(r.condition, scope) for r in requires]
        pre = pre_parts[0] if len(pre_parts) == 1 else And(*pre_parts)
        effects: list[Effect] = []
        written: dict[str, ast.Pos] = {}
        for clause in decl.clauses:
            if not isinstance(clause, ast.SetEffect | ast.IncEffect | ast.DeleteEffect):
                continue
            path = self.exprs.path(clause.path, scope)
            if path.template in written:
                first = written[path.template]
                self.fail(clause.pos, f"{where}: {clause.path.text} is changed twice (first at {first})")
                continue
            written[path.template] = clause.pos
            try:
                if isinstance(clause, ast.SetEffect):
                    effects.append(
                        Set(path, self.exprs.value(clause.value, scope, f"{where}: effect {clause.path.text}"))
                    )
                elif isinstance(clause, ast.IncEffect):
                    effects.append(Increment(path, clause.by.value))
                else:
                    effects.append(Delete(path))
            except PlanningError as exc:
                self.fail(clause.pos, f"{where}: {exc}")
        cost_clause = self.once(decl.clauses, (ast.Cost,), where, "cost")
        cost: float = 1
        if cost_clause is not None:
            value = cost_clause.value.value
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
                self.fail(cost_clause.value.pos, f"{where}: cost must be a number >= 0, got {value!r}")
            else:
                cost = value
        retry = Retry()
        retry_clause = self.once(decl.clauses, (ast.RetryClause,), where, "retry")
        if retry_clause is not None:
            attempts = self.integer(retry_clause.attempts, f"{where}: retry", 1)
            delay = retry_clause.delay.seconds if retry_clause.delay is not None else Retry().backoff
            factor = 1.0 if retry_clause.backoff == "fixed" else Retry().factor
            try:
                retry = Retry(max_attempts=attempts, backoff=delay, factor=factor, max_backoff=max(delay, 300.0))
            except ConfigError as exc:
                self.fail(retry_clause.pos, f"{where}: {exc}")
        timeout_clause = self.once(decl.clauses, (ast.Timeout,), where, "timeout")
        timeout = None
        if timeout_clause is not None:
            timeout = timeout_clause.duration.seconds
            if timeout <= 0:
                self.fail(timeout_clause.duration.pos, f"{where}: timeout must be longer than 0s")
        concurrency_clause = self.once(decl.clauses, (ast.Concurrency,), where, "concurrency")
        concurrency = None
        if concurrency_clause is not None:
            concurrency = self.integer(concurrency_clause.value, f"{where}: concurrency", 1)
        rate_clause = self.once(decl.clauses, (ast.Rate,), where, "rate")
        rate = None
        if rate_clause is not None:
            count = self.integer(rate_clause.count, f"{where}: rate", 1)
            if rate_clause.per.seconds <= 0:
                self.fail(rate_clause.per.pos, f"{where}: rate needs a period longer than 0s")
            rate = (count, rate_clause.per.seconds)
        handler_clause = self.once(decl.clauses, (ast.Handler,), where, "handler")
        handler = d.name
        if handler_clause is not None:
            handler = handler_clause.name.text
            if not ACTION_NAME.fullmatch(handler):
                self.fail(handler_clause.name.pos, f"{where}: invalid handler name {handler!r}")
        pure_clause = self.once(decl.clauses, (ast.Pure,), where, "pure")
        if pure_clause is not None and handler_clause is not None:
            self.fail(pure_clause.pos, f"{where}: a pure action runs no handler; give pure or handler, not both")
        elif pure_clause is not None and not any(
            isinstance(c, ast.SetEffect | ast.IncEffect | ast.DeleteEffect | Emit) for c in decl.clauses
        ):
            self.fail(pure_clause.pos, f"{where}: a pure action is its effects and emits alone, and it has none")
        emit = self.steps.emits(d.name, d.app, decl.clauses, params)
        with_clause = self.once(decl.clauses, (ast.WithArgs,), where, "with")
        call = self.calls.compile(where, handler_clause, with_clause, params)
        if len(self.decls.problems) > before:
            return None
        try:
            schema = ActionSchema(d.name, params, pre, effects, cost)
        except PlanningError as exc:
            self.fail(decl.pos, str(exc))
            return None
        if requires:
            self.never(pre, requires[0].pos, f"{where} can never run: its require conditions can never all hold")
        return CompiledAction(
            d.name,
            d.app,
            schema,
            handler,
            timeout,
            retry,
            concurrency,
            rate,
            pure_clause is not None,
            call,
            tuple(emit),
        )

    # -- goals -----------------------------------------------------------------------------

    def goal(
        self,
        d: Declared,
        params: Mapping[str, str],
        actions: Mapping[str, CompiledAction | None],
        object_types: Mapping[str, ObjectType],
    ) -> CompiledGoal | None:
        """Return the compiled goal (its ``Achieve``, actions and triggers), or None after recording its problems."""
        decl: ast.GoalDecl = d.decl
        where = f"goal {d.name}"
        before = len(self.decls.problems)
        scope = Scope(params)
        achieves = [c for c in decl.clauses if isinstance(c, ast.AchieveClause)]
        listed = self.once(decl.clauses, (StepsClause,), where, "steps")
        if listed is not None:
            return self._steps_goal(d, listed, params)
        if not achieves:
            self.fail(decl.name.pos, f"{where}: needs an 'achieve' or a 'maintain' condition, or its 'steps'")
            return None
        if len({a.maintain for a in achieves}) > 1:
            self.fail(achieves[1].pos, f"{where}: use either 'achieve' or 'maintain', not both")
        parts = [self.exprs.cond(a.condition, scope) for a in achieves]
        condition = parts[0] if len(parts) == 1 else And(*parts)
        priority, deadline = self._goal_options(d)
        replans_clause = self.once(decl.clauses, (ast.MaxReplans,), where, "max_replans")
        max_replans = 3 if replans_clause is None else self.integer(replans_clause.value, f"{where}: max_replans", 0)
        uses = self.once(decl.clauses, (ast.Uses,), where, "actions")
        if uses is not None:
            chosen = []
            for action in uses.actions:
                if self.decls.visible("action", action, d.app) is not None:
                    chosen.append(action.text)
            names = tuple(sorted(set(chosen)))
        else:
            names = tuple(
                sorted(n for n, a in self.decls.declared["action"].items() if self.decls.may_use(d.app, "action", a))
            )
        triggers, schedules = self._starts(d, params)
        if len(self.decls.problems) > before:
            return None
        self.never(condition, achieves[0].pos, f"{where} can never be reached: its condition can never hold")
        used_types = set(params.values())
        for n in names:
            schema = actions.get(n)
            if schema is not None:
                used_types.update(t for _, t in schema.schema.params)
        types = tuple(object_types[t] for t in sorted(used_types) if t in object_types)
        param_types = {p: t for p, t in params.items() if t in object_types}
        achieve = Achieve(condition, types, {}, param_types, max_replans, maintain=achieves[0].maintain)
        return CompiledGoal(
            d.name, d.app, tuple(params.items()), achieve, names, priority, deadline, triggers, schedules
        )

    def _steps_goal(self, d: Declared, listed: StepsClause, params: Mapping[str, str]) -> CompiledGoal | None:
        """Return a goal that lists its steps; planning clauses do not apply to it."""
        where = f"goal {d.name}"
        before = len(self.decls.problems)
        planning = {ast.AchieveClause: "achieve", ast.Uses: "actions", ast.MaxReplans: "max_replans"}
        for clause in d.decl.clauses:
            word = planning.get(type(clause))
            if word == "achieve" and clause.maintain:
                word = "maintain"
            if word is not None:
                self.fail(clause.pos, f"{where}: a goal with steps is not planned; '{word}' does not apply to it")
        steps = self.steps.goal_steps(d.name, d.app, listed, params)
        priority, deadline = self._goal_options(d)
        triggers, schedules = self._starts(d, params)
        if len(self.decls.problems) > before:
            return None
        return CompiledGoal(
            d.name, d.app, tuple(params.items()), None, (), priority, deadline, triggers, schedules, tuple(steps)
        )

    def _goal_options(self, d: Declared) -> tuple[int, float | None]:
        """Return a goal's priority and deadline (seconds after the submit)."""
        where = f"goal {d.name}"
        priority_clause = self.once(d.decl.clauses, (ast.Priority,), where, "priority")
        priority = 0
        if priority_clause is not None:
            priority = self.integer(priority_clause.value, f"{where}: priority", -(2**31))
        deadline_clause = self.once(d.decl.clauses, (ast.Deadline,), where, "deadline")
        deadline = None
        if deadline_clause is not None:
            deadline = deadline_clause.duration.seconds
            if deadline <= 0:
                self.fail(deadline_clause.duration.pos, f"{where}: deadline must be longer than 0s")
        return priority, deadline

    def _starts(
        self, d: Declared, params: Mapping[str, str]
    ) -> tuple[tuple[CompiledTrigger, ...], tuple[CompiledSchedule, ...]]:
        """Return what starts a goal: its event triggers and its schedules."""
        compiled = [self.trigger(d, t, params) for t in d.decl.clauses if isinstance(t, ast.Trigger)]
        timed = [self.schedule(d, c, params) for c in d.decl.clauses if isinstance(c, ast.ScheduleClause)]
        return tuple(t for t in compiled if t is not None), tuple(s for s in timed if s is not None)

    def schedule(self, d: Declared, clause: ast.ScheduleClause, params: Mapping[str, str]) -> CompiledSchedule | None:
        """Return the schedule that submits goal ``d`` at each tick (``goalrt.gdl.schedule_clause``)."""
        return compile_schedule(self, d, clause, params)

    def trigger(self, d: Declared, trigger: ast.Trigger, params: Mapping[str, str]) -> CompiledTrigger | None:
        """Return the trigger that starts goal ``d`` on an event, its parameters bound to fields or constants."""
        where = f"goal {d.name}: trigger on {trigger.event.text}"
        event = self.decls.visible("event", trigger.event, d.app)
        fields = dict(self.decls.event_fields(event)) if event is not None else {}
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
                bound[param] = ("value", self.exprs.const(binding.value).value)
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

    # -- policies --------------------------------------------------------------------------

    def policy(self, d: Declared) -> CompiledPolicy | None:
        """Return the compiled policy (its ``*`` segments as variables), or None after recording its problems."""
        decl: ast.PolicyDecl = d.decl
        before = len(self.decls.problems)
        if not decl.conditions:
            self.fail(decl.name.pos, f"policy {d.name}: needs at least one 'require' condition")
            return None
        wildcards: dict[str, str] = {}
        scope = Scope({}, wildcards, "a policy has no parameters; use * for every key")
        parts = [self.exprs.cond(c, scope) for c in decl.conditions]
        if len(self.decls.problems) > before:
            return None
        condition = parts[0] if len(parts) == 1 else And(*parts)
        # The same key for every wildcard: if the policy cannot hold for one key, it cannot hold for any.
        ground = _bind_wildcards(condition, wildcards)
        if never_holds(ground):
            self.fail(decl.conditions[0].pos, f"policy {d.name} can never hold: no state satisfies its conditions")
            return None
        return CompiledPolicy(d.name, d.app, condition, tuple(sorted((v, p) for p, v in wildcards.items())))


def _bind_wildcards(condition: Condition, wildcards: Mapping[str, str]) -> Condition:
    """Return the condition with each wildcard variable replaced by one fixed key (``_1`` -> ``_1``)."""
    return bind(condition, {var: var for var in wildcards.values()})


__all__ = ["Clauses"]
