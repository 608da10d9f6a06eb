"""``on schedule "CRON"`` and ``every D`` on GDL goals: what they compile to, and each error with file:line:column."""

from __future__ import annotations

import pytest

from goalrt.errors import GdlError
from goalrt.gdl import compile_sources, source_for
from goalrt.gdl.compiled import CompiledWorkspace
from goalrt.gdl.runtime import runtime_json

TYPES = "type Region { }\n"


def compiled(goals: str) -> CompiledWorkspace:
    return compile_sources(
        [source_for("apps/a/types.gdl", TYPES), source_for("apps/a/goals.gdl", goals)], name="ws", apps=["a"]
    )


def problems(goals: str) -> list[str]:
    with pytest.raises(GdlError) as info:
        compiled(goals)
    return [line for line in str(info.value).split("\n") if line.startswith("apps/")]


def test_schedules_compile_with_their_options_and_constant_params() -> None:
    ws = compiled(
        """goal report(region: string, top: integer) {
  achieve reports.{region}.done == true
  on schedule "0 9 * * 1-5" timezone "Europe/Paris" catch_up all as report.weekdays { region = "eu" top = 10 }
  every 15m { region = "us"  top = 3 }
}
goal cleanup { achieve tmp.clean == true  on schedule "@daily" catch_up skip }
"""
    )
    report = ws.goals["report"]
    assert [s.to_json() for s in report.schedules] == [
        {
            "name": "report.weekdays",
            "cron": "0 9 * * 1-5",
            "every": None,
            "timezone": "Europe/Paris",
            "catch_up": "all",
            "params": {"region": "eu", "top": 10},
        },
        {
            "name": "report",
            "cron": None,
            "every": 900.0,
            "timezone": "UTC",
            "catch_up": "latest",
            "params": {"region": "us", "top": 3},
        },
    ]
    assert ws.to_json()["apps"]["a"]["goals"][1]["schedules"][0]["name"] == "report.weekdays"
    runtime = runtime_json(ws)
    assert runtime["schedules"] == [
        {"name": "cleanup", "goal_name": "cleanup", "params": {}, "options": {"cron": "@daily", "timezone": "UTC",
                                                                            "catch_up": "skip"}},
        {"name": "report.weekdays", "goal_name": "report", "params": {"region": "eu", "top": 10},
         "options": {"cron": "0 9 * * 1-5", "timezone": "Europe/Paris", "catch_up": "all"}},
        {"name": "report", "goal_name": "report", "params": {"region": "us", "top": 3},
         "options": {"every": 900.0, "timezone": "UTC", "catch_up": "latest"}},
    ]  # fmt: skip


def test_a_goal_without_schedules_keeps_its_json_and_hash() -> None:
    ws = compiled("goal g { achieve x == 1 }")
    assert "schedules" not in ws.to_json()["apps"]["a"]["goals"][0]
    assert "schedules" not in runtime_json(ws)


@pytest.mark.parametrize(
    ("goals", "expected"),
    [
        (
            'goal g { achieve x == 1  on schedule "61 * * * *" }',
            "apps/a/goals.gdl:1:38: goal g: schedule g: invalid cron '61 * * * *': bad minute",
        ),
        (
            'goal g { achieve x == 1\n  on schedule "0 9 * *" }',
            "apps/a/goals.gdl:2:15: goal g: schedule g: invalid cron '0 9 * *': expected 5 fields "
            "(minute hour day-of-month month day-of-week) or @hourly, @daily, @weekly, @monthly, @yearly; got 4",
        ),
        (
            'goal g { achieve x == 1\n  on schedule "0 9 * * *" timezone "Europe/Atlantis" }',
            "apps/a/goals.gdl:2:36: goal g: schedule g: unknown time zone 'Europe/Atlantis': "
            "use an IANA name such as UTC or Europe/Paris",
        ),
        (
            "goal g { achieve x == 1\n  every 500ms }",
            "apps/a/goals.gdl:2:9: goal g: schedule g: every must be whole seconds from 1s to 36500d",
        ),
        (
            'goal g { achieve x == 1\n  every 1h timezone "Europe/Paris" }',
            "apps/a/goals.gdl:2:12: goal g: schedule g: `every` ticks in UTC; a timezone needs a cron",
        ),
        (
            "goal g(r: string) { achieve x == 1\n  every 1h }",
            "apps/a/goals.gdl:2:3: goal g: schedule g: parameter r is not bound (give it in { r = ... })",
        ),
        (
            'goal g(r: string) { achieve x == 1\n  every 1h { r = "eu"  s = 1 } }',
            "apps/a/goals.gdl:2:24: goal g: schedule g: s is not a parameter of goal g (parameters: r)",
        ),
        (
            'goal g(r: string) { achieve x == 1\n  every 1h { r = "eu"  r = "us" } }',
            "apps/a/goals.gdl:2:24: goal g: schedule g: r is bound twice",
        ),
        (
            "goal g(r: string) { achieve x == 1\n  every 1h { r = other } }",
            "apps/a/goals.gdl:2:18: goal g: schedule g: r must be a constant, not other",
        ),
        (
            "goal g(n: integer) { achieve x == 1\n  every 1h { n = 1.5 } }",
            "apps/a/goals.gdl:2:18: goal g: schedule g: n is integer, got 1.5",
        ),
        (
            "goal g(r: Region) { achieve x == 1\n  every 1h { r = true } }",
            "apps/a/goals.gdl:2:18: goal g: schedule g: r is Region, got true",
        ),
        (
            "goal g { achieve x == 1\n  every 1h catch_up all catch_up skip }",
            "apps/a/goals.gdl:2:25: goal g: schedule option catch_up is given twice",
        ),
        (
            "goal g { achieve x == 1\n  every 1h\n  every 2h }",
            "apps/a/goals.gdl:3:3: goal g: schedule g: a schedule of that name is declared at apps/a/goals.gdl:2:3; "
            "name this one with `as`",
        ),
        (
            "goal g { achieve x == 1  every 1h as h }\ngoal h { achieve y == 1  every 2h }",
            "apps/a/goals.gdl:2:26: goal h: schedule h: a schedule of that name is declared at apps/a/goals.gdl:1:26; "
            "name this one with `as`",
        ),
        (
            "goal g { achieve x == 1\n  every 1h as {x} }",
            "apps/a/goals.gdl:2:15: goal g: invalid schedule name '{x}'",
        ),
        (
            "goal g { achieve x == 1\n  on schedule 5 }",
            "apps/a/goals.gdl:2:15: unexpected number 5; expected a string",
        ),
        (
            "goal g { achieve x == 1\n  every 1h catch_up never }",
            "apps/a/goals.gdl:2:21: unexpected name 'never'; expected 'skip', 'latest' or 'all'",
        ),
        (
            "goal g { achieve x == 1\n  every 10 }",
            "apps/a/goals.gdl:2:9: unexpected number 10; expected a duration (e.g. 30s, 1h30m)",
        ),
    ],
)
def test_schedule_errors_name_file_line_and_column(goals: str, expected: str) -> None:
    assert problems(goals) == [expected]
