"""Parse GDL source into the syntax tree of ``goalrt.gdl.ast``.

The grammar is ``grammar.lark`` next to this module (shipped in the package).
A source that does not parse raises ``GdlSyntaxError`` with one problem:
``file:line:column: unexpected ...; expected ...``, the line and a caret.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

from lark import Lark, Token, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.lexer import PatternStr
from lark.load_grammar import FromPackageLoader

from goalrt.durations import parse_duration
from goalrt.errors import ConfigError, GdlError, GdlSyntaxError, PlanningError
from goalrt.gdl import ast
from goalrt.gdl.diagnostics import Problem, render
from goalrt.gdl.parse_steps import StepsBuilder
from goalrt.planner.syntax import number_value, string_value
from goalrt.state.model import MAX_PATH

# Readable words for the terminals whose pattern is a regular expression.
_WORDS: Final = {
    "NAME": "a name",
    # A path is a name that may hold ':' (orders.o:1.status); GDL's messages call both a name.
    "PATH": "a name",
    "NUMBER": "a number",
    "DURATION": "a duration (e.g. 30s, 1h30m)",
    "STRING": "a string",
    "COMPARE": "a comparison (== != < <= > >=)",
    "BACKOFF": "'exponential' or 'fixed'",
    "EXPORT_KIND": "'type', 'event' or 'action'",
    "CATCH_UP": "'skip', 'latest' or 'all'",
    "CHILD_MODE": "'all' or 'any'",
    "SINCE": "'submit' or 'wait'",
    "ON_FAILURE": "'fail' or 'continue'",
    "$END": "the end of the file",
}


@cache
def _lark() -> Lark:
    # grammar.lark imports the condition rules from the planner's conditions.lark, so cond() and GDL read
    # conditions with one grammar.
    return Lark.open_from_package(
        "goalrt.gdl",
        "grammar.lark",
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=True,
        import_paths=[FromPackageLoader("goalrt.planner")],
    )


def _describe_terminal(name: str) -> str:
    """Return a terminal as a reader would name it: ``'{'``, ``'require'``, ``a name``."""
    if name in _WORDS:
        return _WORDS[name]
    for terminal in _lark().terminals:
        if terminal.name == name and isinstance(terminal.pattern, PatternStr):
            return repr(terminal.pattern.value)
    return name.lower()


def _expected_words(names: set[str] | frozenset[str]) -> str:
    """Return ``A, B or C`` for a set of terminal names, readable and sorted."""
    words = sorted({_describe_terminal(n) for n in names if n not in ("WS", "COMMENT")})
    if not words:
        return "nothing more"
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _describe_token(token: Token) -> str:
    if token.type == "$END":
        return "end of file"
    if token.type in ("NAME", "PATH"):
        return f"name {token.value!r}"
    if token.type in ("NUMBER", "STRING", "DURATION"):
        return f"{token.type.lower()} {token.value}"
    return repr(str(token.value))


def _end_pos(path: str, text: str) -> ast.Pos:
    lines = text.split("\n")
    return ast.Pos(path, len(lines), len(lines[-1]) + 1)


def _accepted(exc: UnexpectedToken) -> set[str]:
    # LALR merges states, so ``exc.expected`` may list tokens that would fail a
    # few reductions later; the interactive parser tries each one for real.
    if exc.interactive_parser is not None:
        try:
            return set(exc.interactive_parser.accepts())  # type: ignore[no-untyped-call]
        except UnexpectedInput:
            pass
    return set(exc.expected)


def _syntax_problem(path: str, text: str, exc: UnexpectedInput) -> Problem:
    """Return the problem a lark error describes, with what was expected in words."""
    if isinstance(exc, UnexpectedToken):
        pos = _end_pos(path, text) if exc.token.type == "$END" else ast.Pos(path, exc.line, exc.column)
        return Problem(pos, f"unexpected {_describe_token(exc.token)}; expected {_expected_words(_accepted(exc))}")
    if isinstance(exc, UnexpectedCharacters):
        at = exc.pos_in_stream or 0
        char = text[at] if at < len(text) else ""
        return Problem(
            ast.Pos(path, exc.line, exc.column),
            f"unexpected character {char!r}; expected {_expected_words(exc.allowed or set())}",
        )
    if isinstance(exc, UnexpectedEOF):
        return Problem(_end_pos(path, text), f"unexpected end of file; expected {_expected_words(set(exc.expected))}")
    return Problem(ast.Pos(path, 1, 1), str(exc).splitlines()[0])


def parse_source(text: str, path: str = "<gdl>", app: str = "main") -> ast.SourceFile:
    """Return the syntax tree of one source; raise ``GdlSyntaxError`` if it does not parse."""
    problem = _parse_problem(text, path)
    if isinstance(problem, Problem):
        err = GdlSyntaxError(render(problem, {path: text}))
        err.filename, err.lineno, err.offset = path, problem.pos.line, problem.pos.column
        err.msg = problem.message
        raise err
    return ast.SourceFile(path, app, problem)


def parse_or_problem(text: str, path: str, app: str) -> ast.SourceFile | Problem:
    """Return the syntax tree of one source, or the problem that stops it from parsing."""
    result = _parse_problem(text, path)
    return result if isinstance(result, Problem) else ast.SourceFile(path, app, result)


def _parse_problem(text: str, path: str) -> tuple[ast.Decl, ...] | Problem:
    try:
        tree = _lark().parse(text)
        decls = _Builder(path).transform(tree)
    except UnexpectedInput as exc:
        return _syntax_problem(path, text, exc)
    except RecursionError:
        return Problem(ast.Pos(path, 1, 1), "the source is nested too deeply to read")
    except VisitError as exc:
        if isinstance(exc.orig_exc, _Located):
            return exc.orig_exc.problem
        if isinstance(exc.orig_exc, GdlError):
            raise exc.orig_exc from None
        if isinstance(exc.orig_exc, RecursionError):
            return Problem(ast.Pos(path, 1, 1), "the source is nested too deeply to read")
        raise
    return tuple(decls)


class _Located(Exception):
    """A token the builder cannot turn into a value (a 5000-digit number, a path too long): its problem."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


@v_args(meta=True)
class _Builder(StepsBuilder):
    """Turn lark's tree into ``goalrt.gdl.ast`` nodes, every one with its position."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def _pos(self, meta: Any) -> ast.Pos:
        return ast.Pos(self.path, getattr(meta, "line", 1), getattr(meta, "column", 1))

    def _at(self, token: Token) -> ast.Pos:
        return ast.Pos(self.path, token.line or 1, token.column or 1)

    def _name(self, token: Token) -> ast.Name:
        self._check_path(token)
        return ast.Name(str(token), self._at(token))

    def _check_path(self, token: Token) -> None:
        if token.type == "PATH" and len(token) > MAX_PATH:
            problem = f"path of {len(token)} characters is too long (a state path has at most {MAX_PATH})"
            raise _Located(Problem(self._at(token), problem))

    def _term(self, item: Any) -> ast.Term:
        if isinstance(item, ast.Name | ast.Literal):
            return item
        token: Token = item
        pos = self._at(token)
        kind = token.type
        if kind in ("NAME", "PATH"):
            return self._name(token)
        if kind == "STRING":
            return ast.Literal(string_value(str(token)), pos)
        if kind == "NUMBER":
            try:
                return ast.Literal(number_value(str(token)), pos)
            except PlanningError as exc:
                raise _Located(Problem(pos, str(exc))) from None
        if kind == "TRUE":
            return ast.Literal(True, pos)
        if kind == "FALSE":
            return ast.Literal(False, pos)
        return ast.Literal(None, pos)

    def _literal(self, token: Token) -> ast.Literal:
        term = self._term(token)
        assert isinstance(term, ast.Literal)
        return term

    def _duration(self, token: Token) -> ast.Duration:
        try:
            return ast.Duration(str(token), parse_duration(str(token)), self._at(token))
        except ConfigError as exc:
            raise _Located(Problem(self._at(token), str(exc))) from None

    # -- declarations ----------------------------------------------------------

    def start(self, meta: Any, items: list[Any]) -> list[ast.Decl]:
        return list(items)

    def field(self, meta: Any, items: list[Token]) -> ast.Field:
        return ast.Field(self._name(items[0]), self._name(items[1]), self._pos(meta))

    param = field

    def params(self, meta: Any, items: list[Any]) -> tuple[ast.Field, ...]:
        return tuple(i for i in items if i is not None)

    def under(self, meta: Any, items: list[Token]) -> ast.Name:
        return self._name(items[0])

    def type_decl(self, meta: Any, items: list[Any]) -> ast.TypeDecl:
        under = next((i for i in items[1:] if isinstance(i, ast.Name)), None)
        fields = tuple(i for i in items[1:] if isinstance(i, ast.Field))
        return ast.TypeDecl(self._name(items[0]), under, fields, self._pos(meta))

    def event_decl(self, meta: Any, items: list[Any]) -> ast.EventDecl:
        return ast.EventDecl(self._name(items[0]), tuple(items[1:]), self._pos(meta))

    def action_decl(self, meta: Any, items: list[Any]) -> ast.ActionDecl:
        params = next((i for i in items[1:] if isinstance(i, tuple)), ())
        clauses = tuple(i for i in items[1:] if not isinstance(i, tuple))
        return ast.ActionDecl(self._name(items[0]), params, clauses, self._pos(meta))

    def goal_decl(self, meta: Any, items: list[Any]) -> ast.GoalDecl:
        params = next((i for i in items[1:] if isinstance(i, tuple)), ())
        clauses = tuple(i for i in items[1:] if not isinstance(i, tuple))
        return ast.GoalDecl(self._name(items[0]), params, clauses, self._pos(meta))

    def export(self, meta: Any, items: list[Token]) -> ast.Export:
        return ast.Export(str(items[0]), self._name(items[1]), self._pos(meta))

    def contract_decl(self, meta: Any, items: list[Any]) -> ast.ContractDecl:
        return ast.ContractDecl(self._name(items[0]), tuple(items[1:]), self._pos(meta))

    def policy_decl(self, meta: Any, items: list[Any]) -> ast.PolicyDecl:
        return ast.PolicyDecl(self._name(items[0]), tuple(items[1:]), self._pos(meta))

    def test_decl(self, meta: Any, items: list[Any]) -> ast.TestDecl:
        return ast.TestDecl(self._name(items[0]), tuple(items[1:]), self._pos(meta))

    # -- action clauses --------------------------------------------------------

    def require(self, meta: Any, items: list[Any]) -> ast.Require:
        return ast.Require(items[0], self._pos(meta))

    def set_effect(self, meta: Any, items: list[Any]) -> ast.SetEffect:
        return ast.SetEffect(self._name(items[0]), self._term(items[1]), self._pos(meta))

    def inc_effect(self, meta: Any, items: list[Token]) -> ast.IncEffect:
        return ast.IncEffect(self._name(items[0]), self._literal(items[1]), self._pos(meta))

    def delete_effect(self, meta: Any, items: list[Token]) -> ast.DeleteEffect:
        return ast.DeleteEffect(self._name(items[0]), self._pos(meta))

    def cost(self, meta: Any, items: list[Token]) -> ast.Cost:
        return ast.Cost(self._literal(items[0]), self._pos(meta))

    def retry(self, meta: Any, items: list[Token]) -> ast.RetryClause:
        backoff = str(items[1]) if len(items) > 1 else None
        delay = self._duration(items[2]) if len(items) > 2 else None
        return ast.RetryClause(self._literal(items[0]), backoff, delay, self._pos(meta))

    def timeout(self, meta: Any, items: list[Token]) -> ast.Timeout:
        return ast.Timeout(self._duration(items[0]), self._pos(meta))

    def concurrency(self, meta: Any, items: list[Token]) -> ast.Concurrency:
        return ast.Concurrency(self._literal(items[0]), self._pos(meta))

    def rate(self, meta: Any, items: list[Token]) -> ast.Rate:
        return ast.Rate(self._literal(items[0]), self._duration(items[1]), self._pos(meta))

    def handler(self, meta: Any, items: list[Token]) -> ast.Handler:
        return ast.Handler(self._name(items[0]), self._pos(meta))

    def pure(self, meta: Any, _items: list[Token]) -> ast.Pure:
        return ast.Pure(self._pos(meta))

    def with_args(self, meta: Any, items: list[Any]) -> ast.WithArgs:
        return ast.WithArgs(tuple(items), self._pos(meta))

    def _with_value(self, item: Any) -> ast.WithValue:
        if isinstance(item, ast.WithMap | ast.WithList | ast.StateRef | ast.Literal):
            return item
        return self._literal(item)

    def with_arg(self, meta: Any, items: list[Any]) -> ast.WithArg:
        key: Token = items[0]
        name = ast.Name(string_value(str(key)) if key.type == "STRING" else str(key), self._at(key))
        return ast.WithArg(name, self._with_value(items[1]), self._pos(meta))

    def with_map(self, meta: Any, items: list[Any]) -> ast.WithMap:
        return ast.WithMap(tuple(items), self._pos(meta))

    def with_list(self, meta: Any, items: list[Any]) -> ast.WithList:
        return ast.WithList(tuple(self._with_value(i) for i in items if i is not None), self._pos(meta))

    def with_state(self, meta: Any, items: list[Token]) -> ast.StateRef:
        return ast.StateRef(self._name(items[0]), self._pos(meta))

    def builtin_decl(self, meta: Any, items: list[Any]) -> ast.BuiltinDecl:
        return ast.BuiltinDecl(self._name(items[0]), tuple(items[1:]), self._pos(meta))

    def builtin_arg(self, meta: Any, items: list[Any]) -> ast.BuiltinArg:
        default = None if len(items) < 3 or items[2] is None else self._with_value(items[2])
        return ast.BuiltinArg(self._name(items[0]), self._name(items[1]), default, self._pos(meta))

    # -- goal clauses ----------------------------------------------------------

    def achieve(self, meta: Any, items: list[Any]) -> ast.AchieveClause:
        return ast.AchieveClause(items[0], False, self._pos(meta))

    def maintain(self, meta: Any, items: list[Any]) -> ast.AchieveClause:
        return ast.AchieveClause(items[0], True, self._pos(meta))

    def priority(self, meta: Any, items: list[Token]) -> ast.Priority:
        return ast.Priority(self._literal(items[0]), self._pos(meta))

    def deadline(self, meta: Any, items: list[Token]) -> ast.Deadline:
        return ast.Deadline(self._duration(items[0]), self._pos(meta))

    def max_replans(self, meta: Any, items: list[Token]) -> ast.MaxReplans:
        return ast.MaxReplans(self._literal(items[0]), self._pos(meta))

    def uses(self, meta: Any, items: list[Token]) -> ast.Uses:
        return ast.Uses(tuple(self._name(t) for t in items), self._pos(meta))

    def binding(self, meta: Any, items: list[Any]) -> ast.Binding:
        return ast.Binding(self._name(items[0]), self._term(items[1]), self._pos(meta))

    arg = binding

    def trigger(self, meta: Any, items: list[Any]) -> ast.Trigger:
        return ast.Trigger(self._name(items[0]), self._name(items[1]), tuple(items[2:]), self._pos(meta))

    def schedule_cron(self, meta: Any, items: list[Any]) -> ast.ScheduleClause:
        return self._schedule(meta, self._literal(items[0]), None, items[1:])

    def schedule_every(self, meta: Any, items: list[Any]) -> ast.ScheduleClause:
        return self._schedule(meta, None, self._duration(items[0]), items[1:])

    def _schedule(
        self, meta: Any, cron: ast.Literal | None, every: ast.Duration | None, rest: list[Any]
    ) -> ast.ScheduleClause:
        options = tuple(i for i in rest if isinstance(i, ast.ScheduleOption))
        bindings = next((i for i in rest if isinstance(i, tuple)), ())
        return ast.ScheduleClause(cron, every, options, bindings, self._pos(meta))

    def schedule_timezone(self, meta: Any, items: list[Token]) -> ast.ScheduleOption:
        return ast.ScheduleOption("timezone", self._literal(items[0]), self._pos(meta))

    def schedule_catch_up(self, meta: Any, items: list[Token]) -> ast.ScheduleOption:
        return ast.ScheduleOption("catch_up", ast.Name(str(items[0]), self._at(items[0])), self._pos(meta))

    def schedule_name(self, meta: Any, items: list[Token]) -> ast.ScheduleOption:
        return ast.ScheduleOption("name", self._name(items[0]), self._pos(meta))

    def schedule_args(self, meta: Any, items: list[ast.Binding]) -> tuple[ast.Binding, ...]:
        return tuple(items)

    # -- test clauses ----------------------------------------------------------

    def given(self, meta: Any, items: list[Any]) -> ast.Given:
        return ast.Given(self._name(items[0]), self._term(items[1]), self._pos(meta))

    def simulate(self, meta: Any, items: list[Token]) -> ast.Simulate:
        return ast.Simulate(tuple(self._name(t) for t in items), self._pos(meta))

    def when_goal(self, meta: Any, items: list[Any]) -> ast.WhenGoal:
        return ast.WhenGoal(self._name(items[0]), tuple(i for i in items[1:] if i is not None), self._pos(meta))

    def when_event(self, meta: Any, items: list[Any]) -> ast.WhenEvent:
        return ast.WhenEvent(self._name(items[0]), tuple(items[1:]), self._pos(meta))

    def expect_event(self, meta: Any, items: list[Token]) -> ast.ExpectEvent:
        return ast.ExpectEvent(self._name(items[0]), self._pos(meta))

    def when_change(self, meta: Any, items: list[ast.Binding]) -> ast.WhenChange:
        return ast.WhenChange(tuple(items), self._pos(meta))

    def expect_goal(self, meta: Any, items: list[Token]) -> ast.ExpectGoal:
        if items[1] is None:  # `expect goal STATUS`
            return ast.ExpectGoal(None, str(items[0]), self._pos(meta))
        return ast.ExpectGoal(self._name(items[0]), str(items[1]), self._pos(meta))

    def expect_refused(self, meta: Any, items: list[Token | None]) -> ast.ExpectRefused:
        return ast.ExpectRefused(self._name(items[0]) if items[0] is not None else None, self._pos(meta))

    def expect_state(self, meta: Any, items: list[Any]) -> ast.ExpectState:
        return ast.ExpectState(items[0], self._pos(meta))

    # -- conditions: rules of the planner's conditions.lark, which lark names with their namespace --

    def conditions__any_of(self, meta: Any, items: list[ast.Cond]) -> ast.Cond:
        return items[0] if len(items) == 1 else ast.AnyOf(tuple(items), self._pos(meta))

    def conditions__all_of(self, meta: Any, items: list[ast.Cond]) -> ast.Cond:
        return items[0] if len(items) == 1 else ast.AllOf(tuple(items), self._pos(meta))

    def conditions__negation(self, meta: Any, items: list[ast.Cond]) -> ast.Negation:
        return ast.Negation(items[0], self._pos(meta))

    def conditions__exists(self, meta: Any, items: list[Token]) -> ast.ExistsCond:
        return ast.ExistsCond(self._name(items[0]), self._pos(meta))

    def conditions__compare(self, meta: Any, items: list[Any]) -> ast.Compare:
        return ast.Compare(str(items[1]), self._term(items[0]), self._term(items[2]), self._pos(meta))

    def conditions__member(self, meta: Any, items: list[Any]) -> ast.Member:
        options = tuple(self._term(i) for i in items[1:] if i is not None)
        return ast.Member(self._term(items[0]), options, self._pos(meta))

    def conditions__constant(self, meta: Any, items: list[Token]) -> ast.Constant:
        return ast.Constant(items[0].type == "TRUE", self._pos(meta))


__all__ = ["parse_or_problem", "parse_source"]
