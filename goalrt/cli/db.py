"""CLI commands for the database: db url/start/stop/status, migrate."""

from __future__ import annotations

import click

from goalrt.cli.support import AppContext, emit_json, json_option, pass_app
from goalrt.db import config
from goalrt.errors import ConfigError, GoalrtError


@click.group()
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
@json_option("Print one JSON object.")
@pass_app
def db_status(app: AppContext, as_json: bool) -> None:
    """Say which database is in use and whether it is up."""
    if config.uses_embedded(app.explicit_url):
        st = config.embedded_server().status()
        info = {"kind": "embedded", "running": st.running, "pid": st.pid, "pgdata": str(st.pgdata), "url": st.url}
    else:
        from goalrt.db.connect import connect, describe_target

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


@click.command("migrate")
@click.option("--check", is_flag=True, help="Only check; exit 1 when the database is behind.")
@pass_app
def migrate_cmd(app: AppContext, check: bool) -> None:
    """Upgrade the database schema to the newest revision (idempotent)."""
    from goalrt.db import migrate

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
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if result.before == result.current:
        click.echo(f"database already at head (revision {result.current})")
    else:
        click.echo(f"migrated database from {result.before or 'empty'} to {result.current}")


COMMANDS = (db, migrate_cmd)
