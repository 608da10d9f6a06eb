"""``goalrt demo``'s run: migrate, load the shop workspace, run the scenario, then report what happened."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Iterator

from goalrt.db import config, migrate
from goalrt.db.connect import connect, describe_target
from goalrt.demo.model import ORDERS, Run, Say
from goalrt.demo.report import infos, say_sql, say_summary, say_timeline, timeline
from goalrt.demo.scenario import live
from goalrt.demo.workspace import import_handlers, shop_handlers, shop_workspace
from goalrt.errors import GoalrtError
from goalrt.gdl import check
from goalrt.gdl.runtime import current, load
from goalrt.goals.registry import default_registry
from goalrt.log.event import Event
from goalrt.log.eventlog import EventLog


def run(url: str, say: Say, *, replace: bool = False) -> None:
    """Run the demo against ``url``, reporting each step through ``say``.

    On a database that runs another GDL workspace, refused before the demo
    loads or submits anything unless ``replace`` (the shop workspace would
    replace it).
    """
    started = time.monotonic()
    with _warnings_only():
        _run(url, say, started, replace)


def _run(url: str, say: Say, started: float, replace: bool) -> None:
    embedded = _embedded_url(url)
    workspace = shop_workspace()
    tag = uuid.uuid4().hex[:6]
    say(f"goalrt demo: the shop workspace end to end (run tag {tag})")
    version = _server_version(url)
    if embedded:
        say(f"  database   the embedded PostgreSQL {version} under {config.home_dir()} (no server to install)")
    else:
        say(f"  database   PostgreSQL {version} at {describe_target(url)}")
    revision = migrate.upgrade(url).current
    say(f"  migrated   schema goalrt at revision {revision}")

    compiled = check(workspace)
    say(f"  workspace  {compiled.name} from {workspace}: {compiled.summary()}")
    with EventLog.connect(url) as log:
        start = log.tick()
    with connect(url) as conn:
        before = current(conn)
        loaded = load(conn, compiled, replace=replace)
    loaded_as = f"version {loaded.version} (sha256 {loaded.content_hash[:12]})"
    if loaded.created:
        triggers = sum(len(goal.triggers) for goal in compiled.goals.values())
        say(
            f"  loaded     {loaded_as}, new: goals {', '.join(sorted(compiled.goals))}; "
            f"policy {', '.join(sorted(compiled.policies))}; {triggers} on-event trigger"
        )
    else:
        say(f"  loaded     {loaded_as}, unchanged: the database has it already")
    if before is not None and before.workspace != compiled.name:
        say(f"             (it replaces workspace {before.workspace} version {before.version} in this database)")
    handlers = shop_handlers(workspace)
    import_handlers(handlers)
    missing = sorted(n for n, a in compiled.actions.items() if not a.pure and a.handler not in default_registry.actions)
    if missing:
        raise GoalrtError(f"demo: {handlers} has no handler for {', '.join(missing)}")
    pure = sorted(n for n, a in compiled.actions.items() if a.pure)
    say(f"  handlers   {handlers}" + (f" ({', '.join(pure)} is pure: its effects are the action)" if pure else ""))

    this = Run(url, tag, start, started)
    asyncio.run(live(this, say))
    goals = infos(url, this)
    events = timeline(url, this)
    _check_handlers_ran(events)
    say_timeline(say, this, events, goals)
    say_summary(say, this, events, goals)
    say_sql(say, this, events, embedded)
    with EventLog.connect(url) as log:
        report = log.verify_or_raise()
        say(f"hash chain intact over {report.checked} events (head {log.head()})")
    if embedded:
        say("the embedded server keeps running for psql; `goalrt db stop` stops it")
    say("demo ok")


def _check_handlers_ran(events: list[Event]) -> None:
    """Raise unless every order's payment and shipment handlers ran (each appends its event once)."""
    for kind in ("payment.completed", "shipment.dispatched"):
        count = sum(1 for e in events if e.type == kind)
        if count != len(ORDERS):
            raise GoalrtError(
                f"demo: {count} {kind} event(s) for {len(ORDERS)} orders: a step completed without its handler"
            )


def _embedded_url(url: str) -> bool:
    """Whether ``url`` is the embedded server's (the default under ./.goalrt)."""
    if os.environ.get(config.ENV_DATABASE_URL) == url:
        return False
    try:
        return config.embedded_server().status().url == url
    except (OSError, GoalrtError):
        return False


def _server_version(url: str) -> str:
    with connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else "?"


@contextlib.contextmanager
def _warnings_only() -> Iterator[None]:
    """Keep the worker's and the handlers' info lines out of the demo's output; warnings still show."""
    loggers = [logging.getLogger(name) for name in ("goalrt", "asyncio", "goalrt_demo_shop_handlers")]
    saved = [logger.level for logger in loggers]
    root = logging.getLogger()
    handler: logging.Handler | None = None
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("goalrt demo: %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.WARNING)
        root.addHandler(handler)
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, saved, strict=True):
            logger.setLevel(level)
        if handler is not None:
            root.removeHandler(handler)
