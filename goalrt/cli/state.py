"""CLI commands for the state: state, snapshot, replay and fork."""

from __future__ import annotations

from typing import Any

import click

from goalrt.cli.support import (
    AppContext,
    JsonParam,
    clip,
    emit_json,
    fork_option,
    pass_app,
    print_table,
    show_json,
)
from goalrt.errors import ConfigError, GoalrtError, OutOfRangeError
from goalrt.state import forks, replay, snapshots
from goalrt.state.state import Change, HistoryEntry, State, StateEntry, check_path

AT_HELP = "A past position (e.g. 120) or time (ISO 8601, e.g. 2026-11-21T10:00:00Z; no zone means UTC)."


def _at_option(f: Any) -> Any:
    return click.option("--at", default=None, metavar="POS|TIME", help=AT_HELP)(f)


def _json_option(f: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)


def _print_entries(entries: list[StateEntry]) -> None:
    print_table(
        ("path", "value", "version", "pos"),
        [(e.path, clip(show_json(e.value)), str(e.version), "" if e.pos is None else str(e.pos)) for e in entries],
    )


# -- state -----------------------------------------------------------------------


@click.group()
def state() -> None:
    """Read and change the state (paths holding JSON values)."""


@state.command("get")
@click.argument("path")
@_at_option
@_json_option
@fork_option
@pass_app
def state_get(app: AppContext, path: str, at: str | None, as_json: bool) -> None:
    """Print the value of PATH, now or --at a past position or time."""
    check_path(path)
    with app.state() as st:
        entry = st.get(path, at=at)
    if entry is None:
        where = f" at {at}" if at is not None else ""
        raise OutOfRangeError(f"path {path} does not exist{where}")
    if as_json:
        emit_json(entry.to_json())
    else:
        pos = "" if entry.pos is None else f", pos {entry.pos}"
        click.echo(f"{entry.path} = {show_json(entry.value)}  (version {entry.version}{pos})")


@state.command("list")
@click.argument("pattern", required=False)
@_at_option
@_json_option
@fork_option
@pass_app
def state_list(app: AppContext, pattern: str | None, at: str | None, as_json: bool) -> None:
    """List the paths under PATTERN (orders.o1, orders.*.status, orders.*), or all."""
    with app.state() as st:
        entries = st.list(pattern, at=at)
    if as_json:
        for e in entries:
            emit_json(e.to_json())
    else:
        _print_entries(entries)


def _expect_option(f: Any) -> Any:
    return click.option(
        "--expect-version",
        type=click.IntRange(min=0),
        default=None,
        metavar="N",
        help="Refuse the change unless the path is at version N (0: never written).",
    )(f)


def _report_change(path: str, verb: str, version: int, value: Any, as_json: bool) -> None:
    if as_json:
        emit_json({"path": path, "version": version, "value": value})
    else:
        click.echo(f"{verb} {path} (version {version})")


@state.command("set")
@click.argument("path")
@click.argument("value", type=JsonParam())
@_expect_option
@_json_option
@fork_option
@pass_app
def state_set(app: AppContext, path: str, value: Any, expect_version: int | None, as_json: bool) -> None:
    """Set PATH to VALUE (JSON: 42, '"text"', '{"a": 1}', null)."""
    check_path(path)
    with app.state() as st:
        result = st.change([Change.set(path, value, expect_version=expect_version)])
    _report_change(path, "set", result.versions[path], result.values[path], as_json)


@state.command("delete")
@click.argument("path")
@_expect_option
@_json_option
@fork_option
@pass_app
def state_delete(app: AppContext, path: str, expect_version: int | None, as_json: bool) -> None:
    """Delete PATH (its version keeps counting)."""
    check_path(path)
    with app.state() as st:
        result = st.change([Change.delete(path, expect_version=expect_version)])
    _report_change(path, "deleted", result.versions[path], None, as_json)


@state.command("inc", context_settings={"ignore_unknown_options": True})
@click.argument("path")
@click.argument("by", type=JsonParam(), default="1")
@_expect_option
@_json_option
@fork_option
@pass_app
def state_inc(app: AppContext, path: str, by: Any, expect_version: int | None, as_json: bool) -> None:
    """Add BY (default 1; negative to subtract) to the number at PATH."""
    check_path(path)
    if isinstance(by, bool) or not isinstance(by, (int, float)):
        raise ConfigError(f"BY must be a number, got {show_json(by)}")
    with app.state() as st:
        result = st.change([Change.inc(path, by, expect_version=expect_version)])
    value = result.values[path]
    if as_json:
        emit_json({"path": path, "version": result.versions[path], "value": value})
    else:
        click.echo(f"{path} = {show_json(value)} (version {result.versions[path]})")


@state.command("history")
@click.argument("path")
@_json_option
@fork_option
@pass_app
def state_history(app: AppContext, path: str, as_json: bool) -> None:
    """Print every value PATH has held, oldest first."""
    check_path(path)
    with app.state() as st:
        rows: list[HistoryEntry] = st.history(path)
    if as_json:
        for h in rows:
            emit_json(h.to_json())
        return
    print_table(
        ("pos", "op", "value", "version", "recorded_at"),
        [
            (
                str(h.pos),
                h.op,
                "(deleted)" if h.deleted else clip(show_json(h.value)),
                str(h.version),
                h.recorded_at.isoformat(timespec="milliseconds") if h.recorded_at else "",
            )
            for h in rows
        ],
    )


# -- snapshots ----------------------------------------------------------------------


@click.group()
def snapshot() -> None:
    """Take, list and show snapshots of the state."""


def _print_snapshots(rows: list[snapshots.Snapshot]) -> None:
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
@_json_option
@fork_option
@pass_app
def snapshot_create(app: AppContext, name: str, tags: tuple[str, ...], note: str | None, as_json: bool) -> None:
    """Take a snapshot of the state at the head of the log, named NAME."""
    with app.state() as st:
        snap = snapshots.create(st, name, tags=tags, note=note)
    if as_json:
        emit_json(snap.to_json())
    else:
        click.echo(f"snapshot {snap.name} at pos {snap.pos}: {snap.paths} paths ({snap.written} entries written)")


@snapshot.command("list")
@click.option("--auto", "include_auto", is_flag=True, help="Include the automatic snapshots.")
@_json_option
@fork_option
@pass_app
def snapshot_list(app: AppContext, include_auto: bool, as_json: bool) -> None:
    """List the named snapshots (with --auto, the automatic ones too)."""
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
@_json_option
@fork_option
@pass_app
def snapshot_show(app: AppContext, name: str, pattern: str | None, as_json: bool) -> None:
    """Show snapshot NAME and the state it holds (under PATTERN)."""
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
    _print_entries(entries)


@snapshot.command("every")
@click.argument("n", required=False, type=click.IntRange(min=0))
@fork_option
@pass_app
def snapshot_every(app: AppContext, n: int | None) -> None:
    """Show or set the automatic snapshot interval in positions (0: off)."""
    with app.state() as st:
        if n is not None:
            snapshots.set_interval(st, n)
        current = snapshots.interval(st)
    click.echo(f"automatic snapshots every {current} positions" if current else "automatic snapshots are off")


# -- replay -------------------------------------------------------------------------


@click.command("replay")
@click.option("--verify", "do_verify", is_flag=True, help="Rebuild the state from the log and compare.")
@click.option("--to", "to", default=None, metavar="POS|TIME", help="Print the state at POS from events alone.")
@click.argument("pattern", required=False)
@_json_option
@fork_option
@pass_app
def replay_cmd(app: AppContext, do_verify: bool, to: str | None, pattern: str | None, as_json: bool) -> None:
    """Rebuild the state from the log alone: --verify it, or print it --to a position."""
    if do_verify == (to is not None):
        raise click.UsageError("give exactly one of --verify and --to POS")
    with app.state() as st:
        if do_verify:
            report = replay.verify(st)
            if as_json:
                emit_json(report.to_json())
            if not report.identical:
                raise GoalrtError(f"replay {report.describe()}")
            if not as_json:
                click.echo(report.describe())
            return
        assert to is not None
        entries = st.replayed(st.position(to), pattern)
    if as_json:
        for e in entries:
            emit_json(e.to_json())
    else:
        _print_entries(entries)


# -- forks ---------------------------------------------------------------------------


@click.group()
def fork() -> None:
    """Create, list and drop forks: isolated copies of the state for simulation."""


@fork.command("create")
@click.argument("name")
@click.option("--at", default=None, metavar="POS|TIME", help="Fork the state as it was here (default: now).")
@_json_option
@pass_app
def fork_create(app: AppContext, name: str, at: str | None, as_json: bool) -> None:
    """Create fork NAME from the main line's state (now, or --at a past point)."""
    with State.connect(app.url) as st:
        pos = None if at is None else st.position(at)
        created = forks.create(st.connection, name, at=pos)
    if as_json:
        emit_json(created.to_json())
    else:
        click.echo(f"fork {created.name} created at pos {created.base_pos} (schema {created.schema})")


@fork.command("list")
@_json_option
@pass_app
def fork_list(app: AppContext, as_json: bool) -> None:
    """List the forks."""
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
    with State.connect(app.url) as st:
        forks.drop(st.connection, name)
    click.echo(f"fork {name} dropped")


COMMANDS = (state, snapshot, replay_cmd, fork)
