"""What the CLI's commands share: the app context, option types, output helpers."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import click

from goalrt.db import config
from goalrt.log.eventlog import EventLog
from goalrt.state.state import State

ENV_FORK = "GOALRT_FORK"

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


class AppContext:
    """What every command shares: the database URL, resolved on first use."""

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
        return EventLog.connect(self.url, fork=self.fork)

    def state(self) -> State:
        return State.connect(self.url, fork=self.fork)


_pass_app = click.make_pass_decorator(AppContext)


def pass_app(f: Callable[Concatenate[AppContext, P], R]) -> Callable[P, R]:
    """Pass the command's AppContext as its first argument."""
    return _pass_app(f)


class JsonParam(click.ParamType):  # type: ignore[type-arg]
    name = "JSON"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            self.fail(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", param, ctx)


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, separators=(",", ":"), default=str))


def _set_fork(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.ensure_object(AppContext).fork = value


def fork_option(f: F) -> F:
    """Add ``--fork NAME``: act on that fork instead of the main line."""
    return click.option(
        "--fork",
        envvar=ENV_FORK,
        metavar="NAME",
        expose_value=False,
        is_eager=True,
        callback=_set_fork,
        help="Act on this fork instead of the main line (default: $GOALRT_FORK).",
    )(f)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print rows as aligned columns under a header line."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def clip(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def show_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
