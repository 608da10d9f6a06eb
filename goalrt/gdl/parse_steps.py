"""Build the nodes of ``goalrt.gdl.ast_steps`` from lark's tree: steps, their options, emits, a test's thens.

A mixin of the parser's builder (``goalrt.gdl.parser``), which gives it
``_name``, ``_literal``, ``_duration``, ``_pos`` and ``_at``.
"""

from __future__ import annotations

from typing import Any

from lark import Token, Transformer, v_args

from goalrt.gdl import ast
from goalrt.gdl.ast_steps import (
    ActionStep,
    AnswerField,
    AskStep,
    ChildGoal,
    ChildrenStep,
    Emit,
    SleepStep,
    StepOption,
    StepsClause,
    ThenAdvance,
    ThenAnswer,
    ThenEvent,
    WaitStep,
)


@v_args(meta=True)
class StepsBuilder(Transformer[Token, Any]):
    """The builder's methods for steps, emits and then-clauses."""

    # Given by the parser's builder.
    def _pos(self, meta: Any) -> ast.Pos:
        raise NotImplementedError

    def _at(self, token: Token) -> ast.Pos:
        raise NotImplementedError

    def _name(self, token: Token) -> ast.Name:
        raise NotImplementedError

    def _literal(self, token: Token) -> ast.Literal:
        raise NotImplementedError

    def _duration(self, token: Token) -> ast.Duration:
        raise NotImplementedError

    @staticmethod
    def _split(items: list[Any]) -> tuple[tuple[ast.Binding, ...], tuple[StepOption, ...]]:
        args = tuple(i for i in items if isinstance(i, ast.Binding))
        options = tuple(i for i in items if isinstance(i, StepOption))
        return args, options

    def steps(self, meta: Any, items: list[Any]) -> StepsClause:
        return StepsClause(tuple(items), self._pos(meta))

    def action_step(self, meta: Any, items: list[Any]) -> ActionStep:
        args, options = self._split(items[1:])
        return ActionStep(self._name(items[0]), args, options, self._pos(meta))

    def wait_step(self, meta: Any, items: list[Any]) -> WaitStep:
        return WaitStep(self._name(items[0]), tuple(items[1:]), self._pos(meta))

    def sleep_step(self, meta: Any, items: list[Any]) -> SleepStep:
        return SleepStep(self._duration(items[0]), tuple(items[1:]), self._pos(meta))

    def ask_step(self, meta: Any, items: list[Any]) -> AskStep:
        return AskStep(self._literal(items[0]), tuple(items[1:]), self._pos(meta))

    def child(self, meta: Any, items: list[Any]) -> ChildGoal:
        return ChildGoal(self._name(items[0]), tuple(i for i in items[1:] if i is not None), self._pos(meta))

    def children_step(self, meta: Any, items: list[Any]) -> ChildrenStep:
        goals = tuple(i for i in items[1:] if isinstance(i, ChildGoal))
        options = tuple(i for i in items[1:] if isinstance(i, StepOption))
        return ChildrenStep(str(items[0]), goals, options, self._pos(meta))

    def step_where(self, meta: Any, items: list[ast.Binding]) -> StepOption:
        return StepOption("where", tuple(items), self._pos(meta))

    def step_since(self, meta: Any, items: list[Token]) -> StepOption:
        return StepOption("since", str(items[0]), self._pos(meta))

    def step_answer(self, meta: Any, items: list[AnswerField]) -> StepOption:
        return StepOption("answer", tuple(items), self._pos(meta))

    def answer_field(self, meta: Any, items: list[Any]) -> AnswerField:
        # `OPTIONAL?` leaves no placeholder: [name, type] or [name, "?", type].
        return AnswerField(self._name(items[0]), self._name(items[-1]), len(items) == 3, self._pos(meta))

    def step_timeout(self, meta: Any, items: list[Token]) -> StepOption:
        return StepOption("timeout", self._duration(items[0]), self._pos(meta))

    def step_on_timeout(self, meta: Any, items: list[Any]) -> StepOption:
        return StepOption("on_timeout", tuple(items), self._pos(meta))

    def step_on_failure(self, meta: Any, items: list[Token]) -> StepOption:
        return StepOption("on_failure", str(items[0]), self._pos(meta))

    def step_label(self, meta: Any, items: list[Token]) -> StepOption:
        return StepOption("label", self._name(items[0]), self._pos(meta))

    def emit(self, meta: Any, items: list[Any]) -> Emit:
        return Emit(self._name(items[0]), tuple(i for i in items[1:] if i is not None), self._pos(meta))

    def then_answer(self, meta: Any, items: list[Any]) -> ThenAnswer:
        goal = self._name(items[0]) if isinstance(items[0], Token) else None
        return ThenAnswer(goal, tuple(i for i in items if isinstance(i, ast.Binding)), self._pos(meta))

    def then_event(self, meta: Any, items: list[Any]) -> ThenEvent:
        return ThenEvent(self._name(items[0]), tuple(items[1:]), self._pos(meta))

    def then_advance(self, meta: Any, items: list[Token]) -> ThenAdvance:
        return ThenAdvance(self._duration(items[0]), self._pos(meta))


__all__ = ["StepsBuilder"]
