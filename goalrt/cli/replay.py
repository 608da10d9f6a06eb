"""CLI command ``goalrt replay``: rebuild the state from the log alone."""

from __future__ import annotations

import click

from goalrt.cli.state import print_entries
from goalrt.cli.support import AppContext, ForkCommand, emit_json, json_option, pass_app
from goalrt.errors import GoalrtError


@click.command("replay", cls=ForkCommand)
@click.option("--verify", "do_verify", is_flag=True, help="Rebuild the state from the log and compare.")
@click.option("--to", "to", default=None, metavar="POS|TIME", help="Print the state at POS from events alone.")
@click.argument("pattern", required=False)
@json_option("Print JSON.")
@pass_app
def replay_cmd(app: AppContext, do_verify: bool, to: str | None, pattern: str | None, as_json: bool) -> None:
    """Rebuild the state from the log alone: --verify it, or print it --to a position."""
    if do_verify == (to is not None):
        raise click.UsageError("give exactly one of --verify and --to POS")
    from goalrt.state import replay

    with app.state() as st:
        if do_verify:
            report = replay.verify(st)
            if as_json:
                emit_json(report.to_json())
            if not report.identical:
                raise GoalrtError(f"replay {report.describe()}")
            if not as_json:
                click.echo(report.describe())
            return
        assert to is not None
        entries = st.replayed(st.position(to), pattern)
    if as_json:
        for e in entries:
            emit_json(e.to_json())
    else:
        print_entries(entries)


COMMANDS = (replay_cmd,)
