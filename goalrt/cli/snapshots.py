"""CLI commands for snapshots of the state: snapshot create/list/show/every."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from goalrt.cli.state import print_entries
from goalrt.cli.support import AppContext, ForkGroup, clip, emit_json, json_option, pass_app, print_table

if TYPE_CHECKING:
    from goalrt.state.snapshots import Snapshot


@click.group(cls=ForkGroup)
def snapshot() -> None:
    """Take, list and show snapshots of the state."""


def _print_snapshots(rows: list[Snapshot]) -> None:
    print_table(
        ("name", "pos", "paths", "tags", "created_at", "note"),
        [
            (
                s.name or "(auto)",
                str(s.pos),
                str(s.paths),
                ",".join(s.tags),
                s.created_at.isoformat(timespec="seconds"),
                clip(s.note or "", 40),
            )
            for s in rows
        ],
    )


@snapshot.command("create")
@click.argument("name")
@click.option("--tag", "tags", multiple=True, metavar="T", help="A tag (repeatable).")
@click.option("--note", default=None, metavar="TEXT", help="A note to keep with it.")
@json_option("Print JSON.")
@pass_app
def snapshot_create(app: AppContext, name: str, tags: tuple[str, ...], note: str | None, as_json: bool) -> None:
    """Take a snapshot of the state at the head of the log, named NAME."""
    from goalrt.state import snapshots

    with app.state() as st:
        snap = snapshots.create(st, name, tags=tags, note=note)
    if as_json:
        emit_json(snap.to_json())
    else:
        click.echo(f"snapshot {snap.name} at pos {snap.pos}: {snap.paths} paths ({snap.written} entries written)")


@snapshot.command("list")
@click.option("--auto", "include_auto", is_flag=True, help="Include the automatic snapshots.")
@json_option("Print JSON.")
@pass_app
def snapshot_list(app: AppContext, include_auto: bool, as_json: bool) -> None:
    """List the named snapshots (with --auto, the automatic ones too)."""
    from goalrt.state import snapshots

    with app.state() as st:
        rows = snapshots.list_snapshots(st, include_auto=include_auto)
    if as_json:
        for s in rows:
            emit_json(s.to_json())
    else:
        _print_snapshots(rows)


@snapshot.command("show")
@click.argument("name")
@click.argument("pattern", required=False)
@json_option("Print JSON.")
@pass_app
def snapshot_show(app: AppContext, name: str, pattern: str | None, as_json: bool) -> None:
    """Show snapshot NAME and the state it holds (under PATTERN)."""
    from goalrt.state import snapshots

    with app.state() as st:
        snap = snapshots.get(st, name)
        entries = snapshots.contents(st, snap, pattern)
    if as_json:
        emit_json({**snap.to_json(), "state": [e.to_json() for e in entries]})
        return
    tags = f", tags {','.join(snap.tags)}" if snap.tags else ""
    click.echo(f"snapshot {snap.name} at pos {snap.pos}, {snap.paths} paths{tags}, taken {snap.created_at.isoformat()}")
    if snap.note:
        click.echo(f"note: {snap.note}")
    print_entries(entries)


@snapshot.command("every")
@click.argument("n", required=False, type=click.IntRange(min=0))
@pass_app
def snapshot_every(app: AppContext, n: int | None) -> None:
    """Show or set the automatic snapshot interval in positions (0: off)."""
    from goalrt.state import snapshots

    with app.state() as st:
        if n is not None:
            snapshots.set_interval(st, n)
        current = snapshots.interval(st)
    click.echo(f"automatic snapshots every {current} positions" if current else "automatic snapshots are off")


COMMANDS = (snapshot,)
