"""Where goalrt finds its database and its local files.

``GOALRT_DATABASE_URL`` (or an explicit URL) names any PostgreSQL >= 15.
Without one, goalrt starts the embedded server under ``GOALRT_HOME``
(default ``./.goalrt``).
"""

from __future__ import annotations

import os
from pathlib import Path

from goalrt.db.embedded import EmbeddedServer

ENV_DATABASE_URL = "GOALRT_DATABASE_URL"
ENV_HOME = "GOALRT_HOME"


def home_dir() -> Path:
    """Return the folder for goalrt's local files (embedded data, locks)."""
    return Path(os.environ.get(ENV_HOME) or ".goalrt").expanduser().resolve()


def embedded_server() -> EmbeddedServer:
    return EmbeddedServer(home_dir())


def database_url(explicit: str | None = None) -> str:
    """Return the URL to use: the explicit one, the environment's, or the embedded server's."""
    url = explicit or os.environ.get(ENV_DATABASE_URL)
    if url:
        return url
    return embedded_server().start()


def uses_embedded(explicit: str | None = None) -> bool:
    return not (explicit or os.environ.get(ENV_DATABASE_URL))
