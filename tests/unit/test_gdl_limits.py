"""GDL refuses numbers, durations and paths too big, naming file:line:column with a short excerpt (issue 15 item 8)."""

from __future__ import annotations

import pytest

from goalrt.errors import GdlSyntaxError
from goalrt.gdl.parser import parse_source

ACTION = """action a.b(o: Order) {
  require orders.{o}.status == "paid"
  effect  orders.{o}.status = "packed"
  retry 3 backoff exponential 500ms
  timeout 1m
}
"""


@pytest.mark.parametrize(
    ("old", "new", "where", "message"),
    [
        ('status = "packed"', "status = " + "9" * 5000, "3:31", "number literal of 5000 characters is too long"),
        ('== "paid"', "== " + "9" * 5000, "2:32", "number literal of 5000 characters is too long"),
        ("500ms", "9" * 400 + "ms", "4:31", "invalid duration '999"),
        ("1m", "9" * 400 + "s", "5:11", "invalid duration '999"),
        ("effect  orders.{o}.status", "effect  orders.{o}." + "x" * 600, "3:11", "path of 611 characters is too long"),
        ("orders.{o}.status ==", "orders." + "x" * 600 + " ==", "2:11", "path of 607 characters is too long"),
    ],
)
def test_too_big_is_a_located_short_problem(old: str, new: str, where: str, message: str) -> None:
    source = ACTION.replace(old, new)
    assert source != ACTION
    with pytest.raises(GdlSyntaxError) as info:
        parse_source(source, "apps/x/actions.gdl", "x")
    text = str(info.value)
    head, line, caret = text.split("\n")
    assert head.startswith(f"apps/x/actions.gdl:{where}: ") and message in head, head
    assert len(head) < 300 and len(line) < 120 and caret.strip() == "^"


def test_a_large_but_finite_number_still_parses() -> None:
    (decl,) = parse_source(ACTION.replace('status = "packed"', "status = 1e300")).decls
    assert decl is not None
