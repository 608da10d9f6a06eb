"""One condition grammar: ``cond(text)`` and GDL read every condition text alike, and refuse the same texts.

Both parse with the rules of ``goalrt/planner/conditions.lark``; ``cond()``
builds planner conditions straight from the tree, GDL through its syntax tree
and compiler (which add positions and check parameters). Each text here is
put in a goal's ``achieve`` clause (as ``(TEXT) or zz == 1``, so that no text
is refused for never holding) and the compiled condition must equal
``cond(text)``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goalrt.errors import GdlError, PlanningError
from goalrt.gdl import compile_sources, source_for
from goalrt.planner import FALSE, TRUE, And, Compare, Condition, Const, Exists, In, Not, Or, Path, Term, Var, cond
from goalrt.planner.values import COMPARISONS

PARAMS = ("o", "i")


def goal_source(text: str) -> str:
    params = ", ".join(f"{p}: string" for p in PARAMS)
    return f"goal g({params}) {{\n  achieve (\n{text}\n) or zz == 1\n}}\n"


def gdl_condition(text: str) -> Condition:
    """Return what GDL compiles ``text`` to inside a goal's ``achieve``."""
    compiled = compile_sources([source_for("apps/a/goals.gdl", goal_source(text))])
    condition = compiled.goals["g"].achieve.condition
    assert isinstance(condition, Or) and condition.args[1] == Compare("==", Path("zz"), Const(1))
    return condition.args[0]


def gdl_refuses(text: str) -> str:
    """Return GDL's message for ``text`` in an ``achieve`` clause, failing the test if GDL accepts it."""
    for source in (goal_source(text), f"goal g(o: string, i: string) {{ achieve {text}\n}}\n"):
        with pytest.raises(GdlError) as info:
            compile_sources([source_for("apps/a/goals.gdl", source)])
        assert "can never" not in str(info.value)
    return str(info.value)


# Texts whose reading was in doubt: each former parser accepted some of them, and refused others.
ACCEPTED = {
    "orders.o:1.status == 'paid'": Compare("==", Path("orders.o:1.status"), Const("paid")),
    "x in []": In(Path("x"), []),
    "x in [1, 'one', true, null, {o}]": In(Path("x"), [1, "one", True, None, Var("o")]),
    "a==1": Compare("==", Path("a"), Const(1)),
    "a ==-1.5e3": Compare("==", Path("a"), Const(-1500.0)),
    "a == 01": Compare("==", Path("a"), Const(1)),
    "a == 1.0": Compare("==", Path("a"), Const(1.0)),
    ":x.@y-z.0 != 2": Compare("!=", Path(":x.@y-z.0"), Const(2)),
    "tenant:acme.user-1.x@y == false": Compare("==", Path("tenant:acme.user-1.x@y"), Const(False)),
    "{o}.status == {i}": Compare("==", Path("{o}.status"), Var("i")),
    "{o} == 'o1'": Compare("==", Var("o"), Const("o1")),
    "exists({o})": Exists(Path("{o}")),
    "exists(true)": Exists(Path("true")),
    "in == 1": Compare("==", Path("in"), Const(1)),
    "a.and.b == 1": Compare("==", Path("a.and.b"), Const(1)),
    "true == flag": Compare("==", Const(True), Path("flag")),
    "null == x": Compare("==", Const(None), Path("x")),
    "1 < 2": Compare("<", Const(1), Const(2)),
    "true": TRUE,
    "false": FALSE,
    "not true": Not(TRUE),
    "(((a == 1)))": Compare("==", Path("a"), Const(1)),
    "not not a < b": Not(Not(Compare("<", Path("a"), Path("b")))),
    "a < 1 and b >= 2 or not c > 3": Or(
        And(Compare("<", Path("a"), Const(1)), Compare(">=", Path("b"), Const(2))),
        Not(Compare(">", Path("c"), Const(3))),
    ),
    "a == 1 and (b == 2 or c == 3)": And(
        Compare("==", Path("a"), Const(1)),
        Or(Compare("==", Path("b"), Const(2)), Compare("==", Path("c"), Const(3))),
    ),
    "s == 'it\\'s'": Compare("==", Path("s"), Const("it's")),
    "s == 'a\\nb'": Compare("==", Path("s"), Const("anb")),
    's == "a\\nb\\u00e9"': Compare("==", Path("s"), Const("a\nbé")),
    's == "a\\qb"': Compare("==", Path("s"), Const("aqb")),
    's == "say \\"hi\\""': Compare("==", Path("s"), Const('say "hi"')),
    "s == 'two\nlines'": Compare("==", Path("s"), Const("two\nlines")),
    "a == 1 # a comment\n and b == 2": And(Compare("==", Path("a"), Const(1)), Compare("==", Path("b"), Const(2))),
    "a\u00a0==\t1\n": Compare("==", Path("a"), Const(1)),
}

# Texts both refuse, each for a reason of its own.
REFUSED = [
    "",
    "a",
    "a ==",
    "a = 1",
    "a === 1",
    "a == b == c",
    "a == 1 b",
    "a == 1 and",
    "a == 1 or or b == 2",
    "(a == 1",
    "a == 1)",
    "not",
    "not == 1",
    "a in 1",
    "a in [b]",
    "a in [1,]",
    "a in [1 2]",
    "exists()",
    "exists(1)",
    "exists('a')",
    "exists(a == 1)",
    "a == 1e999",
    "orders.*.x == 1",
    "exists(a.*)",
    "a == 'unterminated",
    "a ~ 1",
    "a == {o",
    "{1x} == 1",
    "1a == 2",
    "-a == 1",
    ".a == 1",
    "a. == 1",
    "a..b == 1",
    "a == 1.",
    "a == 1x",
    "true true",
    "a < < 1",
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED.items(), ids=[repr(t) for t in ACCEPTED])
def test_both_read_the_text_alike(text: str, expected: Condition) -> None:
    assert cond(text) == expected
    assert gdl_condition(text) == expected


@pytest.mark.parametrize("text", REFUSED, ids=[repr(t) for t in REFUSED])
def test_both_refuse_the_text(text: str) -> None:
    with pytest.raises(PlanningError) as info:
        cond(text)
    message = str(info.value)
    assert "\n" not in message.replace("\\n", "")
    assert message.startswith(f"condition {text!r}: ")
    assert "column" in message or "unexpected end" in message
    gdl = gdl_refuses(text).split("\n")[0]
    assert gdl.startswith("apps/a/goals.gdl:")


def test_gdl_reports_file_line_and_column_inside_a_condition() -> None:
    # gdl_refuses returns the message for the text written straight after 'achieve' on line 1.
    message = gdl_refuses("a == 1 and\n  b ~ 2")
    assert message.split("\n")[0].startswith("apps/a/goals.gdl:2:5: unexpected character '~'")
    with pytest.raises(PlanningError, match=r"unexpected character '~' at line 2 column 5"):
        cond("a == 1 and\n  b ~ 2")


# Random conditions --------------------------------------------------------------------------------

SEGMENT = st.from_regex(r"[A-Za-z_:@][A-Za-z0-9_:@-]{0,5}", fullmatch=True)
LATER = st.one_of(st.from_regex(r"[A-Za-z0-9_:@-]{1,5}", fullmatch=True), st.sampled_from(["{o}", "{i}"]))
KEYWORDS = {"and", "or", "not", "in", "exists", "true", "false", "null"}


@st.composite
def paths(draw: st.DrawFn) -> Path:
    first = draw(st.one_of(SEGMENT, st.sampled_from(["{o}", "{i}", "{o}x"])))
    rest = draw(st.lists(LATER, max_size=3))
    template = ".".join([first, *rest])
    if template in KEYWORDS or template in ("{o}", "{i}"):
        template = "k." + template
    return Path(template)


CONSTANTS = st.one_of(
    st.text(max_size=8),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
).map(Const)
VARS = st.sampled_from(PARAMS).map(Var)
TERMS: st.SearchStrategy[Term] = st.one_of(paths(), VARS, CONSTANTS)
LEAVES: st.SearchStrategy[Condition] = st.one_of(
    st.builds(Compare, st.sampled_from(COMPARISONS), TERMS, TERMS),
    st.builds(In, TERMS, st.lists(st.one_of(VARS, CONSTANTS), max_size=3)),
    st.builds(Exists, st.one_of(paths(), st.sampled_from([Path("{o}"), Path("{i}")]))),
    st.sampled_from([TRUE, FALSE]),
)
CONDITIONS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.lists(inner, min_size=2, max_size=3).map(lambda args: And(*args)),
        st.lists(inner, min_size=2, max_size=3).map(lambda args: Or(*args)),
    ),
    max_leaves=8,
)
SPACES = st.sampled_from([" ", "  ", "\n", "\t", " # note\n", "\u2003", "\r\n"])


def write_term(term: Term, draw: st.DrawFn) -> str:
    if isinstance(term, Path):
        return term.template
    if isinstance(term, Var):
        return "{" + term.name + "}"
    value = term.value
    if isinstance(value, str):
        if draw(st.booleans()):
            return json.dumps(value, ensure_ascii=draw(st.booleans()))
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return json.dumps(value) if not isinstance(value, float) else repr(value)


def write(condition: Condition, draw: st.DrawFn) -> str:
    """Return a text for ``condition`` that reads back as exactly it, spaced and bracketed at random."""

    def join(*parts: str) -> str:
        out = parts[0]
        for part in parts[1:]:
            out += draw(SPACES) + part
        return out

    if condition in (TRUE, FALSE):
        text = "true" if condition == TRUE else "false"
    elif isinstance(condition, Compare):
        text = join(write_term(condition.left, draw), condition.op, write_term(condition.right, draw))
    elif isinstance(condition, In):
        options = [write_term(o, draw) for o in condition.options]
        text = join(write_term(condition.left, draw), "in", "[" + ",".join(options) + "]")
    elif isinstance(condition, Exists):
        text = join("exists", "(", condition.path.template, ")")
    elif isinstance(condition, Not):
        text = join("not", "(", write(condition.arg, draw), ")")
    else:
        word = "and" if isinstance(condition, And) else "or"
        parts = [join("(", write(a, draw), ")") for a in condition.args]
        text = join(*[p for part in parts for p in (part, word)][:-1])
    if draw(st.integers(0, 4)) == 0:
        text = join("(", text, ")")
    return text


@st.composite
def written(draw: st.DrawFn) -> tuple[Condition, str]:
    condition = draw(CONDITIONS)
    return condition, write(condition, draw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(written())
def test_random_conditions_read_alike(case: tuple[Condition, str]) -> None:
    condition, text = case
    assert cond(text) == condition
    assert gdl_condition(text) == condition


TOKENS = ["a", "b.c", "{o}", "1", "-2.5", "'s'", '"t"', "true", "null", "==", "<", "in", "[", "]", ",", "(", ")"]
TOKENS += ["and", "or", "not", "exists", "*", "x.*", ":", "=", "#", "\n", "~"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=12))
def test_random_token_strings_are_read_alike_or_refused_by_both(tokens: list[str]) -> None:
    text = " ".join(tokens)
    ours: Any
    try:
        ours = cond(text)
    except PlanningError:
        ours = None
    if ours is None:
        gdl_refuses(text)
    else:
        assert gdl_condition(text) == ours
