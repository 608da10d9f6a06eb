"""The condition text syntax: ``cond("orders.{o}.status == 'paid' and stock.{i} > 0")``.

Grammar (``not`` binds tighter than ``and``, which binds tighter than ``or``)::

    condition  := conj ("or" conj)*
    conj       := unary ("and" unary)*
    unary      := "not" unary | "(" condition ")" | "exists" "(" path ")" | "true" | "false" | comparison
    comparison := term (("==" | "!=" | "<" | "<=" | ">" | ">=") term | "in" "[" term ("," term)* "]")
    term       := path | "{" name "}" | 'text' | "text" | number | true | false | null

A path is dot-separated segments of letters, digits, ``_ : @ -`` and
``{param}`` holes, and does not start with a digit or ``-`` (those start a
number); the words above are keywords, not paths. Anything this syntax cannot
say (a path named ``true``) is built with the classes directly.
"""

from __future__ import annotations

import json
import re
from typing import Final

from goalrt.errors import PlanningError
from goalrt.planner.conditions import FALSE, TRUE, And, Compare, Condition, Const, Exists, In, Not, Or, Path, Term, Var
from goalrt.planner.values import COMPARISONS

_CHAR = r"(?:[A-Za-z0-9_:@-]|\{[A-Za-z_][A-Za-z0-9_]*\})"
_FIRST = r"(?:[A-Za-z_:@]|\{[A-Za-z_][A-Za-z0-9_]*\})"
_TOKEN: Final = re.compile(
    r"\s*(?:"
    r"(?P<string>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
    r"|(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![A-Za-z0-9_:@.{-])"
    r"|(?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)"
    rf"|(?P<word>{_FIRST}{_CHAR}*(?:\.{_CHAR}+)*)"
    r")"
)
_KEYWORDS: Final = {"and", "or", "not", "in", "exists", "true", "false", "null"}
_VAR: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ESCAPE: Final = re.compile(r"\\(.)")


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.lastgroup is None:
            start = len(text) - len(text[pos:].lstrip())
            raise PlanningError(f"condition {text!r}: unexpected {text[start : start + 10]!r} at column {start + 1}")
        group = match.lastgroup
        value = match.group(group)
        kind = "keyword" if group == "word" and value in _KEYWORDS else group
        out.append((kind, value, match.start(group)))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def fail(self, expected: str) -> PlanningError:
        if self.pos < len(self.tokens):
            _, value, column = self.tokens[self.pos]
            return PlanningError(f"condition {self.text!r}: expected {expected} at column {column + 1}, got {value!r}")
        return PlanningError(f"condition {self.text!r}: expected {expected} at the end")

    def peek(self) -> tuple[str, str]:
        if self.pos < len(self.tokens):
            kind, value, _ = self.tokens[self.pos]
            return kind, value
        return "end", ""

    def accept(self, value: str) -> bool:
        kind, found = self.peek()
        if found == value and kind in ("op", "keyword"):
            self.pos += 1
            return True
        return False

    def expect(self, value: str) -> None:
        if not self.accept(value):
            raise self.fail(repr(value))

    def condition(self) -> Condition:
        parts = [self.conjunction()]
        while self.accept("or"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else Or(*parts)

    def conjunction(self) -> Condition:
        parts = [self.unary()]
        while self.accept("and"):
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else And(*parts)

    def unary(self) -> Condition:
        if self.accept("not"):
            return Not(self.unary())
        if self.accept("("):
            inner = self.condition()
            self.expect(")")
            return inner
        if self.accept("exists"):
            self.expect("(")
            kind, value = self.peek()
            if kind != "word" or _VAR.fullmatch(value):
                raise self.fail("a path")
            self.pos += 1
            self.expect(")")
            return Exists(Path(value))
        kind, value = self.peek()
        if kind == "keyword" and value in ("true", "false"):
            after = self.tokens[self.pos + 1][1] if self.pos + 1 < len(self.tokens) else ""
            if after not in COMPARISONS and after != "in":
                self.pos += 1
                return TRUE if value == "true" else FALSE
        left = self.term()
        kind, value = self.peek()
        if kind == "op" and value in COMPARISONS:
            self.pos += 1
            return Compare(value, left, self.term())
        if self.accept("in"):
            self.expect("[")
            options = [self.term()]
            while self.accept(","):
                options.append(self.term())
            self.expect("]")
            return In(left, options)
        raise self.fail("a comparison operator or 'in'")

    def term(self) -> Term:
        kind, value = self.peek()
        if kind == "word":
            self.pos += 1
            var = _VAR.fullmatch(value)
            return Var(var.group(1)) if var else Path(value)
        if kind == "string":
            self.pos += 1
            return Const(_ESCAPE.sub(r"\1", value[1:-1]))
        if kind == "number":
            self.pos += 1
            return Const(json.loads(value))
        if kind == "keyword" and value in ("true", "false", "null"):
            self.pos += 1
            return Const({"true": True, "false": False, "null": None}[value])
        raise self.fail("a path, {param} or a value")


def cond(text: str) -> Condition:
    """Return the condition ``text`` describes, or raise PlanningError naming the column that is wrong."""
    if not isinstance(text, str):
        raise PlanningError(f"cond() takes a string, got {text!r}")
    parser = _Parser(text)
    result = parser.condition()
    if parser.pos != len(parser.tokens):
        raise parser.fail("'and', 'or' or the end")
    return result
