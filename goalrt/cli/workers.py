"""CLI commands for worker processes: worker (run one), workers (list them)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

import click

from goalrt.cli.goal_input import handlers_option, load_handlers
from goalrt.cli.support import AppContext, ForkCommand, clip, emit_json, json_option, pass_app, print_table
from goalrt.durations import parse_duration
from goalrt.errors import ConfigError, DatabaseUnavailableError, GdlError

if TYPE_CHECKING:
    import asyncio

    from goalrt.worker.worker import Worker

log = logging.getLogger("goalrt.worker")


@click.command("worker", cls=ForkCommand)
@click.option("--concurrency", type=click.IntRange(1, 10_000), default=10, show_default=True, help="Steps at once.")
@handlers_option
@click.option("--name", default=None, help="A name for this worker (default host:pid).")
@click.option("--lease", default="30s", show_default=True, help="Lease length; heartbeats renew it every third.")
@click.option("--poll", default="1s", show_default=True, help="Poll interval when no notification arrives.")
@click.option("--grace", default="30s", show_default=True, help="On SIGTERM, how long running steps may finish.")
@click.option(
    "--partitions",
    default=None,
    metavar="B,B/N",
    help="Serve only these buckets of N partitions (e.g. 0,1/4 or 0-3/16), and goals without a partition key.",
)
@click.option(
    "--takeover",
    default="10s",
    show_default=True,
    help="A worker without --partitions takes goals of a served partition after they wait this long.",
)
@click.option("--only", multiple=True, metavar="NAME", help="Claim only goals of this type (repeatable).")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (docs/operations.md lists them).",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="The address --metrics-port binds.")
@click.option(
    "--metrics-interval",
    default="5s",
    show_default=True,
    help="How often the queue's figures (backlog, waiting, log head) are read for the metrics.",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
@pass_app
def worker(
    app: AppContext,
    concurrency: int,
    handlers: tuple[str, ...],
    name: str | None,
    lease: str,
    poll: str,
    grace: str,
    partitions: str | None,
    takeover: str,
    only: tuple[str, ...],
    metrics_port: int | None,
    metrics_host: str,
    metrics_interval: str,
    log_level: str,
) -> None:
    """Run a worker: claim goals and run their steps until SIGTERM/SIGINT (then drain and exit 0).

    It imports the --handlers modules, or else those `handlers` in goalrt.toml
    names (in this folder or a parent), and runs only the actions it has a
    handler for (and GDL's pure ones, and those whose handler is a built-in such
    as http.call, configured by goalrt.toml's [actions.*]): other steps wait for
    a worker that has one.
    With OTEL_TRACES_EXPORTER set, each goal it runs is traced (docs/operations.md).
    """
    import asyncio

    # Imported before logging is configured, as when the CLI imported everything at start: alembic (the
    # preflight checks the revision) logs each plugin it sets up at INFO as it is imported.
    from goalrt.db import migrate  # noqa: F401
    from goalrt.goals.registry import default_registry
    from goalrt.worker.partitions import Partitions
    from goalrt.worker.worker import Worker

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _load_worker_handlers(handlers)
    url = app.url
    options: dict[str, Any] = {
        "concurrency": concurrency,
        "name": name,
        "lease": parse_duration(lease, what="--lease"),
        "poll": parse_duration(poll, what="--poll"),
        "grace": parse_duration(grace, what="--grace"),
        "partitions": None if partitions is None else Partitions.parse(partitions),
        "only": [n for item in only for n in item.split(",") if n] or None,
        "takeover": parse_duration(takeover, what="--takeover"),
        "metrics_port": metrics_port,
        "metrics_host": metrics_host,
        "metrics_interval": parse_duration(metrics_interval, what="--metrics-interval"),
    }

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        schema = await _wait_for_database(url, app.fork, stop)
        if schema is None:
            click.echo("worker: stopped while waiting for the database", err=True)
            return
        w = Worker(url, default_registry, schema=schema, **options)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, w.request_stop)
        if stop.is_set():
            w.request_stop()
        await w.run()
        # Inside the loop: abandoned handler tasks must not be waited for by asyncio.run's cleanup.
        _report(w)

    asyncio.run(main())


def _load_worker_handlers(handlers: tuple[str, ...]) -> None:
    """Import the --handlers modules; without the option, those ``goalrt.toml`` names (here or in a parent folder).

    A worker started in a workspace runs its handlers, as ``goalrt test``
    does; ``--handlers`` (or $GOALRT_HANDLERS) replaces the manifest's list,
    e.g. for a worker that runs only some of them.
    """
    if handlers:
        load_handlers(handlers)
        return
    from goalrt.gdl.workspace import find_root, manifest_handlers
    from goalrt.goals.registry import import_modules

    try:
        root = find_root(".")
    except GdlError:  # not in a workspace
        return
    modules = manifest_handlers(root)
    if modules:
        import_modules(modules, root)
        log.info("worker: handlers from %s: %s", root / "goalrt.toml", ", ".join(modules))


def _report(w: Worker) -> None:
    """Print what the worker did; exit at once if handlers it gave up on still run."""
    s = w.stats
    click.echo(
        f"worker {w.id} (pid {os.getpid()}) exited: {s.claimed} claims, {s.steps} steps, {s.completed} goals "
        f"completed, {s.failed} failed, {s.retried} retries, {s.refused} refused, {s.released} released",
        err=True,
    )
    running = w.handler_calls.running
    if running:
        # A handler past its timeout or the grace period that ignores its
        # cancellation (or a sync one: threads cannot be killed) cannot be
        # stopped, and its goal has been given up: exit without waiting for it.
        click.echo(f"worker {w.id}: leaving {running} handler(s) still running that it gave up on", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


async def _wait_for_database(url: str, fork: str | None, stop: asyncio.Event) -> str | None:
    """Return the schema to serve once the database answers (None if stopped first); wait while it is away.

    A server that is down, starting or shutting down is waited for with
    backoff (logged once); a wrong password, an unknown database or an
    unmigrated one is an error at once.
    """
    import asyncio

    from goalrt.db.connect import connect_async
    from goalrt.worker.database import is_connection_error

    delay, warned = 0.1, False
    while not stop.is_set():
        try:
            conn = await connect_async(url)
            await conn.close()
            return await asyncio.to_thread(_preflight, url, fork)
        except DatabaseUnavailableError as exc:
            if exc.__cause__ is not None and not is_connection_error(exc.__cause__):
                raise
            if not warned:
                log.warning("worker: %s; waiting for the server", exc)
                warned = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stop.wait()
        delay = min(delay * 2, 5.0)
    return None


def _preflight(url: str, fork: str | None) -> str:
    """Check the database is migrated and has something to run; return the schema to serve."""
    from goalrt.db import schemas
    from goalrt.db.connect import connect
    from goalrt.db.migrate import check_migrated
    from goalrt.gdl.runtime import current
    from goalrt.goals.registry import default_registry

    check_migrated(url)
    with connect(url) as conn:
        schema = schemas.schema_for(conn, fork)
        if not default_registry.goal_types and current(conn, schema) is None:
            raise ConfigError(
                "no goal types registered: give --handlers MODULE (or set $GOALRT_HANDLERS), "
                "or load GDL definitions with `goalrt gdl load`"
            )
    return schema


@click.command("workers", cls=ForkCommand)
@json_option("Print one JSON object per line.")
@pass_app
def workers(app: AppContext, as_json: bool) -> None:
    """List registered worker processes and when each was last seen."""
    with app.goals() as goals:
        rows = goals.workers()
    if as_json:
        for row in rows:
            emit_json(row)
        return
    print_table(
        ("id", "host", "pid", "concurrency", "last seen", "goal types", "actions"),
        [
            (
                r["id"],
                r["hostname"],
                str(r["pid"]),
                str(r["concurrency"]),
                f"{r['seconds_since_seen']:.1f}s ago",
                clip(", ".join(r["goal_types"]), 40),
                clip(", ".join(r["actions"]), 60),
            )
            for r in rows
        ],
    )


COMMANDS = (worker, workers)
