"""Replay: rebuild the state from the log alone and compare it with the rows.

``verify`` waits for in-flight state writers and holds new ones back only
for as long as it takes to tick the clock and copy the materialized rows
(``goalrt.state_freeze``); the fold of the whole log then runs with no lock
held, and the copy is compared with it path by path: value, version and the
position of the last change, deleted paths included. If writers or the
clock are busy, the freeze gives up after ``FREEZE_WAIT_MS`` and is retried
with nothing held in between, so state writers never wait long.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from goalrt.db.connect import dumps
from goalrt.errors import DatabaseError, GoalrtError, translated
from goalrt.state.state import State

FREEZE_WAIT_MS = 500
FREEZE_ATTEMPTS = 40


@dataclass(frozen=True, slots=True)
class ReplayReport:
    identical: bool
    pos: int
    paths: int
    path: str | None = None
    problem: str | None = None
    materialized: dict[str, Any] | None = None
    replayed: dict[str, Any] | None = None

    def describe(self) -> str:
        if self.identical:
            return f"identical at position {self.pos} ({self.paths} path{'' if self.paths == 1 else 's'})"
        return f"differs at position {self.pos}: path {self.path}: {self.problem}"

    def to_json(self) -> dict[str, Any]:
        return {
            "identical": self.identical,
            "pos": self.pos,
            "paths": self.paths,
            "path": self.path,
            "problem": self.problem,
            "materialized": self.materialized,
            "replayed": self.replayed,
        }


def verify(state: State) -> ReplayReport:
    """Rebuild the state from the log and compare it with the materialized rows."""
    conn = state.connection
    if not conn.autocommit or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise DatabaseError("replay verify needs an autocommit connection outside any transaction")
    try:
        pos = _freeze_and_copy(state)
        paths = int(state._run("replay_count")[0][0])
        rows = state._run("replay_compare", (pos,))
    finally:
        if not conn.closed:
            state._run("materialized_drop")
    if not rows:
        return ReplayReport(True, pos, paths)
    path, m_value, m_version, m_pos, r_value, r_version, r_pos, in_m, in_r = rows[0]
    materialized = {"value": m_value, "version": m_version, "pos": m_pos} if in_m else None
    replayed = {"value": r_value, "version": r_version, "pos": r_pos} if in_r else None
    if not in_m:
        problem = f"the log has it (version {r_version}) but the materialized state does not"
    elif not in_r:
        problem = f"the materialized state has it (version {m_version}) but the log never set it"
    elif m_version != r_version:
        problem = f"version {m_version} materialized, {r_version} replayed"
    elif m_pos != r_pos:
        problem = f"last changed at pos {m_pos} materialized, {r_pos} replayed"
    else:
        problem = f"value {_show(m_value)} materialized, {_show(r_value)} replayed"
    return ReplayReport(False, pos, paths, path, problem, materialized, replayed)


def _freeze_and_copy(state: State) -> int:
    """Copy the materialized rows at a position where they equal the log's fold; return it."""
    for attempt in range(FREEZE_ATTEMPTS):
        try:
            with translated(), state.connection.transaction():
                pos = int(state._run("state_freeze", (FREEZE_WAIT_MS,))[0][0])
                state._run("materialized_drop")
                state._run("materialized_copy")
            return pos
        except GoalrtError as exc:
            cause = exc.__cause__
            if getattr(cause, "sqlstate", None) != "55P03":
                raise
        time.sleep(min(0.05 * 2**attempt, 1.0) * random.uniform(0.5, 1.0))
    raise DatabaseError("replay: state writers or the clock stayed busy; try again later")


def _show(value: Any) -> str:
    return "(deleted)" if value is None else dumps(value)


__all__ = ["ReplayReport", "verify"]
