"""CLI commands for GDL workspaces: init, gdl check/graph (no database), gdl load/status, test."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import click

from goalrt.cli.support import AppContext, ForkCommand, json_option, pass_app
from goalrt.errors import GoalrtError

if TYPE_CHECKING:
    from goalrt.gdl.testing import TestResult


@click.command("init")
@click.argument("name")
def init_cmd(name: str) -> None:
    """Create a workspace NAME with a small working example (apps, shared, tests, workers)."""
    from goalrt.gdl.scaffold import scaffold

    files = scaffold(name)
    click.echo(f"created workspace {name} ({len(files)} files); next: cd {name} && goalrt gdl check")


@click.group("gdl")
def gdl() -> None:
    """Check, draw and load GDL workspaces."""


@gdl.command("check")
@click.argument("path", default=".", type=click.Path(exists=True, file_okay=False))
@json_option("Print the compiled definitions as JSON.")
def check_cmd(path: str, as_json: bool) -> None:
    """Parse and check the workspace at PATH (default: here); print every problem, or a summary."""
    from goalrt.gdl import check

    compiled = check(path)
    if as_json:
        click.echo(json.dumps(compiled.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(f"ok: {compiled.summary()} (sha256 {compiled.content_hash[:12]})")


@gdl.command("load", cls=ForkCommand)
@click.argument("path", default=".", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--replace", is_flag=True, help="Load it even though the database runs another workspace (which it replaces)."
)
@pass_app
def load_cmd(app: AppContext, path: str, replace: bool) -> None:
    """Check the workspace at PATH and store it in the database as the version every worker runs.

    A database runs one workspace: loading another one is refused unless --replace.
    """
    from goalrt.db import schemas
    from goalrt.db.connect import connect
    from goalrt.gdl import check
    from goalrt.gdl.runtime import load

    compiled = check(path)
    with connect(app.url) as conn:
        schema = schemas.schema_for(conn, app.fork)
        loaded = load(conn, compiled, schema, replace=replace)
    runtime = loaded.runtime
    what = (
        f"{len(runtime['goal_types'])} goal types, {len(runtime['policies'])} policies, "
        f"{len(runtime['triggers'])} triggers, {len(runtime['limits'])} limits"
    )
    if loaded.created:
        click.echo(f"loaded {compiled.name} as version {loaded.version} (sha256 {loaded.content_hash[:12]}): {what}")
    else:
        click.echo(f"unchanged: {compiled.name} is version {loaded.version} (sha256 {loaded.content_hash[:12]})")


@gdl.command("status", cls=ForkCommand)
@json_option("Print the current version's definitions as JSON.")
@pass_app
def status_cmd(app: AppContext, as_json: bool) -> None:
    """Show the GDL version loaded in the database (the one workers plan with)."""
    from goalrt.db import schemas
    from goalrt.db.connect import connect
    from goalrt.gdl.runtime import current

    with connect(app.url) as conn:
        schema = schemas.schema_for(conn, app.fork)
        defs = current(conn, schema)
    if defs is None:
        raise GoalrtError("no GDL definitions loaded: run `goalrt gdl load [PATH]`")
    if as_json:
        click.echo(json.dumps({"version": defs.version, **defs.body}, indent=2, sort_keys=True))
    else:
        click.echo(f"{defs.workspace} version {defs.version} (sha256 {defs.content_hash[:12]})")


@click.command("test")
@click.argument("path", default=".", type=click.Path(exists=True, file_okay=False))
@click.option("-k", "keyword", default=None, metavar="TEXT", help="Run only the tests whose name contains TEXT.")
@click.option(
    "--handlers",
    multiple=True,
    metavar="MODULE",
    help="Import handler modules (default: `handlers` in goalrt.toml); repeatable.",
)
@click.option("--timeout", default=60.0, show_default=True, help="Seconds a test's goals may take to settle.")
@pass_app
def test_cmd(app: AppContext, path: str, keyword: str | None, handlers: tuple[str, ...], timeout: float) -> None:
    """Run the workspace's `test` blocks, each as a simulation in a fork of its own; exit 1 if one fails."""
    from goalrt.db import migrate
    from goalrt.gdl import check
    from goalrt.gdl.testing import quiet_workers, run_tests, select, summary
    from goalrt.gdl.workspace import find_root, manifest_handlers
    from goalrt.goals.registry import default_registry, import_modules

    compiled = check(path)
    root = find_root(path)
    import_modules(handlers or manifest_handlers(root), root)
    tests = select(compiled, keyword)
    if not tests:
        raise GoalrtError(f"no tests to run in {root}" + (f" whose name contains {keyword!r}" if keyword else ""))
    quiet_workers()
    migrate.upgrade(app.url)
    started = time.monotonic()

    def report(result: TestResult) -> None:
        status = "PASSED" if result.passed else "FAILED"
        click.echo(f"{result.where}::{result.name} {status} ({result.seconds:.2f}s)")
        for failure in result.failures:
            for line in failure.splitlines():
                click.echo(f"    {line}")

    results = run_tests(app.url, compiled, default_registry, tests, timeout=timeout, report=report)
    line = summary(results, time.monotonic() - started)
    click.echo(line)
    if not all(r.passed for r in results):
        raise SystemExit(1)


@gdl.command("import-pddl")
@click.argument("domain")
@click.argument("problem")
@click.option(
    "--to", "to", default=None, metavar="DIR", help="The folder to write (new or empty; default: the problem's name)."
)
def import_pddl_cmd(domain: str, problem: str, to: str | None) -> None:
    """Write the PDDL task DOMAIN PROBLEM (STRIPS) as a GDL workspace: types, pure actions, goal `solve`, a test."""
    from goalrt.gdl.pddl import write_workspace
    from goalrt.planner.pddl import load_pddl

    task = load_pddl(domain, problem)
    folder = to or task.name
    files = write_workspace(task, folder)
    click.echo(f"wrote workspace {folder} ({len(files)} files); next: goalrt gdl check {folder}")


@gdl.command("graph")
@click.argument("path", default=".", type=click.Path(exists=True, file_okay=False))
def graph_cmd(path: str) -> None:
    """Print a Mermaid flowchart of the goals, actions, events and state paths of the workspace at PATH."""
    from goalrt.gdl import check
    from goalrt.gdl.graph import mermaid

    click.echo(mermaid(check(path)), nl=False)


COMMANDS = (init_cmd, gdl, test_cmd)

__all__ = ["COMMANDS"]
