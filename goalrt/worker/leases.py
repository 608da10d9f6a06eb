"""The goals a worker holds: each under a lease with an epoch, kept alive by a heartbeat, given back on demand.

A lease that the heartbeat finds lost (expired and taken over, or the goal
cancelled) is not cut short: its handler is told (``ctx.cancelled``) and its
late result is refused by the database and recorded, never applied.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from goalrt.errors import GoalrtError
from goalrt.worker.database import WorkerDatabase
from goalrt.worker.dispatcher import ActionContext
from goalrt.worker.metrics import WorkerMetrics
from goalrt.worker.stats import WorkerStats

log = logging.getLogger("goalrt.worker")


@dataclass(slots=True)
class Lease:
    """A goal this worker holds, the epoch it holds it at, and the task running it."""

    goal_id: int
    epoch: int
    task: asyncio.Task[None] | None = None
    ctx: ActionContext | None = None
    # When the claim that took it was answered (ns since the epoch), until its first handler starts.
    claimed_at: int | None = None


class Leases:
    """The leases one worker holds, by goal id."""

    def __init__(
        self,
        db: WorkerDatabase,
        worker_id: str,
        seconds: float,
        wake: asyncio.Event,
        stats: WorkerStats,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.held: dict[int, Lease] = {}
        self._db = db
        self._id = worker_id
        self.seconds = seconds
        # Set when a lease is given up: the claim loop has a free slot.
        self._wake = wake
        self._stats = stats
        self._metrics = metrics or WorkerMetrics()
        # The log lines of cancel() being written (strong references to their tasks).
        self._logging: set[asyncio.Task[None]] = set()

    def take(self, goal_id: int, epoch: int) -> Lease:
        """Record a lease just claimed."""
        lease = Lease(goal_id, epoch)
        self.held[goal_id] = lease
        return lease

    def forget(self, lease: Lease) -> None:
        """Stop holding ``lease`` (its goal went on without this worker) and free its slot."""
        if self.held.get(lease.goal_id) is lease:
            del self.held[lease.goal_id]
            self._wake.set()

    def cancel(self, goal_id: int) -> None:
        """Stop a handler whose goal ended elsewhere (cancelled, failed, ...): cancel it, discard its result.

        Only while a handler runs: a plan or an outcome on its way is answered
        by the database with what became of the goal (the worker's own
        outcome that ended the goal notifies too).
        """
        lease = self.held.get(goal_id)
        if lease is None or lease.ctx is None:
            return
        lease.ctx.cancelled.set()
        if lease.task is not None and not lease.task.done():
            lease.task.cancel()
        self.forget(lease)
        self._log_later(goal_id, "stopped its step")

    def not_started(self, lease: Lease, seq: int) -> None:
        """Stop holding a goal whose step did not start: it ended (or its lease was lost) before the handler could."""
        self.forget(lease)
        self._log_later(lease.goal_id, f"its step {seq} did not start")

    def _log_later(self, goal_id: int, what: str) -> None:
        task = asyncio.get_running_loop().create_task(self._log_ended(goal_id, what))
        self._logging.add(task)
        task.add_done_callback(self._logging.discard)

    async def _log_ended(self, goal_id: int, what: str) -> None:
        """Log what ended a goal whose step this worker stopped or did not start (its status, read after the fact)."""
        try:
            rows = await self._db.call("goal_get", goal_id, retry=False)
            status = rows[0]["status"] if rows else "gone"
        except GoalrtError:
            status = "ended (cancelled or failed)"
        log.info("worker %s: goal %s %s elsewhere; %s", self._id, goal_id, status, what)

    async def release(self, leases: Sequence[Lease]) -> None:
        """Give the leases back, so any worker may claim their goals at once."""
        if not leases:
            return
        self._stats.released += await self._db.release([(lease.goal_id, lease.epoch) for lease in leases])

    async def heartbeat(self) -> None:
        """Extend the leases held, every third of their length (at most every 20 s), until cancelled.

        The heartbeat also tells the cluster the worker is live: a worker seen
        within the last minute is one ``goalrt.unserved_action`` counts on.
        """
        interval = min(max(self.seconds / 3, 0.05), 20.0)
        while True:
            await asyncio.sleep(interval)
            snapshot = [(lease, lease.ctx) for lease in self.held.values()]
            try:
                kept = await self._db.heartbeat([(lease.goal_id, lease.epoch) for lease, _ in snapshot], self.seconds)
            except GoalrtError as exc:
                log.error("worker %s: heartbeat failed: %s", self._id, exc)
                continue
            self._metrics.heartbeat()
            for lease, ctx in snapshot:
                # Only a handler still running the same step since the
                # heartbeat began has certainly lost its lease: a step that
                # ended meanwhile may have ended the lease by its own commit.
                running = ctx is not None and lease.ctx is ctx and self.held.get(lease.goal_id) is lease
                if lease.goal_id in kept or not running or ctx is None:
                    continue
                # Tell the handler (ctx.cancelled) but let it finish: its
                # late result is then refused and recorded, never applied.
                if not ctx.cancelled.is_set():
                    self._metrics.lease_lost()
                    log.warning(
                        "worker %s: goal %s: lease lost while step %s runs; its result will be refused",
                        self._id,
                        lease.goal_id,
                        ctx.step,
                    )
                ctx.cancelled.set()


__all__ = ["Lease", "Leases"]
