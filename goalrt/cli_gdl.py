"""CLI commands for GDL workspaces: init, gdl check, gdl graph. None of them needs a database."""

from __future__ import annotations

import json

import click

from goalrt.gdl import check
from goalrt.gdl.graph import mermaid
from goalrt.gdl.scaffold import scaffold


@click.command("init")
@click.argument("name")
def init_cmd(name: str) -> None:
    """Create a workspace NAME with a small working example (apps, shared, tests, workers)."""
    files = scaffold(name)
    click.echo(f"created workspace {name} ({len(files)} files); next: cd {name} && goalrt gdl check")


@click.group("gdl")
def gdl() -> None:
    """Check and draw GDL workspaces."""


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


@gdl.command("graph")
@click.argument("path", default=".", type=click.Path(exists=True, file_okay=False))
def graph_cmd(path: str) -> None:
    """Print a Mermaid flowchart of the goals, actions, events and state paths of the workspace at PATH."""
    click.echo(mermaid(check(path)), nl=False)


COMMANDS = (init_cmd, gdl)

__all__ = ["COMMANDS"]
