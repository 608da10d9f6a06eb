"""Exact JSON: float or Decimal, exact writing, the nesting limit, unreadable values (issue 15 items 5, 6, 8)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from goalrt.db.jsontext import MAX_JSON_DEPTH, UnreadableJson, check, decode, dumps, loads, render
from goalrt.errors import InvalidJsonError


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.1", 0.1),
        ("2.5e-3", 0.0025),
        ("-0.0", -0.0),
        ("12", 12),
        ("0.10000000000000000000001", Decimal("0.10000000000000000000001")),
        ("19.999999999999999999", Decimal("19.999999999999999999")),
        ("1e400", Decimal("1e400")),
        ("1e-400", Decimal("1e-400")),
        ("7" * 5000, Decimal("7" * 5000)),
    ],
)
def test_a_number_is_a_float_only_where_the_float_is_exact(text: str, value: object) -> None:
    for parse in (loads, decode):
        got = parse(text)
        assert got == value and type(got) is type(value)
        assert Decimal(dumps(got)) == Decimal(text)


def test_decimals_are_written_exactly_and_no_string_can_pass_for_one() -> None:
    assert dumps({"a": Decimal("1E+400"), "b": [Decimal("-0.000001")]}) == '{"a":1E+400,"b":[-0.000001]}'
    assert dumps(["\\u0000goalrt-decimal:5"]) == '["\\\\u0000goalrt-decimal:5"]'
    with pytest.raises(InvalidJsonError, match="U\\+0000"):
        dumps(["\x00goalrt-decimal:5"])
    for bad in (Decimal("NaN"), Decimal("Infinity"), float("nan")):
        with pytest.raises(InvalidJsonError, match="NaN or Infinity"):
            dumps(bad)
    with pytest.raises(InvalidJsonError, match="out of the range"):
        dumps(Decimal("1E+200000"))
    assert render({"n": Decimal("0.10000000000000000000001")}) == '{"n":0.10000000000000000000001}'


def test_the_nesting_limit() -> None:
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert check(loads(at_limit)) is not None
    for depth in (MAX_JSON_DEPTH + 1, 300, 5000):
        text = "[" * depth + "]" * depth
        with pytest.raises(InvalidJsonError, match=f"nested deeper than {MAX_JSON_DEPTH} levels"):
            loads(text)
    # Brackets inside strings are not nesting.
    assert loads('["' + "[" * 500 + '"]') == ["[" * 500]
    value: object = 1
    for _ in range(3000):
        value = [value]
    with pytest.raises(InvalidJsonError, match="nested deeper"):
        check(value)


def test_an_undecodable_value_becomes_a_marker() -> None:
    marker = decode("[" * 5000 + "]" * 5000)
    assert isinstance(marker, UnreadableJson) and marker.length == 10000
    assert str(marker).startswith("<unreadable JSON (10000 characters): ")
    assert render({"d": marker}).startswith('{"d":"<unreadable JSON')
