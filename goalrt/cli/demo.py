"""CLI command ``goalrt demo``: the shop example end to end (the run itself is goalrt.demo)."""

from __future__ import annotations

import click

from goalrt.cli.support import AppContext, pass_app


@click.command("demo")
@click.option("--replace", is_flag=True, help="Run it even on a database that runs another GDL workspace (replaced).")
@pass_app
def demo_cmd(app: AppContext, replace: bool) -> None:
    """Run the shop example workspace end to end on the default database, with a timeline and the SQL to see it."""
    from goalrt import demo

    demo.run(app.url, click.echo, replace=replace)


COMMANDS = (demo_cmd,)
