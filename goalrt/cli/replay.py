"""CLI command ``goalrt replay``: rebuild the state from the log alone."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from goalrt.cli.state import print_entries
from goalrt.cli.support import AppContext, ForkCommand, emit_json, json_option, pass_app
from goalrt.errors import GoalrtError

if TYPE_CHECKING:
    from goalrt.state.state import State


@click.command("replay", cls=ForkCommand)
@click.option("--verify", "do_verify", is_flag=True, help="Rebuild the state from the log and compare.")
@click.option(
    "--files",
    "files",
    is_flag=True,
    help="With --verify: also check each file file.upload recorded (files.*) against the storage root.",
)
@click.option("--to", "to", default=None, metavar="POS|TIME", help="Print the state at POS from events alone.")
@click.argument("pattern", required=False)
@json_option("Print JSON.")
@pass_app
def replay_cmd(
    app: AppContext, do_verify: bool, files: bool, to: str | None, pattern: str | None, as_json: bool
) -> None:
    """Rebuild the state from the log alone: --verify it (and the stored --files), or print it --to a position."""
    if do_verify == (to is not None):
        raise click.UsageError("give exactly one of --verify and --to POS")
    if files and not do_verify:
        raise click.UsageError("--files goes with --verify")
    from goalrt.state import replay

    with app.state() as st:
        if do_verify:
            report = replay.verify(st)
            checked = verify_files(st) if files and report.identical else None
            if as_json:
                emit_json(report.to_json() if checked is None else {**report.to_json(), "files": checked})
            if not report.identical:
                raise GoalrtError(f"replay {report.describe()}")
            if not as_json:
                click.echo(report.describe())
            if checked is not None:
                problems = checked["problems"]
                if not as_json:
                    for problem in problems:
                        click.echo(problem)
                if problems:
                    raise GoalrtError(
                        f"files: {len(problems)} of {checked['checked']} differ from what the state records"
                    )
                if not as_json:
                    click.echo(f"files: {checked['checked']} checked under {checked['root']}, all match")
            return
        assert to is not None
        entries = st.replayed(st.position(to), pattern)
    if as_json:
        for e in entries:
            emit_json(e.to_json())
    else:
        print_entries(entries)


def verify_files(st: State) -> dict[str, Any]:
    """Check the files recorded under ``files`` against the storage root of the goalrt.toml here (or the env)."""
    from goalrt.actions.config import ActionsConfig
    from goalrt.actions.files import PREFIX, storage_root, verify

    root = storage_root(ActionsConfig.load())
    checked, problems = verify(st.list(PREFIX), root)
    return {"root": str(root), "checked": checked, "problems": problems}


COMMANDS = (replay_cmd,)
