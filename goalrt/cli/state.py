"""CLI commands for the state: state get/list/set/delete/inc/history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from goalrt.cli.support import (
    AppContext,
    ForkGroup,
    JsonParam,
    clip,
    emit_json,
    json_option,
    pass_app,
    print_table,
    show_json,
)
from goalrt.db.jsontext import echo, is_number
from goalrt.errors import ConfigError, OutOfRangeError
from goalrt.state.model import Change, check_path

if TYPE_CHECKING:
    from goalrt.state.model import HistoryEntry, StateEntry

AT_HELP = "A past position (e.g. 120) or time (ISO 8601, e.g. 2026-11-21T10:00:00Z; no zone means UTC)."


def _at_option(f: Any) -> Any:
    return click.option("--at", default=None, metavar="POS|TIME", help=AT_HELP)(f)


def print_entries(entries: list[StateEntry]) -> None:
    """Print state entries as a table of path, value, version and pos."""
    print_table(
        ("path", "value", "version", "pos"),
        [(e.path, clip(show_json(e.value)), str(e.version), "" if e.pos is None else str(e.pos)) for e in entries],
    )


@click.group(cls=ForkGroup)
def state() -> None:
    """Read and change the state (paths holding JSON values)."""


@state.command("get")
@click.argument("path")
@_at_option
@json_option("Print JSON.")
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
@json_option("Print JSON.")
@pass_app
def state_list(app: AppContext, pattern: str | None, at: str | None, as_json: bool) -> None:
    """List the paths under PATTERN (orders.o1, orders.*.status, orders.*), or all."""
    with app.state() as st:
        entries = st.list(pattern, at=at)
    if as_json:
        for e in entries:
            emit_json(e.to_json())
    else:
        print_entries(entries)


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


# ignore_unknown_options: a negative VALUE (-5) is a value, not an option.
@state.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("path")
@click.argument("value", type=JsonParam())
@_expect_option
@json_option("Print JSON.")
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
@json_option("Print JSON.")
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
@json_option("Print JSON.")
@pass_app
def state_inc(app: AppContext, path: str, by: Any, expect_version: int | None, as_json: bool) -> None:
    """Add BY (default 1; negative to subtract) to the number at PATH."""
    check_path(path)
    if not is_number(by):
        raise ConfigError(f"BY must be a number, got {echo(show_json(by))}")
    with app.state() as st:
        result = st.change([Change.inc(path, by, expect_version=expect_version)])
    value = result.values[path]
    if as_json:
        emit_json({"path": path, "version": result.versions[path], "value": value})
    else:
        click.echo(f"{path} = {show_json(value)} (version {result.versions[path]})")


@state.command("history")
@click.argument("path")
@json_option("Print JSON.")
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


COMMANDS = (state,)
