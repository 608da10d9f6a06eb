"""Register action handlers and goal types in Python.

    import goalrt
    from pydantic import BaseModel

    @goalrt.action("payment.charge", timeout=30, retry=goalrt.Retry(max_attempts=5), concurrency=4)
    async def charge(args, ctx):
        await payments.charge(args["order"], args["amount"], idempotency_key=ctx.idempotency_key)
        return goalrt.Result({"charged": args["amount"]},
                             changes=[goalrt.Change.set(f"orders.{args['order']}.status", "paid")])

    class Checkout(BaseModel):
        order: str
        amount: float

    @goalrt.goal("checkout", params=Checkout)
    def checkout(p: Checkout):
        return [goalrt.Step("payment.charge", {"order": p.order, "amount": p.amount}),
                goalrt.Step("order.ship", {"order": p.order})]

A handler takes ``(args, ctx)``: the step's arguments (a dict) and an
``ActionContext`` (goal id, step, attempt, idempotency key, state reads, a
logger). It may be ``async def`` or a plain function (run in a thread pool).
A goal type's function turns validated params into the goal's steps; the
worker calls it when it first takes the goal (the planner issue adds goals
declared by conditions instead).

Decorators register into ``default_registry`` unless given another one;
``goalrt worker --handlers MODULE`` imports modules that do so.

This module imports neither pydantic nor the planner (with lark) to load:
``goalrt submit`` needs the registry but neither of them. A method that needs
one imports it when it runs: a pydantic model given as params has loaded
pydantic already, and the planner loads with the first action or goal type
that declares conditions (tests/unit/test_cli_imports.py).
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from goalrt.db.jsontext import check
from goalrt.errors import ConfigError, InvalidGoalError
from goalrt.goals.retry import Retry

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

    from goalrt.goals.conditions import Achieve
    from goalrt.planner import ActionSchema, Budget, Condition, Effect, ObjectType
    from goalrt.state.model import Change

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$")


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a goal's plan: an action and its arguments (JSON).

    ``kind`` is "action" for a handler to run; the waits of ``goalrt.waits``
    (event, sleep, ask, children) are steps too, run by the database.
    ``label`` names the step's result for later steps (``ctx.results()``).
    """

    action: str
    args: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "action"
    label: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "args": dict(self.args)}
        if self.kind != "action":
            out["kind"] = self.kind
        if self.label is not None:
            out["label"] = self.label
        return out

    def actions(self) -> list[str]:
        """Return the action names this step may run (itself, or its on_timeout fallback)."""
        if self.kind == "action":
            return [self.action]
        fallback = self.args.get("on_timeout") or []
        return [s["action"] for s in fallback if s.get("kind", "action") == "action"]


@dataclass(frozen=True, slots=True)
class Result:
    """What a handler may return instead of a bare value: the value plus state changes and events.

    The changes and events are committed with the step's completion, in one
    transaction, only if the worker still holds the goal's lease.
    """

    value: Any = None
    changes: Sequence[Change | Mapping[str, Any]] = ()
    events: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True, slots=True)
class Action:
    """A registered action handler and how to run it.

    ``fn`` is None for an action a worker knows (from GDL, to plan with) but
    cannot run: it has no handler for it. Actions registered in Python always
    have their function.
    """

    name: str
    fn: Callable[..., Any] | None
    timeout: float | None = None
    retry: Retry = field(default_factory=Retry)
    concurrency: int | None = None
    # For the planner: parameters, precondition, effects and cost (None: not plannable).
    schema: ActionSchema | None = None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    @property
    def runnable(self) -> bool:
        """Whether a worker with this registry can run the action (it has a handler, or the action is pure)."""
        return self.fn is not None


@dataclass(frozen=True, slots=True)
class GoalType:
    """A goal type: its parameters (a pydantic model) and the function that gives its steps."""

    name: str
    steps: Callable[[Any], Iterable[Step | tuple[str, Mapping[str, Any]]]]
    params: type[BaseModel] | None = None
    # A goal declared by a condition: the planner gives its steps.
    achieve: Achieve | None = None

    def params_schema(self) -> dict[str, Any]:
        """Return the JSON Schema of the params (stored in goalrt.goal_types for SQL-side checks)."""
        if self.params is None:
            return {"type": "object"}
        schema = self.params.model_json_schema()
        if self.params.model_config.get("extra") != "allow":
            schema["additionalProperties"] = False
        return schema

    def validate(self, params: Mapping[str, Any] | None) -> Any:
        """Return the validated params (a model instance, or the dict when the type has no model).

        Raises ``InvalidGoalError`` naming the first bad field (``params.amount: ...``).
        """
        data = dict(params or {})
        if self.params is None:
            return data
        from pydantic import ValidationError

        allowed = set(self.params.model_fields)
        if self.params.model_config.get("extra") != "allow":
            unknown = sorted(set(data) - allowed)
            if unknown:
                raise InvalidGoalError(
                    f"invalid params for goal {self.name}: params.{unknown[0]} is not a parameter "
                    f"(expected: {', '.join(sorted(allowed)) or 'none'})"
                )
        try:
            return self.params.model_validate(data)
        except ValidationError as exc:
            raise InvalidGoalError(f"invalid params for goal {self.name}: {describe_validation_error(exc)}") from None

    def normalized(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Return params validated and as JSON (defaults filled in), ready to submit."""
        value = self.validate(params)
        if self.params is None:
            return dict(value)
        from pydantic import BaseModel

        return value.model_dump(mode="json") if isinstance(value, BaseModel) else dict(value)

    def plan(self, params: Mapping[str, Any]) -> list[Step]:
        """Return the steps for ``params`` (validated first)."""
        out = []
        for item in self.steps(self.validate(params)) or ():
            if isinstance(item, Step):
                out.append(item)
            elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                out.append(Step(item[0], dict(item[1])))
            else:
                raise ConfigError(f"goal {self.name}: a step must be goalrt.Step(action, args), got {item!r}")
        return out


def describe_validation_error(exc: ValidationError) -> str:
    """Return pydantic's first error as ``params.field: message``."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"params.{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid"))


class Registry:
    """Action handlers and goal types by name (an explicit dict each, no hidden globals but the default)."""

    def __init__(self) -> None:
        self.actions: dict[str, Action] = {}
        self.goal_types: dict[str, GoalType] = {}

    def runnable_actions(self) -> list[str]:
        """Return the names of the actions this registry can run, sorted (what a worker registers)."""
        return sorted(name for name, action in self.actions.items() if action.runnable)

    def copy(self) -> Registry:
        """Return a new registry holding the same actions and goal types (to add to or replace in)."""
        out = Registry()
        out.actions.update(self.actions)
        out.goal_types.update(self.goal_types)
        return out

    def add_action(self, action: Action) -> Action:
        _check_name("action", action.name)
        if action.name in self.actions and self.actions[action.name].fn is not action.fn:
            raise ConfigError(f"action {action.name!r} is registered twice")
        self.actions[action.name] = action
        return action

    def add_goal_type(self, goal_type: GoalType) -> GoalType:
        _check_name("goal type", goal_type.name)
        if goal_type.name in self.goal_types and self.goal_types[goal_type.name].steps is not goal_type.steps:
            raise ConfigError(f"goal type {goal_type.name!r} is registered twice")
        self.goal_types[goal_type.name] = goal_type
        return goal_type

    def action(
        self,
        name: str,
        *,
        timeout: float | None = None,
        retry: Retry | int | None = None,
        concurrency: int | None = None,
        params: Mapping[str, str] | None = None,
        pre: Condition | str | None = None,
        effects: Iterable[Effect] = (),
        cost: float | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register an action handler; with params/pre/effects/cost the planner may use it.

        ``params`` maps each argument to its object type, ``pre`` is the
        condition it needs (a condition or its text), ``effects`` what it
        changes (applied with its completion) and ``cost`` its cost (default 1).
        """
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"action {name}: timeout must be > 0 seconds")
        if concurrency is not None and concurrency < 1:
            raise ConfigError(f"action {name}: concurrency must be >= 1")
        policy = Retry.of(retry)
        effects = tuple(effects)
        schema = None
        if params is not None or pre is not None or effects or cost is not None:
            from goalrt.goals.conditions import action_schema

            schema = action_schema(name, params, pre, effects, cost)

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.add_action(Action(name, fn, timeout, policy, concurrency, schema))
            return fn

        return register

    def goal(
        self, name: str, *, params: type[BaseModel] | None = None
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        _check_params_model(name, params)

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.add_goal_type(GoalType(name, fn, params))
            return fn

        return register

    def achieve(
        self,
        name: str,
        condition: Condition | str,
        *,
        params: type[BaseModel] | None = None,
        types: Iterable[ObjectType] = (),
        objects: Mapping[str, Sequence[str]] | None = None,
        param_types: Mapping[str, str] | None = None,
        max_replans: int = 3,
        budget: Budget | None = None,
        maintain: bool = False,
    ) -> GoalType:
        """Register a goal type declared by the condition it must reach; the planner finds its steps.

        ``{param}`` in the condition is the goal's param; ``param_types`` makes
        a param's value an object of a type; ``types`` say where objects come
        from (``ObjectType("Order", keys_under="orders")``). With ``maintain``
        the goal keeps the condition true: once reached it waits for a change
        of the paths the condition reads and acts again when it breaks; it
        never completes (cancel it to stop).
        """
        _check_params_model(name, params)
        if max_replans < 0:
            raise ConfigError(f"goal {name}: max_replans must be >= 0")
        from goalrt.goals.conditions import Achieve, condition_of
        from goalrt.planner import Budget

        spec = Achieve(
            condition_of(condition, f"goal {name}"),
            tuple(types),
            dict(objects or {}),
            dict(param_types or {}),
            max_replans,
            budget or Budget(max_expansions=100_000),
            maintain,
        )
        return self.add_goal_type(GoalType(name, planned_steps(name), params, spec))

    def load(self, modules: Iterable[str]) -> None:
        """Import handler modules (which register into this registry when it is the default)."""
        import_modules(modules)


def planned_steps(name: str) -> Callable[[Any], list[Step]]:
    def steps(_params: Any) -> list[Step]:
        raise ConfigError(f"goal {name} is planned from its condition, not listed")

    return steps


def _check_params_model(name: str, params: object) -> None:
    """Raise ``ConfigError`` unless ``params`` is None or a pydantic model class."""
    if params is None:
        return
    from pydantic import BaseModel

    if not (isinstance(params, type) and issubclass(params, BaseModel)):
        raise ConfigError(f"goal {name}: params must be a pydantic model class")


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(f"invalid {kind} name {name!r}: use letters, digits, _ . : - (starting with a letter or _)")


def import_modules(modules: Iterable[str], first: str | os.PathLike[str] | None = None) -> None:
    """Import modules by dotted name, from the current directory too (like ``python -m``).

    ``first`` is a folder searched before any other (a workspace's root).
    """
    for folder in (os.getcwd(), *(() if first is None else (os.fspath(first),))):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    for module in modules:
        for name in (part.strip() for part in module.split(",")):
            if not name:
                continue
            try:
                importlib.import_module(name)
            except ImportError as exc:
                raise ConfigError(f"cannot import handlers module {name!r}: {exc}") from exc


def check_json(value: Any, what: str) -> None:
    """Raise ``TypeError``/``ValueError`` naming ``what`` unless ``value`` is strict JSON."""
    try:
        check(value)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{what} is not JSON: {exc}") from None


default_registry = Registry()
action = default_registry.action
goal = default_registry.goal
achieve = default_registry.achieve

__all__ = [
    "Action",
    "GoalType",
    "Registry",
    "Result",
    "Step",
    "achieve",
    "action",
    "default_registry",
    "goal",
    "import_modules",
    "planned_steps",
]
