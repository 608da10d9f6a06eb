"""CLI command ``goalrt demo``: the shop example end to end (the run itself is goalrt.demo)."""

from __future__ import annotations

import click

from goalrt.cli.support import AppContext, pass_app


@click.command("demo")
@pass_app
def demo_cmd(app: AppContext) -> None:
    """Run the shop example workspace end to end on the default database, with a timeline and the SQL to see it."""
    from goalrt import demo

    demo.run(app.url, click.echo)


COMMANDS = (demo_cmd,)
