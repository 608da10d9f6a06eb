"""The ``goalrt`` command line: the root group, its commands (one module per noun), and the error handling.

Every ``GoalrtError`` and every usage mistake becomes one line on stderr and
a non-zero exit (1 for failures, 2 for bad usage), never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

import click

from goalrt import __version__
from goalrt.cli import (
    db,
    demo,
    events,
    forks,
    gdl,
    goals,
    health,
    limits,
    memory,
    plan,
    plugins,
    query,
    replay,
    schedules,
    serve,
    snapshots,
    state,
    workers,
)
from goalrt.cli.support import AppContext, root_fork_option
from goalrt.db import config
from goalrt.errors import GoalrtError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url",
    envvar=config.ENV_DATABASE_URL,
    metavar="URL",
    help="PostgreSQL URL (default: $GOALRT_DATABASE_URL, else the embedded server under ./.goalrt).",
)
@root_fork_option
@click.version_option(__version__, prog_name="goalrt")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, fork: str | None) -> None:
    """goalrt: a Postgres-native goal runtime."""
    ctx.obj = AppContext(database_url)
    ctx.obj.fork = fork or None


# In the order data flows; `goalrt --help` lists them by name.
_MODULES = (
    db,
    events,
    state,
    snapshots,
    replay,
    forks,
    goals,
    workers,
    limits,
    schedules,
    plan,
    query,
    memory,
    gdl,
    plugins,
    demo,
    serve,
    health,
)
for _module in _MODULES:
    for _command in _module.COMMANDS:
        cli.add_command(_command)


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
