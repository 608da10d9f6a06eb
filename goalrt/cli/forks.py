"""CLI commands for forks: fork create/list/drop, rewind (they act on the main line, so take no --fork)."""

from __future__ import annotations

import click

from goalrt.cli.support import AppContext, emit_json, json_option, pass_app, print_table


@click.group()
def fork() -> None:
    """Create, list and drop forks: isolated copies of the state for simulation."""


@fork.command("create")
@click.argument("name")
@click.option("--at", default=None, metavar="POS|TIME", help="Fork the state as it was here (default: now).")
@json_option("Print JSON.")
@pass_app
def fork_create(app: AppContext, name: str, at: str | None, as_json: bool) -> None:
    """Create fork NAME from the main line's state (now, or --at a past point)."""
    from goalrt.state import forks
    from goalrt.state.state import State

    with State.connect(app.url) as st:
        pos = None if at is None else st.position(at)
        created = forks.create(st.connection, name, at=pos)
    if as_json:
        emit_json(created.to_json())
    else:
        click.echo(f"fork {created.name} created at pos {created.base_pos} (schema {created.schema})")


@fork.command("list")
@json_option("Print JSON.")
@pass_app
def fork_list(app: AppContext, as_json: bool) -> None:
    """List the forks."""
    from goalrt.state import forks
    from goalrt.state.state import State

    with State.connect(app.url) as st:
        rows = forks.list_forks(st.connection)
    if as_json:
        for f in rows:
            emit_json(f.to_json())
    else:
        print_table(
            ("name", "base_pos", "schema", "created_at"),
            [(f.name, str(f.base_pos), f.schema, f.created_at.isoformat(timespec="seconds")) for f in rows],
        )


@fork.command("drop")
@click.argument("name")
@pass_app
def fork_drop(app: AppContext, name: str) -> None:
    """Drop fork NAME and everything in it."""
    from goalrt.state import forks
    from goalrt.state.state import State

    with State.connect(app.url) as st:
        forks.drop(st.connection, name)
    click.echo(f"fork {name} dropped")


@click.command("rewind")
@click.argument("at", metavar="POS|TIME")
@click.option("--name", default=None, help="The fork's name (default: rewind_POS).")
@json_option("Print JSON.")
@pass_app
def rewind(app: AppContext, at: str, name: str | None, as_json: bool) -> None:
    """Rewind to POS|TIME in a fork: the state as it was there, to act on with --fork (the log itself never rewinds).

    The same as `fork create NAME --at POS|TIME`; the main line is untouched.
    """
    from goalrt.state import forks
    from goalrt.state.state import State

    with State.connect(app.url) as st:
        pos = st.position(at)
        created = forks.create(st.connection, name or f"rewind_{pos}", at=pos)
    if as_json:
        emit_json(created.to_json())
    else:
        click.echo(f"fork {created.name} holds the state as it was at pos {created.base_pos}")
        click.echo(f"act on it with --fork {created.name} (e.g. goalrt --fork {created.name} state list)")


COMMANDS = (fork, rewind)
