"""CLI commands for agent memory: search, memory index/status/reset (docs/memory.md)."""

from __future__ import annotations

import logging
import signal
import sys
from typing import TYPE_CHECKING

import click

from goalrt.cli.support import AppContext, ForkCommand, ForkGroup, clip, emit_json, json_option, pass_app, print_table
from goalrt.errors import ConfigError

if TYPE_CHECKING:
    from goalrt.memory.memory import Memory


class _StderrNote(logging.Handler):
    """Print memory's one-time notes (full text only, and why) to stderr as one line each."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"note: {record.getMessage().removeprefix('memory: ')}", err=True)


def _memory(app: AppContext) -> Memory:
    from goalrt.memory.memory import Memory

    note = logging.getLogger("goalrt.memory")
    if not any(isinstance(h, _StderrNote) for h in note.handlers):
        note.addHandler(_StderrNote(logging.WARNING))
        note.propagate = False
    return Memory.connect(app.url, fork=app.fork)


@click.command("search", cls=ForkCommand)
@click.argument("query")
@click.option("--type", "type_", default=None, metavar="PATTERN", help="Only event types matching this glob (goal.*).")
@click.option("--since", default=None, metavar="TIME", help="Only events recorded at or after this ISO 8601 time.")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 1000), help="The most events shown.")
@json_option("Print the events found as a JSON array.")
@pass_app
def search_cmd(app: AppContext, query: str, type_: str | None, since: str | None, limit: int, as_json: bool) -> None:
    """Print the events closest to QUERY, best first: by words and, with pgvector, by meaning.

    Searches what `goalrt memory index` has indexed, in your tenant only.
    """
    from goalrt.memory.model import check_search, parse_since

    when = None if since is None else parse_since(since)
    check_search(query, when, limit)  # before connecting: a bad query is told without a database
    with _memory(app) as memory:
        hits = memory.search(query, type=type_, since=when, limit=limit)
    if as_json:
        emit_json([h.to_json() for h in hits])
        return
    if not hits:
        click.echo("nothing found")
        return
    print_table(
        ("pos", "type", "stream", "recorded_at", "score", "text"),
        [
            (
                str(h.pos),
                h.type,
                h.stream,
                h.recorded_at.isoformat(timespec="seconds"),
                f"{h.score:.4f}",
                clip(" ".join(h.text.split("\n")[1:]) or h.text, 70),
            )
            for h in hits
        ],
    )


@click.group(cls=ForkGroup)
def memory() -> None:
    """Index the history for `goalrt search`, and see how far it is."""


def _interrupt(*_args: object) -> None:
    raise KeyboardInterrupt


@memory.command("index")
@click.option("--follow", is_flag=True, help="Keep indexing as events commit, until interrupted.")
@click.option("--batch", default=500, show_default=True, type=click.IntRange(1, 10_000), help="Events per commit.")
@json_option("Print the result as JSON.")
@pass_app
def memory_index(app: AppContext, follow: bool, batch: int, as_json: bool) -> None:
    """Index the events committed since the last run (admins): resumes exactly where it stopped."""
    with _memory(app) as memory:
        if follow:
            signal.signal(signal.SIGTERM, _interrupt)
            click.echo("indexing as events commit (Ctrl-C stops)", err=True)
            try:
                memory.follow(batch=batch)
            except KeyboardInterrupt:
                return
            return
        done = memory.index(batch=batch)
        status = memory.status()
    if as_json:
        emit_json({"indexed": done, **status.to_json()})
    else:
        click.echo(f"indexed {done} events; memory at pos {status.cursor_pos} of {status.head}")
    sys.stdout.flush()


@memory.command("status")
@json_option("Print the status as JSON.")
@pass_app
def memory_status(app: AppContext, as_json: bool) -> None:
    """Print how far memory is indexed, whether it has vectors, and by which embedder."""
    with _memory(app) as memory:
        status = memory.status()
    if as_json:
        emit_json(status.to_json())
        return
    data = status.to_json()
    mode = "words and meaning (pgvector)" if status.vectors else "words only (this PostgreSQL has no pgvector)"
    click.echo(f"indexed to pos {status.cursor_pos} of {status.head} ({data['behind']} behind)")
    click.echo(f"entries:  {status.entries}")
    click.echo(f"search:   {mode}")
    click.echo(f"embedder: {status.embedder or '-'}")


@memory.command("reset")
@click.option("--yes", is_flag=True, help="Do it: forget the whole index.")
@pass_app
def memory_reset(app: AppContext, yes: bool) -> None:
    """Forget the index (admins); the next `goalrt memory index` rebuilds it from the start."""
    if not yes:
        raise ConfigError("memory reset forgets the whole index: pass --yes to do it")
    with _memory(app) as memory:
        memory.reset()
    click.echo("memory reset; run `goalrt memory index` to rebuild it")


COMMANDS = (search_cmd, memory)
