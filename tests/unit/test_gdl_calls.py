"""Built-in contracts (gdl/builtin) and `with` blocks: checked at load, compiled to what the worker renders."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from goalrt.actions.binding import Renderer
from goalrt.actions.catalog import Catalog
from goalrt.actions.secrets import Secrets
from goalrt.errors import GdlError, PermanentError
from goalrt.gdl import compile_sources, source_for
from goalrt.gdl.calls import builtin_contracts, parse_contracts

CALL = """
type Order { }
action order.notify(o: Order) {
  require orders.{o}.status == "shipped"
  effect orders.{o}.notified = true
  handler http.call
  with { method = "POST"  url = "https://API.example.com:8443/orders/{o}?total={state:orders.{o}.total}"
         headers = { Authorization = "Bearer {secret.TOKEN}"  "X-Brace" = "{{literal}}" }
         json = { order = "{o}"  items = [1, "two", { three = state(orders.{o}.items) }] }
         timeout = 5 }
}
"""


def compile_one(text: str) -> Any:
    return compile_sources([source_for("apps/shop/a.gdl", text)])


def problems(text: str) -> list[str]:
    with pytest.raises(GdlError) as info:
        compile_one(text)
    return [p.split("\n")[0].split(": ", 1)[1] for p in info.value.problems]


def test_every_builtin_has_a_contract_and_every_contract_a_builtin() -> None:
    assert (
        set(builtin_contracts())
        == set(Catalog(plugins=[]).actions)
        == {
            "ai.call",
            "db.query",
            "email.send",
            "file.delete",
            "file.upload",
            "http.call",
            "notification.push",
        }
    )
    http = builtin_contracts()["http.call"].args
    assert http["url"].required and http["url"].type == "url"
    assert (http["method"].default, http["timeout"].default, http["keep_headers"].default) == (
        "GET",
        30,
        ["content-type"],
    )


def test_a_with_block_compiles_to_templates_hosts_and_state_reads() -> None:
    call = compile_one(CALL).actions["order.notify"].to_json()["call"]
    assert call["hosts"] == ["api.example.com"] and call["urls"] == ["url"]
    assert call["args"]["json"] == {"order": "{o}", "items": [1, "two", {"three": {"$state": "orders.{o}.items"}}]}
    assert call["args"]["timeout"] == 5


def test_an_action_without_a_with_block_keeps_its_json() -> None:
    plain = compile_one("type Order { }\naction a(o: Order) { effect x.{o} = 1 }").actions["a"].to_json()
    assert "call" not in plain


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('with { url = "http://{o}/x" }', "url: a url starts with http:// or https:// and a host written out"),
        ('with { url = "ftp://h/x" }', "url: a url starts with http:// or https:// and a host written out"),
        ('with { url = "http://h/" methd = "GET" }', "methd is not an argument of http.call"),
        ('with { url = "http://h/" timeout = "3" }', "timeout must be of type number, got '3'"),
        ('with { url = "http://h/" headers = "x" }', "headers must be of type object, got 'x'"),
        ('with { url = "http://h/{p}" }', "url: unbound variable {p} in 'http://h/{p}' (parameters: o)"),
        ('with { url = "http://h/" json = { a = "{x" } }', "json.a: a brace in '{x' is neither"),
        ('with { url = "http://h/" json = state(a.{z}) }', "json: unbound variable {z} in a.{z}"),
        ('with { url = "http://h/" url = "http://h/" }', "argument url is given twice"),
        ('with { method = "GET" }', "http.call needs url (in a with block)"),
        ("with { url = null }", "url is required: null is not a value of it"),
        ('with { url = "http://h/" json = { "$state" = 1 } }', "json: a key starting with $ is reserved"),
    ],
)
def test_a_with_block_is_checked_against_the_contract(text: str, message: str) -> None:
    found = problems(f"type Order {{ }}\naction a(o: Order) {{ handler http.call {text} }}")
    assert any(p.startswith(f"action a: {message}") for p in found), found


def test_with_needs_a_builtin_handler_and_builtins_are_not_declared_in_a_workspace() -> None:
    assert problems("type Order { }\naction a(o: Order) { with { x = 1 } }") == [
        "action a: with gives the arguments of a built-in handler; it names no handler "
        "(ai.call, db.query, email.send, file.delete, file.upload, http.call, notification.push)"
    ]
    assert problems("builtin my.call { arg x: string }") == [
        "builtin declarations come with goalrt (gdl/builtin) and its plugins"
    ]


def test_keywords_are_argument_names_in_a_with_block() -> None:
    # `timeout`, `retry`, `cost` follow a value: the grammar must not read them as the action's clauses.
    compiled = compile_one(
        'type Order { }\naction a(o: Order) { handler http.call with { url = "http://h/" timeout = 1 } timeout 5s }'
    )
    assert compiled.actions["a"].timeout == 5 and compiled.actions["a"].to_json()["call"]["args"]["timeout"] == 1


def test_a_broken_contract_names_its_file() -> None:
    with pytest.raises(GdlError, match=r"plug:c.gdl:1:\d+: unknown type strin"):
        parse_contracts([("plug:c.gdl", "builtin p.x { arg a: strin }")])


class _State:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    async def value(self, path: str, default: Any = None) -> Any:
        return self.values.get(path, default)


class _Ctx:
    def __init__(self, values: dict[str, Any]) -> None:
        self.state = _State(values)


def test_the_renderer_fills_params_state_and_secrets_and_encodes_urls() -> None:
    call = compile_one(CALL).actions["order.notify"].to_json()["call"]
    secrets = Secrets(environ={"GOALRT_SECRET_TOKEN": "tok-123"})
    ctx = _Ctx({"orders.a/b.total": 9.5, "orders.a/b.items": ["x"]})
    out = asyncio.run(Renderer({"o": "a/b"}, ctx, secrets).render(call["args"], call["urls"]))
    assert out["url"] == "https://API.example.com:8443/orders/a%2Fb?total=9.5"
    assert out["headers"] == {"Authorization": "Bearer tok-123", "X-Brace": "{literal}"}
    assert out["json"] == {"order": "a/b", "items": [1, "two", {"three": ["x"]}]}
    assert secrets.redact({"echo": "Bearer tok-123"}) == {"echo": "Bearer [secret TOKEN]"}


def test_secrets_come_only_from_the_file_or_goalrt_secret_variables() -> None:
    secrets = Secrets(environ={"TOKEN": "x", "GOALRT_DATABASE_URL": "postgresql://..."})
    with pytest.raises(PermanentError, match="secret TOKEN is not set"):
        secrets.substitute("{secret.TOKEN}")


QUERY = """
type Order { }
action order.total(o: Order) {
  effect orders.{o}.totalled = true
  handler db.query
  with { database = "shop"  sql = "SELECT '{}'::jsonb AS j, sum(amount) FROM lines WHERE order_id = $1"
         params = ["{o}", state(orders.{o}.since)] }
}
"""


def test_sql_is_a_constant_taken_as_written_and_values_go_in_params() -> None:
    call = compile_one(QUERY).actions["order.total"].to_json()["call"]
    # Stored with braces doubled, so the worker's rendering gives the statement back exactly as written.
    assert call["args"]["sql"] == "SELECT '{{}}'::jsonb AS j, sum(amount) FROM lines WHERE order_id = $1"
    ctx = _Ctx({"orders.x' OR 1=1.since": 3})
    rendered = asyncio.run(Renderer({"o": "x' OR 1=1"}, ctx, Secrets()).render(call["args"], []))
    assert rendered["sql"] == "SELECT '{}'::jsonb AS j, sum(amount) FROM lines WHERE order_id = $1"
    assert rendered["params"] == ["x' OR 1=1", 3]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"SELECT * FROM t WHERE id = {o}"', None),
        ("state(orders.{o}.sql)", "sql must be a constant string"),
        ("1", "sql must be a constant string"),
    ],
)
def test_sql_refuses_anything_but_a_constant(value: str, message: str | None) -> None:
    text = f'type Order {{ }}\naction a(o: Order) {{ handler db.query with {{ database = "d"  sql = {value} }} }}'
    if message is None:  # a hole is no hole in sql: the text is sent as written (and PostgreSQL refuses it)
        sql = compile_one(text).actions["a"].to_json()["call"]["args"]["sql"]
        assert sql == "SELECT * FROM t WHERE id = {{o}}"
    else:
        assert any(message in p for p in problems(text)), problems(text)
