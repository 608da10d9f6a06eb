"""The handlers' own connection to the side tables of the process tests: one per thread, opened on first use."""

from __future__ import annotations

import os
import threading
from typing import Any

import psycopg

_local = threading.local()


def connection() -> psycopg.Connection[Any]:
    """Return this thread's connection to $GOALRT_DATABASE_URL (autocommit), opening a new one if it is closed."""
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(os.environ["GOALRT_DATABASE_URL"], autocommit=True)
        _local.conn = conn
    return conn


def forget() -> None:
    """Drop this thread's connection (after an error): the next call opens a new one."""
    _local.conn = None
