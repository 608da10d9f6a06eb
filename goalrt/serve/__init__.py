"""``goalrt serve``: the JSON HTTP API, health checks and metrics, in one ASGI process (docs/operations.md).

The HTTP layer holds no logic of its own: each endpoint calls the same
clients (and so the same SQL functions) as the CLI, on a connection of the
database role the caller's token maps to. FastAPI, uvicorn and
prometheus-client are imported only here, so the CLI does not pay for them.
"""
