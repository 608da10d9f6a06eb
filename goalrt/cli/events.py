"""CLI commands for the event log: events append/list/follow, stream, verify, head, anchor."""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from goalrt.cli.support import (
    AppContext,
    ForkCommand,
    ForkGroup,
    JsonParam,
    clip,
    emit_json,
    json_option,
    pass_app,
    print_table,
    show_json,
)
from goalrt.errors import ConfigError, InvalidAnchorError

if TYPE_CHECKING:
    from goalrt.log.event import Event


@click.group(cls=ForkGroup)
def events() -> None:
    """Append, list and follow events."""


@events.command("append")
@click.option("--stream", required=True, help="Stream name, e.g. order:o1.")
@click.option("--type", "type_", required=True, help="Event type, e.g. order.created.")
@click.option("--data", type=JsonParam(), default="{}", show_default=True, help="Event data as JSON.")
@click.option("--metadata", type=JsonParam(), default=None, help="Metadata as a JSON object.")
@json_option("Print the result as JSON.")
@pass_app
def events_append(app: AppContext, stream: str, type_: str, data: Any, metadata: Any, as_json: bool) -> None:
    """Append one event; print its id and position."""
    if metadata is not None and not isinstance(metadata, dict):
        raise ConfigError("--metadata must be a JSON object")
    with app.log() as log:
        event_id = log.append(stream, type_, data, metadata=metadata)
        pos = log.position(event_id)
    if as_json:
        emit_json({"id": event_id, "pos": pos})
    else:
        where = f"at pos {pos}" if pos is not None else "(position pending)"
        click.echo(f"appended event {event_id} {where}")


def _print_table(rows: Sequence[Event]) -> None:
    print_table(
        ("pos", "stream", "type", "db_role", "recorded_at", "data"),
        [
            (
                str(e.pos),
                e.stream,
                e.type,
                e.db_role or "-",
                e.recorded_at.isoformat(timespec="milliseconds"),
                clip(show_json(e.data), 60),
            )
            for e in rows
        ],
    )


def _filters(f: Any) -> Any:
    f = click.option("--stream", default=None, help="Only this stream.")(f)
    f = click.option("--type", "type_", default=None, metavar="PATTERN", help="Only types matching this glob.")(f)
    f = click.option("--after", default=0, show_default=True, type=click.IntRange(min=0), help="Start after this pos.")(
        f
    )
    f = json_option("One JSON object per line.")(f)
    return f


# --fork is listed before --limit, where `events list --help` has always shown it.
@events.command("list", fork_before="limit")
@_filters
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1), help="At most this many.")
@pass_app
def events_list(app: AppContext, stream: str | None, type_: str | None, after: int, as_json: bool, limit: int) -> None:
    """List committed events in log order."""
    with app.log() as log:
        rows = log.read(after, limit, stream=stream, type=type_)
    if as_json:
        for e in rows:
            emit_json(e.to_json())
    else:
        _print_table(rows)


def _interrupt(signum: int, frame: object) -> None:
    """Treat SIGTERM like Ctrl-C: stop following and exit cleanly."""
    raise KeyboardInterrupt


@events.command("follow")
@_filters
@pass_app
def events_follow(app: AppContext, stream: str | None, type_: str | None, after: int, as_json: bool) -> None:
    """Print events as they commit, after catching up, until interrupted."""
    _follow(app, stream, type_, after, as_json)


@click.command("stream", cls=ForkCommand)
@click.argument("goal_id", type=click.IntRange(min=1), required=False)
@click.option("--after", type=click.IntRange(min=0), default=0, show_default=True, help="Start after this pos.")
@json_option("One JSON object per line.")
@pass_app
def stream_cmd(app: AppContext, goal_id: int | None, after: int, as_json: bool) -> None:
    """Print goal GOAL_ID's events (all events without one) as they commit, until interrupted.

    The same as `events follow --stream goal:GOAL_ID`.
    """
    _follow(app, None if goal_id is None else f"goal:{goal_id}", None, after, as_json)


def _follow(app: AppContext, stream: str | None, type_: str | None, after: int, as_json: bool) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    with app.log() as log:
        try:
            for e in log.follow(after, stream=stream, type=type_):
                if as_json:
                    emit_json(e.to_json())
                else:
                    click.echo(f"{e.pos}\t{e.stream}\t{e.type}\t{show_json(e.data)}")
                sys.stdout.flush()
        except KeyboardInterrupt:
            return


class AnchorParam(click.ParamType):  # type: ignore[type-arg]
    """``POS:HASH``, as ``goalrt head`` prints it."""

    name = "POS:HASH"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from goalrt.log.anchors import Anchor

        if not isinstance(value, str):
            return value
        try:
            return Anchor.parse(value)
        except InvalidAnchorError as exc:
            self.fail(str(exc), param, ctx)


class AnchorFileParam(click.ParamType):  # type: ignore[type-arg]
    """A file of anchors: read and parsed as the command line is, so a bad one is a usage error."""

    name = "FILE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from goalrt.log.anchors import Anchor

        if not isinstance(value, str):
            return value
        try:
            return Anchor.read(value)
        except InvalidAnchorError as exc:
            self.fail(str(exc), param, ctx)


@click.command("verify", cls=ForkCommand)
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    type=AnchorParam(),
    help="Also check that the log still holds this anchor (from `goalrt head`); repeatable.",
)
@click.option(
    "--anchors",
    "anchor_files",
    multiple=True,
    type=AnchorFileParam(),
    help="Also check every anchor in this file (one POS:HASH a line; blank lines and # comments skipped).",
)
@json_option("Print the report as JSON.")
@pass_app
def verify_cmd(app: AppContext, anchors: tuple[Any, ...], anchor_files: tuple[list[Any], ...], as_json: bool) -> None:
    """Check the hash chain over the whole log, and any anchors; exit 1 naming the first bad position or anchor."""
    given = [*anchors, *(a for file in anchor_files for a in file)]
    with app.log() as log:
        report = log.verify(given)
        head = log.head()
    if as_json:
        emit_json(
            {
                "ok": report.ok,
                "checked": report.checked,
                "first_bad_pos": report.first_bad_pos,
                "problem": report.problem,
                "head": head,
                "anchors": report.anchors,
                "anchor": None if report.anchor is None else str(report.anchor),
            }
        )
    if not report.ok:
        raise report.error()
    if not as_json:
        noun = "event" if report.checked == 1 else "events"
        held = ""
        if report.anchors:
            held = f"; {report.anchors} anchor{'s' if report.anchors != 1 else ''} held"
        click.echo(f"hash chain intact: {report.checked} {noun}, head {head}{held}")


@click.command("head", cls=ForkCommand)
@json_option("Print the head as JSON.")
@pass_app
def head_cmd(app: AppContext, as_json: bool) -> None:
    """Print the head of the hash chain as an anchor, POS:HASH (keep it outside the database)."""
    with app.log() as log:
        anchor = log.head_anchor()
    if as_json:
        emit_json({"pos": anchor.pos, "hash": anchor.hash, "anchor": str(anchor)})
    else:
        click.echo(str(anchor))


@click.command("anchor", cls=ForkCommand)
@click.option(
    "--to",
    "path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Append the head (POS:HASH) to this file, as one line.",
)
@pass_app
def anchor_cmd(app: AppContext, path: str) -> None:
    """Append the head of the hash chain to a file you keep elsewhere; print it."""
    with app.log() as log:
        anchor = log.head_anchor()
    try:
        anchor.append_to(path)
    except OSError as exc:
        raise click.FileError(path, exc.strerror or str(exc)) from None
    click.echo(f"{anchor} appended to {path}")


COMMANDS = (events, stream_cmd, verify_cmd, head_cmd, anchor_cmd)
