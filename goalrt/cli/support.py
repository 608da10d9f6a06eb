"""What the CLI's commands share: the app context, the --fork option, option types, output helpers.

The CLI's modules import only click and goalrt's light modules at the top:
a command imports the clients, the driver, the planner, the worker or the GDL
compiler in its body, when it runs, so that ``goalrt --help`` (and every
command's start) does not pay for them (tests/unit/test_cli_imports.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import click

from goalrt.db import config
from goalrt.db.jsontext import loads, render
from goalrt.errors import InvalidJsonError

if TYPE_CHECKING:
    from goalrt.goals.goals import Goals
    from goalrt.goals.registry import Registry
    from goalrt.log.eventlog import EventLog
    from goalrt.state.state import State

ENV_FORK = "GOALRT_FORK"

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


class AppContext:
    """What every command shares: the database URL, resolved on first use, and the fork acted on."""

    def __init__(self, explicit_url: str | None) -> None:
        self.explicit_url = explicit_url
        self.fork: str | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = config.database_url(self.explicit_url)
        return self._url

    def log(self) -> EventLog:
        from goalrt.log.eventlog import EventLog

        return EventLog.connect(self.url, fork=self.fork)

    def state(self) -> State:
        from goalrt.state.state import State

        return State.connect(self.url, fork=self.fork)

    def goals(self, registry: Registry | None = None) -> Goals:
        from goalrt.goals.goals import Goals

        return Goals.connect(self.url, fork=self.fork, registry=registry)


_pass_app = click.make_pass_decorator(AppContext)


def pass_app(f: Callable[Concatenate[AppContext, P], R]) -> Callable[P, R]:
    """Pass the command's AppContext as its first argument."""
    return _pass_app(f)


# -- --fork: declared here once ------------------------------------------------------
#
# The root takes `--fork NAME` (`goalrt --fork sim state get x`), and so does
# every command that acts on data a fork holds (`goalrt state get x --fork sim`),
# both defaulting to $GOALRT_FORK. Those commands get the option from their class:
# ForkCommand, or any command made by a ForkGroup.

_FORK_HELP = "Act on this fork instead of the main line (default: $GOALRT_FORK)"


def root_fork_option(f: F) -> F:
    """Add the root's ``--fork NAME``, passed to the root's callback as ``fork``."""
    return click.option(
        "--fork", envvar=ENV_FORK, metavar="NAME", help=f"{_FORK_HELP}; also accepted after the command."
    )(f)


def _set_fork(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.ensure_object(AppContext).fork = value


def _add_fork(params: list[click.Parameter], before: str | None = None) -> None:
    """Add a command's ``--fork NAME`` to ``params``: eager, so the AppContext names the fork before any work."""
    option = click.Option(
        ["--fork"],
        envvar=ENV_FORK,
        metavar="NAME",
        expose_value=False,
        is_eager=True,
        callback=_set_fork,
        help=f"{_FORK_HELP}.",
    )
    at = next((i for i, p in enumerate(params) if p.name == before), len(params))
    params.insert(at, option)


class ForkCommand(click.Command):
    """A command acting on data a fork holds: it takes ``--fork NAME``, listed after its own options.

    ``fork_before`` names the option that --fork is listed before instead, where
    a command's help has always shown it there.
    """

    def __init__(self, *args: Any, fork_before: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _add_fork(self.params, fork_before)


class ForkGroup(click.Group):
    """A group whose commands act on data a fork holds: each command it makes is a ForkCommand.

    With ``fork=True`` the group takes ``--fork NAME`` itself too (a group that
    lists something when run without a subcommand).
    """

    command_class = ForkCommand

    def __init__(self, *args: Any, fork: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if fork:
            _add_fork(self.params)


# -- options and output ---------------------------------------------------------------


def json_option(help: str) -> Callable[[F], F]:
    """Add ``--json`` (passed as ``as_json``): print JSON instead of text."""
    return click.option("--json", "as_json", is_flag=True, help=help)


class JsonParam(click.ParamType):  # type: ignore[type-arg]
    name = "JSON"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            # Exact numbers (Decimal where a float would round), at most MAX_JSON_DEPTH levels.
            return loads(value)
        except InvalidJsonError as exc:
            self.fail(str(exc), param, ctx)


def emit_json(obj: Any) -> None:
    click.echo(render(obj))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print rows as aligned columns under a header line."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def clip(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def show_json(value: Any) -> str:
    return render(value, ensure_ascii=False)
