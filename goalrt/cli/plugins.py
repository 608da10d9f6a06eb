"""CLI command for plugins: plugins (list goalrt's built-ins and the installed plugins, with their actions)."""

from __future__ import annotations

import click

from goalrt.cli.support import clip, emit_json, json_option, print_table


@click.command("plugins")
@json_option("Print one JSON object per plugin.")
def plugins(as_json: bool) -> None:
    """List the built-in actions and the installed plugins (entry points `goalrt.plugins`) with their actions.

    A plugin's settings come from [plugins.NAME] in goalrt.toml or GOALRT_PLUGIN_NAME_* variables.
    """
    from goalrt.actions.catalog import Catalog
    from goalrt.gdl.calls import builtin_contracts

    catalog = Catalog()
    contracts = builtin_contracts()
    rows = [
        {
            "name": plugin.name,
            "origin": plugin.origin or "goalrt (built in)",
            "description": plugin.description,
            "actions": sorted(plugin.actions),
            "providers": sorted(plugin.providers),
            "without_contract": sorted(set(plugin.actions) - set(contracts)),
        }
        for plugin in catalog.plugins
    ]
    if as_json:
        for row in rows:
            emit_json(row)
        return
    print_table(
        ("plugin", "from", "actions", "notification providers"),
        [
            (
                str(r["name"]),
                str(r["origin"]),
                clip(", ".join(r["actions"]), 100),
                clip(", ".join(r["providers"]) or "-", 40),
            )
            for r in rows
        ],
    )
    for r in rows:
        if r["without_contract"]:
            click.echo(f"warning: {r['name']}: no contract for {', '.join(r['without_contract'])} (GDL cannot use it)")


COMMANDS = (plugins,)
