"""The worker's scheduler: submit each due tick of the schedules (``goalrt.schedules``), once across the cluster.

Every worker runs one, as a background task beside its claim loop:

- at most once per poll interval (or sooner, when the next tick is sooner)
  it asks ``schedules_next``: one look at the index on ``next_at``, so a
  cluster with no schedules pays one cheap query per poll and nothing else;
- when a schedule is due it reads the due rows (``schedules_due``, with the
  database's clock), computes each one's pass here (``goalrt.goals.schedules.due``:
  the cron evaluator, the catch-up policy) and sends them all to
  ``fire_schedules_v1``, which submits the ticks and advances ``next_at`` in
  one transaction, only for rows unchanged since they were read. Workers
  that race for the same schedule compute the same pass; one commits it, the
  others are answered ``moved``.

A worker killed between its read and its commit leaves the schedule as it
was: the next pass of any worker fires the same ticks (the database keys
each goal by its tick, so a tick never gives two goals).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

from goalrt.errors import GoalrtError
from goalrt.goals.schedules import Due, Timing, due, first_tick
from goalrt.worker.database import WorkerDatabase

log = logging.getLogger("goalrt.worker")

# Schedules one pass reads; more due than that are fired by the next pass, at once.
_BATCH = 100


class Scheduler:
    """Fire the due schedules of the database the worker serves, until ``stopping`` is set."""

    def __init__(self, db: WorkerDatabase, worker_id: str, poll: float, stopping: asyncio.Event) -> None:
        self._db = db
        self._id = worker_id
        self._poll = poll
        self._stopping = stopping
        # Ticks this worker submitted (the rest of the cluster's are not counted here).
        self.fired = 0

    async def run(self) -> None:
        """Check for due schedules every poll interval (or when the next one is due) until stopped."""
        while not self._stopping.is_set():
            wait = self._poll
            try:
                wait = await self.pass_once()
            except GoalrtError as exc:  # the database refused a pass: say so, try again next poll
                log.error("worker %s: schedules: %s", self._id, exc)
            except Exception:  # a bug here must not stop the schedules for good (nor the worker)
                log.exception("worker %s: schedules: unexpected error; trying again next poll", self._id)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._stopping.wait()

    async def pass_once(self) -> float:
        """Fire what is due now; return how long to wait before the next look (at most the poll interval)."""
        rows = await self._db.call("schedules_next")
        seconds, uncomputed = rows[0][0], rows[0][1]
        if not uncomputed and (seconds is None or seconds > 0):
            return self._poll if seconds is None else min(self._poll, max(seconds, 0.005))
        due_rows = await self._db.call("schedules_due", _BATCH)
        items = [self._item(row) for row in due_rows]
        answers = await self._db.call("schedules_fire", items) if items else []
        fired_any = False
        for answer in answers:
            if answer["outcome"] == "fired":
                fired_any = True
                self.fired += len(answer["goal_ids"])
            elif answer["outcome"] == "disabled":
                log.error("worker %s: schedule %s disabled: cannot compute its ticks", self._id, answer["name"])
        # Fired: look again at once (more may be due). Nothing fired (another worker holds them): next poll.
        return 0.001 if fired_any else self._poll

    @staticmethod
    def _item(row: Any) -> dict[str, Any]:
        """Return the pass of one due row for ``fire_schedules_v1``."""
        item: dict[str, Any] = {
            "name": row["name"],
            "revision": row["revision"],
            "due": None if row["next_at"] is None else row["next_at"].isoformat(),
        }
        try:
            every = None if row["every"] is None else timedelta(seconds=row["every"])
            timing = Timing(cron=row["cron"], every=every, timezone=row["timezone"])
            start = first_tick(timing, row["next_at"], row["updated_at"])
            passed: Due = due(timing, row["catch_up"], start, row["now"])
        except GoalrtError as exc:
            item["error"] = str(exc)
            return item
        item["ticks"] = [t.isoformat() for t in passed.ticks]
        item["next_at"] = passed.next_at.isoformat()
        item["skipped"] = passed.skipped
        return item


__all__ = ["Scheduler"]
