"""CLI command ``goalrt serve``: the JSON HTTP API, /healthz, /readyz and /metrics (goalrt.serve)."""

from __future__ import annotations

import click

from goalrt.cli.goal_input import handlers_option, load_handlers
from goalrt.cli.support import AppContext, pass_app


def _warn(message: str) -> None:
    click.echo(f"goalrt: warning: {message}", err=True)


@click.command("serve")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (beyond loopback: --tokens)."
)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option(
    "--tokens",
    "tokens_file",
    default=None,
    metavar="FILE",
    help="TOML or JSON file mapping bearer tokens to database URLs; every API request then needs a token.",
)
@click.option("--pool-size", default=10, show_default=True, type=click.IntRange(1), help="Connections per role.")
@handlers_option
@pass_app
def serve(
    app: AppContext, host: str, port: int, tokens_file: str | None, pool_size: int, handlers: tuple[str, ...]
) -> None:
    """Serve the HTTP API (/api/v1, OpenAPI at /api/v1/openapi.json), /healthz, /readyz and /metrics."""
    from goalrt.goals.registry import default_registry
    from goalrt.serve.access import Pools, load_tokens
    from goalrt.serve.app import check_bind, create_app, uvicorn_server
    from goalrt.serve.context import Server

    tokens = load_tokens(tokens_file, _warn) if tokens_file is not None else None
    check_bind(host, tokens)
    load_handlers(handlers)
    # With tokens, health and metrics use --database-url when given, else the first token's role.
    url = app.explicit_url or (next(iter(tokens.values())) if tokens else app.url)
    server = Server(url, tokens, Pools(pool_size), default_registry)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"goalrt serve: http://{shown}:{port}/api/v1 (OpenAPI: /api/v1/openapi.json)", err=True)
    uvicorn_server(create_app(server), host, port).run()


COMMANDS = (serve,)
