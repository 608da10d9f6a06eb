"""The CLI's whole command tree matches a snapshot: every command, its params and its --help, exactly.

The snapshot (cli_tree.json beside this file) was taken from the CLI as it was
before its modules were regrouped by noun; any change to a command, an option,
a default, a help text or the order options are listed in fails this test.
After a deliberate change, regenerate it with
``python tests/unit/test_cli_tree.py`` and review the diff.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from goalrt.cli.main import cli

SNAPSHOT = Path(__file__).with_name("cli_tree.json")
# A fixed width, so the rendered help does not depend on the terminal running the test.
WIDTH = 100


def _param(param: click.Parameter, ctx: click.Context) -> dict[str, Any]:
    info = param.to_info_dict()
    info.update(
        {
            "metavar": param.metavar,
            "expose_value": param.expose_value,
            "is_eager": param.is_eager,
            "has_callback": param.callback is not None,
            "show_default": getattr(param, "show_default", None),
            "usage_metavar": param.make_metavar(ctx),
        }
    )
    return info


def _command(command: click.Command, parent: click.Context | None, name: str) -> dict[str, dict[str, Any]]:
    """Return ``{"goalrt state get": {...}, ...}`` for ``command`` and everything under it."""
    # With the command's context_settings, as a real run makes its context: click caches each command's
    # help option from the first context that asks, so a context without them (the root's -h) would make
    # the tree depend on whether a test ran the CLI in this process before.
    settings = {"terminal_width": WIDTH, "max_content_width": WIDTH, **command.context_settings}
    ctx = click.Context(command, parent=parent, info_name=name, **settings)
    path = ctx.command_path
    entry: dict[str, Any] = {
        "group": isinstance(command, click.Group),
        "help": command.help,
        "short_help": command.short_help,
        "short_help_shown": command.get_short_help_str(limit=45),
        "epilog": command.epilog,
        "hidden": command.hidden,
        "deprecated": command.deprecated,
        "no_args_is_help": command.no_args_is_help,
        "context_settings": {k: repr(v) for k, v in sorted(command.context_settings.items())},
        "params": [_param(p, ctx) for p in command.get_params(ctx)],
        "help_text": command.get_help(ctx).splitlines(),
    }
    out = {path: entry}
    if isinstance(command, click.Group):
        entry["invoke_without_command"] = command.invoke_without_command
        entry["chain"] = command.chain
        entry["commands"] = command.list_commands(ctx)
        for sub in command.list_commands(ctx):
            child = command.get_command(ctx, sub)
            assert child is not None
            out.update(_command(child, ctx, sub))
    return out


def tree() -> dict[str, dict[str, Any]]:
    """Return the whole command tree of ``goalrt``, one entry per command path."""
    return _command(cli, None, "goalrt")


def test_the_command_tree_matches_the_snapshot() -> None:
    expected = json.loads(SNAPSHOT.read_text())
    actual = json.loads(json.dumps(tree(), default=repr))
    assert sorted(actual) == sorted(expected)
    for path in expected:
        assert actual[path] == expected[path], path


def test_the_snapshot_covers_every_command_and_the_fork_option() -> None:
    expected = json.loads(SNAPSHOT.read_text())
    assert "goalrt state get" in expected and "goalrt gdl check" in expected
    forked = [p for p, e in expected.items() if any(x["name"] == "fork" for x in e["params"])]
    # The root and the 42 commands that act on a fork's data.
    assert len(forked) == 43


if __name__ == "__main__":
    SNAPSHOT.write_text(json.dumps(tree(), indent=1, default=repr) + "\n")
    sys.stdout.write(f"wrote {SNAPSHOT}\n")
