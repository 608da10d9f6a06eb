"""Fuzz every entry point with deep, wide, huge and odd JSON (issue 15's proof for item 6).

Each value goes through the SQL functions (as ``goalrt_writer``), the sync
and async Python clients and a few CLI commands. Each call either stores the
value, which then reads back exactly (``goalrt.db.jsontext``), or is refused
with one line (a goalrt SQLSTATE, or the server's own for text jsonb cannot
hold), never a traceback. A value nested deeper than 100 levels is always
refused, a clean one up to 100 levels always stored. Afterwards
``EventLog.read``/``follow`` (sync and async) read the whole log and a worker
finishes every goal, with rows too deep for Python planted among them.

The values: a fixed set (nesting at 0, 99, 100, 101, 1000 and 5000 levels,
10,000-key objects, a 2 MB string, U+0000, lone surrogates, 1e400, -0,
5000-digit integers, duplicate and empty keys, ...) plus random ones.
Bounded for CI (a few seconds). Longer runs:

    GOALRT_FUZZ_ITERATIONS=2000 GOALRT_FUZZ_SEED=7 pytest --timeout=0 tests/integration/test_json_fuzz.py

(``make fuzz``; ``--timeout=0`` lifts the suite's 300 s per test).

``GOALRT_FUZZ_ITERATIONS`` is the number of random values (default 12; from
100 on they are larger, some with a string of up to 8 MB);
``GOALRT_FUZZ_SEED`` picks them (default 0). A failure names the seed and
the value.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from goalrt import AsyncEventLog, AsyncGoals, AsyncState, EventLog, Goals, Registry, State, Step
from goalrt.db.connect import setup_connection
from goalrt.db.jsontext import MAX_JSON_DEPTH, UnreadableJson, decode
from goalrt.errors import GoalrtError
from tests.acceptance.test_cli import goalrt

from .test_worker import until_finished, with_worker

ITERATIONS = int(os.environ.get("GOALRT_FUZZ_ITERATIONS", "12"))
SEED = int(os.environ.get("GOALRT_FUZZ_SEED", "0"))
LONG = ITERATIONS >= 100
# What the server may answer for text jsonb cannot hold: invalid input (a lone surrogate),
# an untranslatable character (U+0000), a number out of numeric's range, a nesting it cannot parse.
SERVER_REFUSALS = {"22P02", "22P05", "22003", "54001"}
GOALRT_REFUSALS = {"GR002", "GR003", "GR008", "GR010"}
W = "fuzz"

# -- values ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """A JSON text, how deep its value nests, and whether jsonb can hold it (no U+0000, no lone surrogate, ...)."""

    name: str
    text: str
    depth: int
    clean: bool = True

    def wrapped(self) -> Sample:
        """The sample as the value of an object's key, for fields that must be objects."""
        return Sample(self.name, '{"v":' + self.text + "}", self.depth + 1, self.clean)

    @property
    def expected(self) -> Any:
        return decode(self.text)


CLEAN_SCALARS = [
    "0", "-0", "-0.0", "1", "-17", "3.25", "1e400", "1E-400", "-1.5e-300", "0.10000000000000000000001",
    "7" * 5000, "-" + "9" * 4400, "1.7976931348623157e308", "5e-324", "true", "false", "null", '""', '"plain"',
    '"\\u00e9\\u4e2d\\ud83d\\ude00 \\u00e9 \u4e2d"', '"\\"\\\\\\/\\b\\f\\n\\r\\t"', '"[[{{]]}}"', '"\\u001f\\u007f"',
]  # fmt: skip
UNCLEAN_SCALARS = ['"\\u0000"', '"a\\u0000b"', '"\\ud800"', '"x\\udc00"', "1e200000"]
KEYS = ["k", "", "a", "\\u00e9", "[{", '\\"', "\\ud83d\\ude00"]


def nest(levels: int, inner: str = "1") -> str:
    """Arrays and objects in turn around ``inner``, ``levels`` deep (iteratively: any depth)."""
    opening = ["[" if i % 2 == 0 else '{"s":' for i in range(levels)]
    closing = ["]" if i % 2 == 0 else "}" for i in reversed(range(levels))]
    return "".join(opening) + inner + "".join(closing)


def fixed_samples() -> list[Sample]:
    wide_object = "{" + ",".join(f'"k{i}":{i}' for i in range(10_000)) + "}"
    wide_array = "[" + ",".join(f'"{i}"' for i in range(10_000)) + "]"
    huge = '"' + "x" * (2 << 20) + "\\u00e9\\ud83d\\ude00" + '"'  # 2 MB
    out = [Sample(f"depth {d}", nest(d), d) for d in (0, 1, 99, 100, 101, 1000, 5000)]
    out += [
        Sample("empty containers at the limit", "[" * 100 + "]" * 100, 100),
        Sample("empty containers past it", '{"":' * 100 + "{}" + "}" * 100, 101),
        Sample("10k keys", wide_object, 1),
        Sample("10k elements", wide_array, 1),
        Sample("10k keys at the limit", nest(99, wide_object), 100),
        Sample("10k keys past it", nest(100, wide_object), 101),
        Sample("2 MB string", huge, 0),
        Sample("a 100 kB key", '{"' + "k" * 100_000 + '":1}', 1),
        Sample("duplicate keys", '{"a":1,"a":[2],"":3,"":{"":4}}', 2),
        Sample("a duplicate hides a deep value", '{"a":' + nest(150) + ',"a":1}', 1),
        Sample("brackets in strings", '["]]]]", "[[[[", {"}": "{{"}]', 2),
    ]
    out += [Sample(f"scalar {s[:20]}", s, 0) for s in CLEAN_SCALARS]
    out += [Sample(f"unclean {s}", s, 0, clean=False) for s in UNCLEAN_SCALARS]
    out += [Sample(f"unclean key {k}", '{"' + k + '":1}', 1, clean=False) for k in ("\\u0000", "\\udfff")]
    return out


def random_sample(rng: random.Random, index: int) -> Sample:
    """A random tree: a spine ``depth`` containers deep with shallow siblings, odd scalars and keys."""
    depth = rng.choice([rng.randint(0, 12), rng.randint(95, 105), rng.randint(95, 105), rng.randint(150, 3000)])
    clean = True
    budget = (256 << 10) if LONG else (32 << 10)  # characters of siblings
    huge = LONG and rng.random() < 0.05  # one string of up to 8 MB in some values of a long run

    def keys() -> Iterator[str]:
        """Yield an object's keys: the odd ones in random order, then k0, k1, ...

        Never a duplicate: it would hide a U+0000 from Python but not from jsonb's parser (the fixed
        values hold duplicates).
        """
        yield from rng.sample(KEYS, len(KEYS))
        yield from (f"k{i}" for i in itertools.count())

    def scalar() -> str:
        nonlocal clean, budget, huge
        if rng.random() < 0.04:
            clean = False
            return rng.choice(UNCLEAN_SCALARS)
        if huge and rng.random() < 0.1:
            huge = False
            return '"' + "y" * rng.randint(1, 8 << 20) + '"'
        text = rng.choice(CLEAN_SCALARS)
        if len(text) > budget:
            text = rng.choice(CLEAN_SCALARS[:6])
        budget -= len(text)
        return text

    def small(levels: int) -> str:  # a sibling: at most `levels` deep, within the budget
        nonlocal budget
        if levels <= 0 or rng.random() < 0.5 or budget <= 0:
            return scalar()
        n = rng.choice([0, 1, 2, 3, 3, 1000 if rng.random() < 0.05 else 2])
        is_object = rng.random() < 0.5
        names = keys()
        items: list[str] = []
        while len(items) < n and budget > 0:
            key = f'"{next(names)}":' if is_object else ""
            items.append(key + small(levels - 1))
            budget -= len(key) + 1
        return ("{" if is_object else "[") + ",".join(items) + ("}" if is_object else "]")

    empty_inner = depth > 0 and rng.random() < 0.2  # then the spine's last container is an empty one
    opening: list[str] = []
    closing: list[str] = []
    for level in range(depth - 1 if empty_inner else depth):
        room = min(3, depth - level - 1)
        before = [small(room) for _ in range(rng.choice([0, 0, 1, 2]))]
        after = [small(room) for _ in range(rng.choice([0, 0, 1]))]
        if rng.random() < 0.5:
            opening.append("[" + "".join(b + "," for b in before))
            closing.append("".join("," + a for a in after) + "]")
        else:  # the spine's key is never one of KEYS
            names = keys()
            opening.append("{" + "".join(f'"{next(names)}":{b},' for b in before) + '"spine":')
            closing.append("".join(f',"{next(names)}":{a}' for a in after) + "}")
    inner = rng.choice(["[]", "{}"]) if empty_inner else scalar()
    text = "".join(opening) + inner + "".join(reversed(closing))
    return Sample(f"random #{index} (seed {SEED})", text, depth, clean)


def samples() -> Iterator[Sample]:
    """The fixed values, then ITERATIONS random ones (made one at a time: a long run holds one in memory)."""
    yield from fixed_samples()
    rng = random.Random(SEED)
    for i in range(ITERATIONS):
        yield random_sample(rng, i)


# -- outcomes -------------------------------------------------------------------------------------------

Refusal = psycopg.Error | GoalrtError


def exact(number: float | Decimal) -> Decimal:
    """The decimal a number stands for (a float's shortest text, as JSON writes it)."""
    return Decimal(repr(number)) if isinstance(number, float) else Decimal(number)


def same(got: Any, sent: Any) -> bool:
    """Whether two decoded JSON values are equal, numbers by decimal value, never a bool for a number."""
    if isinstance(sent, bool) or sent is None or isinstance(sent, str):
        return type(got) is type(sent) and got == sent
    if isinstance(sent, int | float | Decimal):
        return isinstance(got, int | float | Decimal) and not isinstance(got, bool) and exact(got) == exact(sent)
    if isinstance(sent, list):
        return isinstance(got, list) and len(got) == len(sent) and all(map(same, got, sent))
    return isinstance(got, dict) and got.keys() == sent.keys() and all(same(got[k], sent[k]) for k in sent)


def assert_refused(sample: Sample, where: str, exc: Refusal) -> None:
    """A refusal is one line; a clean value up to the limit is never refused, a deeper one says the limit."""
    label = f"{where}: {sample.name}"
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(exc, psycopg.Error):
        message = exc.diag.message_primary or ""
        assert sqlstate in GOALRT_REFUSALS | SERVER_REFUSALS, f"{label}: {sqlstate} {message}"[:500]
    else:
        message = str(exc)
    assert message and "\n" not in message, f"{label}: {exc!r}"[:500]
    assert not (sample.clean and sample.depth <= MAX_JSON_DEPTH), f"{label}: refused: {message}"[:500]
    if sample.clean and sqlstate != "54001":  # too deep: the message says so and names the limit
        assert "nested" in message and str(MAX_JSON_DEPTH) in message, f"{label}: {message}"[:500]
        assert sqlstate in (None, "GR010"), f"{label}: {sqlstate} {message}"[:500]


def assert_stored(sample: Sample, where: str, got: Any) -> None:
    label = f"{where}: {sample.name}"
    assert sample.clean and sample.depth <= MAX_JSON_DEPTH, f"{label}: stored, {sample.depth} levels deep"
    assert same(got, sample.expected), f"{label}: read back differs"


def check_outcome(sample: Sample, where: str, call: Callable[[], Any], read_back: Callable[[Any], Any]) -> bool:
    """Run ``call``: stored and read back exactly, or refused in one line; return whether it was stored."""
    try:
        result = call()
    except (psycopg.Error, GoalrtError) as exc:
        assert_refused(sample, where, exc)
        return False
    assert_stored(sample, where, read_back(result))
    return True


async def check_outcome_async(
    sample: Sample, where: str, call: Callable[[], Awaitable[Any]], read_back: Callable[[Any], Awaitable[Any]]
) -> bool:
    try:
        result = await call()
    except (psycopg.Error, GoalrtError) as exc:
        assert_refused(sample, where, exc)
        return False
    assert_stored(sample, where, await read_back(result))
    return True


def one_value(conn: psycopg.Connection, query: str, *args: Any) -> Any:
    row = conn.execute(query, args).fetchone()
    assert row is not None
    return row[0]


def stored_json(conn: psycopg.Connection, query: str, *args: Any) -> Any:
    """Read a jsonb as text and decode it as goalrt's readers do."""
    return decode(one_value(conn, query, *args))


# -- the SQL functions, as a writer ----------------------------------------------------------------------

_paths = itertools.count()
EVENT = "SELECT data::text FROM goalrt.event_data WHERE id = %s"
STEP_RESULT = "SELECT result::text FROM goalrt.goal_steps WHERE goal_id = %s"


def sql_entry_points(conn: psycopg.Connection, s: Sample) -> None:
    """Drive each SQL function with ``s`` where it takes a caller's JSON; check each outcome."""
    obj = s.wrapped()
    check_outcome(
        s,
        "append_event data",
        lambda: one_value(conn, "SELECT goalrt.append_event('fuzz', 't', %s::jsonb)", s.text),
        lambda i: stored_json(conn, EVENT, i),
    )
    check_outcome(
        obj,
        "append_event metadata",
        lambda: one_value(conn, "SELECT goalrt.append_event('fuzz', 't', '{}', %s::jsonb)", obj.text),
        lambda i: stored_json(conn, "SELECT metadata::text FROM goalrt.event_data WHERE id = %s", i),
    )
    batch = '[{"stream": "fuzz", "type": "t"}, {"stream": "fuzz", "type": "t", "data": ' + s.text + "}]"
    check_outcome(
        s,
        "append_events data",
        lambda: conn.execute("SELECT goalrt.append_events(%s::jsonb)", (batch,)).fetchall()[1][0],
        lambda i: stored_json(conn, EVENT, i),
    )
    path = f"fuzz.p{next(_paths)}"
    change = '[{"op": "set", "path": "' + path + '", "value": ' + s.text + "}]"
    check_outcome(
        s,
        "change_state value",
        lambda: conn.execute("SELECT * FROM goalrt.change_state(%s::jsonb)", (change,)).fetchall(),
        lambda _: stored_json(conn, "SELECT value::text FROM goalrt.state WHERE path = %s", path),
    )
    check_outcome(
        obj,
        "submit_goal params",
        lambda: one_value(conn, "SELECT id FROM goalrt.submit_goal('job', %s::jsonb)", obj.text),
        lambda i: stored_json(conn, "SELECT params::text FROM goalrt.goals WHERE id = %s", i),
    )
    worker_calls(conn, s)


def worker_calls(conn: psycopg.Connection, s: Sample) -> None:
    """A goal of its own: plan it with ``s`` as args, then complete with it as result, or ask and resume with it."""
    gid = one_value(conn, "SELECT id FROM goalrt.submit_goal('flow', '{}')")
    claimed = conn.execute("SELECT goal_id, epoch FROM goalrt.claim_goals_v2(%s, 100, 60, '{flow}')", (W,))
    (epoch,) = [epoch for goal_id, epoch in claimed if goal_id == gid]
    head = f'[{{"goal_id": {gid}, "epoch": {epoch}, '
    plan = "SELECT * FROM goalrt.plan_goals_v1(%s, %s::jsonb, 60)"
    planned = check_outcome(
        s,
        "plan_goals_v1 args",
        lambda: conn.execute(plan, (W, head + '"steps": [{"action": "work", "args": ' + s.text + "}]}]")).fetchall(),
        lambda _: stored_json(conn, "SELECT args::text FROM goalrt.goal_steps WHERE goal_id = %s", gid),
    )
    if planned:
        done = head + '"seq": 1, "outcome": "complete", "result": ' + s.text + "}]"
        check_outcome(
            s,
            "complete_steps_v1 result",
            lambda: conn.execute("SELECT * FROM goalrt.complete_steps_v1(%s, %s::jsonb, 60)", (W, done)).fetchall(),
            lambda _: stored_json(conn, STEP_RESULT, gid),
        )
    else:
        conn.execute(plan, (W, head + '"steps": [{"action": "a", "kind": "ask", "args": {"prompt": "?"}}]}]'))
        obj = s.wrapped()
        check_outcome(
            obj,
            "resume_goal data",
            lambda: conn.execute("SELECT * FROM goalrt.resume_goal(%s, %s::jsonb)", (gid, obj.text)).fetchall(),
            lambda _: stored_json(conn, STEP_RESULT, gid),
        )
    if one_value(conn, "SELECT status FROM goalrt.goals WHERE id = %s", gid) not in ("complete", "failed"):
        conn.execute("SELECT * FROM goalrt.cancel_goal(%s)", (gid,))


@pytest.fixture
def writer(db_url: str) -> Iterator[psycopg.Connection]:
    """A connection as goalrt_writer, with goal types job and flow registered."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        setup_connection(conn)  # jsonb columns decoded as goalrt's readers decode them
        for name in ("job", "flow"):
            conn.execute("SELECT goalrt.register_goal_type(%s, '{}')", (name,))
        conn.execute("SET ROLE goalrt_writer")
        yield conn


def test_every_sql_entry_point_stores_exactly_or_refuses_in_one_line(writer: psycopg.Connection) -> None:
    for sample in samples():
        sql_entry_points(writer, sample)


# -- the Python clients and the CLI ----------------------------------------------------------------------


def python_cases() -> Iterator[tuple[Sample, Any]]:
    """Each sample with its Python value (where Python can build it from text), and 5000 levels built in Python."""
    for s in samples():
        value = decode(s.text)
        if not isinstance(value, UnreadableJson):
            yield s, value
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    yield Sample("depth 5000 built in Python", nest(5000), 5000), deep


def python_entry_points(log: EventLog, state: State, goals: Goals, s: Sample, value: Any) -> None:
    if value is not None:  # append's data=None means no data: {}
        check_outcome(
            s,
            "EventLog.append",
            lambda: log.position(log.append("py", "t", value)),
            lambda pos: log.read(pos - 1, 1)[0].data,
        )
    path = f"py.p{next(_paths)}"
    check_outcome(s, "State.set", lambda: state.set(path, value), lambda _: state.value(path))
    check_outcome(
        s.wrapped(), "Goals.submit", lambda: goals.submit("job", {"v": value}).id, lambda i: goals.get(i).params
    )


async def python_entry_points_async(
    log: AsyncEventLog, state: AsyncState, goals: AsyncGoals, s: Sample, value: Any
) -> None:
    if value is not None:
        await check_outcome_async(
            s, "AsyncEventLog.append", lambda: log.append("apy", "t", value), lambda i: _read(log, i)
        )
    path = f"apy.p{next(_paths)}"
    await check_outcome_async(s, "AsyncState.set", lambda: state.set(path, value), lambda _: state.value(path))
    await check_outcome_async(
        s.wrapped(), "AsyncGoals.submit", lambda: goals.submit("job", {"v": value}), lambda r: _params(goals, r.id)
    )


def test_the_python_clients_store_exactly_or_refuse_in_one_line(writer: psycopg.Connection, db_url: str) -> None:
    with EventLog.connect(db_url) as log, State.connect(db_url) as state, Goals.connect(db_url) as goals:
        for s, value in python_cases():
            python_entry_points(log, state, goals, s, value)

    async def run_async() -> None:
        async with (
            await AsyncEventLog.connect(db_url) as log,
            await AsyncState.connect(db_url) as state,
            await AsyncGoals.connect(db_url) as goals,
        ):
            for s, value in python_cases():
                await python_entry_points_async(log, state, goals, s, value)

    asyncio.run(run_async())


async def _read(log: AsyncEventLog, event_id: int) -> Any:
    pos = await log.position(event_id)
    assert pos is not None
    (event,) = await log.read(pos - 1, 1)
    return event.data


async def _params(goals: AsyncGoals, goal_id: int) -> Any:
    return (await goals.get(goal_id)).params


def cli_cases() -> list[tuple[str, Sample]]:
    """A few CLI calls (each is a process): the limit, one past it, U+0000, odd numbers; more in a long run."""
    fixed = {s.name: s for s in fixed_samples()}
    cases = [
        ("events", fixed["depth 100"]),
        ("state", fixed["depth 101"]),
        ("submit", fixed[f"unclean {UNCLEAN_SCALARS[0]}"]),
        ("events", Sample("odd numbers and keys", '{"":[1e400,-0,' + "7" * 5000 + '],"a":1,"a":2}', 2)),
    ]
    rng = random.Random(SEED)
    extra = (random_sample(rng, i) for i in range(ITERATIONS // 50))
    commands = itertools.cycle(["events", "state", "submit"])
    return cases + [(next(commands), s) for s in extra if len(s.text) < 100_000]  # an argument's limit is 128 kB


def cli_call(n: int, command: str, s: Sample) -> tuple[list[str], str, Sample]:
    """The arguments of call ``n``, the query that reads back what it stored, and the value as sent."""
    if command == "events":
        args = ["events", "append", "--stream", f"cli{n}", "--type", "t", "--data", s.text]
        return args, f"SELECT data::text FROM goalrt.event_data WHERE stream = 'cli{n}'", s
    if command == "state":
        return ["state", "set", f"cli.p{n}", s.text], f"SELECT value::text FROM goalrt.state WHERE path = 'cli.p{n}'", s
    args = ["submit", "job", "--key", f"cli{n}", "--params", s.wrapped().text]
    return args, f"SELECT params::text FROM goalrt.goals WHERE idempotency_key = 'cli{n}'", s.wrapped()


def test_the_cli_stores_exactly_or_refuses_in_one_line(writer: psycopg.Connection, db_url: str) -> None:
    calls = [cli_call(n, command, s) for n, (command, s) in enumerate(cli_cases())]
    with ThreadPoolExecutor(4) as pool:  # a process each: run them side by side
        results = list(pool.map(lambda call: goalrt(db_url, *call[0]), calls))
    for (args, query, sample), result in zip(calls, results, strict=True):
        where = f"goalrt {args[0]}"
        if result.returncode == 0:
            assert_stored(sample, where, stored_json(writer, query))
        else:
            assert result.stdout == "" and "Traceback" not in result.stderr, result.stderr[-500:]
            assert result.stderr.startswith("goalrt: error: ") and result.stderr.count("\n") == 1, result.stderr[:500]
            assert_refused(sample, where, GoalrtError(result.stderr.strip()))


# -- readers and a worker ---------------------------------------------------------------------------------

POISON = nest(5000)  # jsonb holds it; Python cannot decode it


def test_readers_and_a_worker_go_through_everything(writer: psycopg.Connection, db_url: str) -> None:
    goal_ids = []
    for s in samples():
        with contextlib.suppress(psycopg.Error):
            writer.execute("SELECT goalrt.append_event('fuzz', 't', %s::jsonb)", (s.text,))
        with contextlib.suppress(psycopg.Error):
            goal_ids.append(one_value(writer, "SELECT id FROM goalrt.submit_goal('job', %s::jsonb)", s.wrapped().text))
    writer.execute("RESET ROLE")
    # As the tables' owner: rows from before migration 0010, which Python cannot decode.
    writer.execute(
        "INSERT INTO goalrt.event_data (stream, type, data, metadata)"
        " VALUES ('fuzz', 'poison', %s::jsonb, jsonb_build_object('m', %s::jsonb))",
        (POISON, POISON),
    )
    poisoned = one_value(writer, "SELECT id FROM goalrt.submit_goal('job', '{}')")
    writer.execute(
        "UPDATE goalrt.goals SET params = jsonb_build_object('v', %s::jsonb) WHERE id = %s", (POISON, poisoned)
    )
    total = one_value(writer, "SELECT count(*) FROM goalrt.event_data")

    with EventLog.connect(db_url) as log:
        read, after = [], 0
        while page := log.read(after, 100):
            read += page
            after = page[-1].pos
        followed = list(itertools.islice(log.follow(0, stop=threading.Event()), total))
    assert len(read) == len(followed) == total
    assert sum(isinstance(e.data, UnreadableJson) for e in read) == 1

    async def read_async() -> tuple[int, int]:
        async with await AsyncEventLog.connect(db_url) as alog:
            got = 0
            async for _ in alog.follow(0):
                got += 1
                if got == total:
                    break
            return len(await alog.read(0, total + 10)), got

    assert asyncio.run(read_async()) == (total, total)

    registry = Registry()

    @registry.goal("job")
    def job(p: dict[str, Any]) -> list[Step]:
        return [Step("echo", {})]

    @registry.action("echo")
    def echo(args: dict[str, Any], ctx: Any) -> Any:
        return ctx.params.get("v")

    async def body(goals: AsyncGoals, worker: Any) -> None:
        infos = await until_finished(goals, poisoned, *goal_ids, timeout=120)
        assert infos[0].status == "failed" and "params cannot be read" in str(infos[0].last_error)
        for info in infos[1:]:
            assert info.status == "complete", (info.id, info.last_error)
            assert same(info.steps[0].result, info.params["v"]), info.id

    asyncio.run(with_worker(db_url, registry, body))
