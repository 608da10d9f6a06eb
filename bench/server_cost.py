"""What a run costs the server: the WAL it writes and the transactions it commits, measured over a window.

WAL is server-wide: ``pg_current_wal_insert_lsn()`` before and after a window
counts what every database wrote meanwhile (``pg_wal_lsn_diff``). So a window
must hold only the run being measured; a bench measures one system at a time,
and each window also counts the commits of every other database on the server
(``other_xacts``), which say whether someone else was writing. That count is
approximate: backends report their statistics up to about a second late.

Transactions are exact per database: ``pg_stat_database.xact_commit`` of the
measured database, less the transactions the bench itself committed there
(``own()``). A backend flushes its statistics when it exits, so each window
starts and ends by waiting until no backend is connected to that database.
``pg_current_wal_insert_lsn`` rather than ``pg_current_wal_lsn``: it also
counts WAL inserted but not yet written out (asynchronous commits); at rest the
two are the same.

Full-page images (``pg_stat_wal.wal_fpi``, server-wide too) are counted
apart: the first change to a page after a checkpoint logs the whole page (up
to 8 kB), so a short run that follows a CHECKPOINT pays more of them per
unit of work than a long one does.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

QUIET_TIMEOUT_S = 10.0


@dataclass
class Cost:
    wal_bytes: int = 0
    fpi: int = 0  # full-page images among them
    xacts: int = 0  # committed in the measured database, the bench's own taken out
    other_xacts: int = 0  # committed in every other database meanwhile (approximate)
    seconds: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.wal_bytes + other.wal_bytes,
            self.fpi + other.fpi,
            self.xacts + other.xacts,
            self.other_xacts + other.other_xacts,
            self.seconds + other.seconds,
        )

    def per(self, n: int) -> dict[str, float]:
        """The cost per unit of work (goal, job, step), with the others' commits for the whole window."""
        return {
            "wal_bytes": self.wal_bytes / n,
            "fpi": self.fpi / n,
            "xacts": self.xacts / n,
            "other_xacts": float(self.other_xacts),
        }


class CostMeter:
    """Windows over one database of a server, read from another (``base_url``: a database the runs do not use)."""

    def __init__(self, base_url: str, dbname: str) -> None:
        self._conn = psycopg.connect(base_url, autocommit=True)
        self._db = dbname
        self._statements = 0  # this meter's own, each a commit in the base database

    def close(self) -> None:
        self._conn.close()

    def _row(self, query: str) -> tuple[Any, ...]:
        self._statements += 1
        row = self._conn.execute(query, {"db": self._db}).fetchone()
        assert row is not None
        return tuple(row)

    def _quiet(self) -> None:
        """Wait until no client is connected to the database: all of their statistics are then reported.

        (Autovacuum is not waited for; after QUIET_TIMEOUT_S the window goes on, a few commits short.)
        """
        deadline = time.monotonic() + QUIET_TIMEOUT_S
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %(db)s AND backend_type = 'client backend'"
        while self._row(query)[0] and time.monotonic() < deadline:
            time.sleep(0.01)

    def _reading(self) -> tuple[int, int, int, int]:
        wal, fpi, mine, others = self._row(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint,"
            " (SELECT wal_fpi FROM pg_stat_wal),"
            " sum(xact_commit) FILTER (WHERE datname = %(db)s),"
            " sum(xact_commit) FILTER (WHERE datname <> %(db)s)"
            " FROM pg_stat_database"
        )
        return int(wal), int(fpi), int(mine or 0), int(others or 0)

    @contextlib.contextmanager
    def window(self, own: Callable[[], int]) -> Iterator[Cost]:
        """``with meter.window(own) as cost: run()`` -- ``cost`` is filled in when the block ends."""
        cost = Cost()
        self._quiet()
        wal0, fpi0, mine0, others0 = self._reading()
        own0, statements0, began = own(), self._statements, time.monotonic()
        yield cost
        self._quiet()
        wal1, fpi1, mine1, others1 = self._reading()
        cost.wal_bytes = wal1 - wal0
        cost.fpi = fpi1 - fpi0
        cost.xacts = mine1 - mine0 - (own() - own0)
        cost.other_xacts = max(0, others1 - others0 - (self._statements - statements0))
        cost.seconds = time.monotonic() - began
