"""CLI commands for GDL workspaces: init, gdl check, gdl graph (no database), gdl load, gdl status."""

from __future__ import annotations

import json

import click

from goalrt import forks
from goalrt.cli_support import AppContext, fork_option, pass_app
from goalrt.database import connect
from goalrt.errors import GoalrtError
from goalrt.gdl import check
from goalrt.gdl.graph import mermaid
from goalrt.gdl.runtime import current, load, runtime_json
from goalrt.gdl.scaffold import scaffold


@click.command("init")
@click.argument("name")
def init_cmd(name: str) -> None:
    """Create a workspace NAME with a small working example (apps, shared, tests, workers)."""
    files = scaffold(name)
    click.echo(f"created workspace {name} ({len(files)} files); next: cd {name} && goalrt gdl check")


@click.group("gdl")
def gdl() -> None:
    """Check, draw and load GDL workspaces."""


@gdl.command("check")
@click.argument("path", default=".", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the compiled definitions as JSON.")
def check_cmd(path: str, as_json: bool) -> None:
    """Parse and check the workspace at PATH (default: here); print every problem, or a summary."""
    compiled = check(path)
    if as_json:
        click.echo(json.dumps(compiled.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(f"ok: {compiled.summary()} (sha256 {compiled.content_hash[:12]})")


@gdl.command("load")
@click.argument("path", default=".", type=click.Path(exists=True, file_okay=False))
@fork_option
@pass_app
def load_cmd(app: AppContext, path: str) -> None:
    """Check the workspace at PATH and store it in the database as the version every worker runs."""
    compiled = check(path)
    with connect(app.url) as conn:
        schema = forks.schema_for(conn, app.fork)
        loaded = load(conn, compiled, schema)
    runtime = runtime_json(compiled)
    what = (
        f"{len(runtime['goal_types'])} goal types, {len(runtime['policies'])} policies, "
        f"{len(runtime['triggers'])} triggers, {len(runtime['limits'])} limits"
    )
    if loaded.created:
        click.echo(f"loaded {compiled.name} as version {loaded.version} (sha256 {loaded.content_hash[:12]}): {what}")
    else:
        click.echo(f"unchanged: {compiled.name} is version {loaded.version} (sha256 {loaded.content_hash[:12]})")


@gdl.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the current version's definitions as JSON.")
@fork_option
@pass_app
def status_cmd(app: AppContext, as_json: bool) -> None:
    """Show the GDL version loaded in the database (the one workers plan with)."""
    with connect(app.url) as conn:
        schema = forks.schema_for(conn, app.fork)
        defs = current(conn, schema)
    if defs is None:
        raise GoalrtError("no GDL definitions loaded: run `goalrt gdl load [PATH]`")
    if as_json:
        click.echo(json.dumps({"version": defs.version, **defs.body}, indent=2, sort_keys=True))
    else:
        click.echo(f"{defs.workspace} version {defs.version} (sha256 {defs.content_hash[:12]})")


@gdl.command("graph")
@click.argument("path", default=".", type=click.Path(exists=True, file_okay=False))
def graph_cmd(path: str) -> None:
    """Print a Mermaid flowchart of the goals, actions, events and state paths of the workspace at PATH."""
    click.echo(mermaid(check(path)), nl=False)


COMMANDS = (init_cmd, gdl)

__all__ = ["COMMANDS"]
