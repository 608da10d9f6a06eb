"""The ``goalrt`` command line: thin commands over the library.

Every ``GoalrtError`` and every usage mistake becomes one line on stderr and
a non-zero exit (1 for failures, 2 for bad usage), never a traceback.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from goalrt import __version__, demo
from goalrt.cli import coordination as cli_coordination
from goalrt.cli import gdl as cli_gdl
from goalrt.cli import goals as cli_goals
from goalrt.cli import plan as cli_plan
from goalrt.cli import state as cli_state
from goalrt.cli.support import ENV_FORK, AppContext, JsonParam, clip, emit_json, fork_option, pass_app, print_table
from goalrt.db import config, migrate
from goalrt.db.connect import connect, describe_target
from goalrt.errors import ChainBrokenError, ConfigError, GoalrtError
from goalrt.log.event import Event


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url",
    envvar=config.ENV_DATABASE_URL,
    metavar="URL",
    help="PostgreSQL URL (default: $GOALRT_DATABASE_URL, else the embedded server under ./.goalrt).",
)
@click.option(
    "--fork",
    envvar=ENV_FORK,
    metavar="NAME",
    help="Act on this fork instead of the main line (default: $GOALRT_FORK); also accepted after the command.",
)
@click.version_option(__version__, prog_name="goalrt")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, fork: str | None) -> None:
    """goalrt: a Postgres-native goal runtime."""
    ctx.obj = AppContext(database_url)
    ctx.obj.fork = fork or None


# -- database --------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Show or manage the database goalrt uses."""


def _embedded_only(app: AppContext, action: str) -> None:
    if not config.uses_embedded(app.explicit_url):
        raise ConfigError(f"a database URL is set; goalrt does not {action} an external server")


@db.command("url")
@pass_app
def db_url(app: AppContext) -> None:
    """Print the database URL (starting the embedded server if it is the one in use)."""
    click.echo(app.url)


@db.command("start")
@pass_app
def db_start(app: AppContext) -> None:
    """Start the embedded PostgreSQL (data under ./.goalrt/pgdata)."""
    _embedded_only(app, "start")
    url = config.embedded_server().start()
    click.echo(f"embedded PostgreSQL running: {url}")


@db.command("stop")
@pass_app
def db_stop(app: AppContext) -> None:
    """Stop the embedded PostgreSQL."""
    _embedded_only(app, "stop")
    stopped = config.embedded_server().stop()
    click.echo("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")


@db.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_app
def db_status(app: AppContext, as_json: bool) -> None:
    """Say which database is in use and whether it is up."""
    if config.uses_embedded(app.explicit_url):
        st = config.embedded_server().status()
        info = {"kind": "embedded", "running": st.running, "pid": st.pid, "pgdata": str(st.pgdata), "url": st.url}
    else:
        url = app.url
        with connect(url) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        info = {
            "kind": "external",
            "running": True,
            "target": describe_target(url),
            "server_version": version[0] if version else None,
        }
    if as_json:
        emit_json(info)
    elif info["kind"] == "embedded":
        state = f"running (pid {info['pid']})" if info["running"] else "stopped"
        click.echo(f"embedded PostgreSQL {state}, data in {info['pgdata']}")
        if info["url"]:
            click.echo(f"url: {info['url']}")
    else:
        click.echo(f"external PostgreSQL {info['server_version']} at {info['target']}: reachable")


# -- migrations --------------------------------------------------------------------


@cli.command("migrate")
@click.option("--check", is_flag=True, help="Only check; exit 1 when the database is behind.")
@pass_app
def migrate_cmd(app: AppContext, check: bool) -> None:
    """Upgrade the database schema to the newest revision (idempotent)."""
    url = app.url
    if check:
        st = migrate.status(url)
        if not st.up_to_date:
            raise GoalrtError(
                f"database is at revision {st.current or 'none'}, head is {st.head}: run `goalrt migrate`"
            )
        click.echo(f"database is up to date (revision {st.head})")
        return
    result = migrate.upgrade(url)
    if result.before == result.current:
        click.echo(f"database already at head (revision {result.current})")
    else:
        click.echo(f"migrated database from {result.before or 'empty'} to {result.current}")


# -- events --------------------------------------------------------------------------


@cli.group()
def events() -> None:
    """Append, list and follow events."""


@events.command("append")
@click.option("--stream", required=True, help="Stream name, e.g. order:o1.")
@click.option("--type", "type_", required=True, help="Event type, e.g. order.created.")
@click.option("--data", type=JsonParam(), default="{}", show_default=True, help="Event data as JSON.")
@click.option("--metadata", type=JsonParam(), default=None, help="Metadata as a JSON object.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@fork_option
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
        ("pos", "stream", "type", "recorded_at", "data"),
        [
            (
                str(e.pos),
                e.stream,
                e.type,
                e.recorded_at.isoformat(timespec="milliseconds"),
                clip(json.dumps(e.data, separators=(",", ":")), 60),
            )
            for e in rows
        ],
    )


def _filters(f: Any) -> Any:
    f = fork_option(f)
    f = click.option("--stream", default=None, help="Only this stream.")(f)
    f = click.option("--type", "type_", default=None, metavar="PATTERN", help="Only types matching this glob.")(f)
    f = click.option("--after", default=0, show_default=True, type=click.IntRange(min=0), help="Start after this pos.")(
        f
    )
    f = click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")(f)
    return f


@events.command("list")
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
    signal.signal(signal.SIGTERM, _interrupt)
    with app.log() as log:
        try:
            for e in log.follow(after, stream=stream, type=type_):
                if as_json:
                    emit_json(e.to_json())
                else:
                    click.echo(f"{e.pos}\t{e.stream}\t{e.type}\t{json.dumps(e.data, separators=(',', ':'))}")
                sys.stdout.flush()
        except KeyboardInterrupt:
            return


# -- integrity -------------------------------------------------------------------------


@cli.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@fork_option
@pass_app
def verify_cmd(app: AppContext, as_json: bool) -> None:
    """Check the hash chain over the whole log; exit 1 naming the first bad position."""
    with app.log() as log:
        report = log.verify()
        head = log.head()
    if as_json:
        emit_json(
            {
                "ok": report.ok,
                "checked": report.checked,
                "first_bad_pos": report.first_bad_pos,
                "problem": report.problem,
                "head": head,
            }
        )
    if not report.ok:
        raise ChainBrokenError(report.first_bad_pos or 0, report.problem or "unknown")
    if not as_json:
        noun = "event" if report.checked == 1 else "events"
        click.echo(f"hash chain intact: {report.checked} {noun}, head {head}")


# -- demo --------------------------------------------------------------------------------


@cli.command("demo")
@pass_app
def demo_cmd(app: AppContext) -> None:
    """Run the shop example workspace end to end on the default database, with a timeline and the SQL to see it."""
    demo.run(app.url, click.echo)


for _command in (
    *cli_state.COMMANDS,
    *cli_goals.COMMANDS,
    *cli_coordination.COMMANDS,
    *cli_plan.COMMANDS,
    *cli_gdl.COMMANDS,
):
    cli.add_command(_command)


# -- entry point ---------------------------------------------------------------------------


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"goalrt: error: {message}", err=True)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI with one-line errors and meaningful exit codes."""
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="goalrt", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        _fail(f"{exc.format_message()}{hint}", 2)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except click.Abort:
        _fail("aborted", 130)
    except GoalrtError as exc:
        _fail(str(exc), 1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)
