"""A worker's Prometheus metrics (``goalrt worker --metrics-port``): what it did, and the queue it serves.

``WorkerMetrics`` is what the worker calls as it runs; its methods do
nothing, so a worker without metrics pays one method call per event.
``PrometheusMetrics`` records them in a registry of its own (counters and
histograms, updated in Python, never a query) and serves it over HTTP from
prometheus_client's server in a thread. The queue's figures (runnable
backlog and the age of its oldest goal, waiting and parked goals, the log's
head and tick lag) come from one query every ``interval`` seconds in the
background. docs/operations.md lists every metric.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from goalrt.db.resources import queries

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger("goalrt.worker")


# Step and claim times: from a millisecond to ten minutes.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class WorkerMetrics:
    """What a worker reports as it runs; this base records nothing (metrics off)."""

    def claimed(self, goal_type: str) -> None:
        """A goal of ``goal_type`` was claimed."""

    def claim_took(self, seconds: float) -> None:
        """A claim call took ``seconds`` (whatever it returned)."""

    def started(self, seconds: float) -> None:
        """A claimed goal's first handler started ``seconds`` after its claim returned."""

    def step(self, action: str, outcome: str, seconds: float) -> None:
        """A step's handler ran for ``seconds`` and ended with ``outcome`` (complete, retry, fail, replan)."""

    def ended(self, goal_type: str, outcome: str) -> None:
        """A goal this worker ran ended: ``completed`` or ``failed``."""

    def retried(self, action: str) -> None:
        """A step's failed attempt was committed with a retry to come."""

    def refused(self) -> None:
        """A result (a step's outcome or a plan) was refused: the lease was no longer held."""

    def lease_lost(self) -> None:
        """The heartbeat found the lease of a running step lost (expired and taken, or the goal ended)."""

    def progress(self, action: str, stored: bool) -> None:
        """A step of ``action`` reported its progress (ctx.progress): ``stored``, or refused (lease not held)."""

    def heartbeat(self) -> None:
        """A heartbeat reached the database."""

    def reconnected(self) -> None:
        """A database call was tried again after a lost connection."""


class PrometheusMetrics(WorkerMetrics):
    """The worker's metrics in a Prometheus registry of their own, served by ``serve``."""

    def __init__(self, held: Callable[[], int]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)
        self._claimed = Counter("goalrt_worker_goals_claimed", "Goals claimed.", ["goal_type"], registry=r)
        self._completed = Counter("goalrt_worker_goals_completed", "Goals completed.", ["goal_type"], registry=r)
        self._failed = Counter("goalrt_worker_goals_failed", "Goals failed.", ["goal_type"], registry=r)
        self._steps = Histogram(
            "goalrt_worker_step_duration_seconds",
            "Time from a step's handler start to its outcome.",
            ["action", "outcome"],
            buckets=BUCKETS,
            registry=r,
        )
        self._claim = Histogram(
            "goalrt_worker_claim_duration_seconds", "Round trip of a claim call.", buckets=BUCKETS, registry=r
        )
        self._start = Histogram(
            "goalrt_worker_start_latency_seconds",
            "Time from a claim's answer to the first handler start of a goal it claimed.",
            buckets=BUCKETS,
            registry=r,
        )
        self._retries = Counter(
            "goalrt_worker_step_retries", "Failed attempts with a retry to come.", ["action"], registry=r
        )
        self._refused = Counter("goalrt_worker_results_refused", "Results refused: lease no longer held.", registry=r)
        self._lost = Counter("goalrt_worker_leases_lost", "Leases found lost while a step ran.", registry=r)
        self._progress = Counter(
            "goalrt_worker_progress_writes",
            "Progress reports of running steps written (ctx.progress, at most one a second a step);"
            " outcome stored or refused (the lease was no longer held).",
            ["action", "outcome"],
            registry=r,
        )
        self._reconnects = Counter(
            "goalrt_worker_db_retries", "Database calls retried after a lost connection.", registry=r
        )
        self._beat = time.monotonic()
        Gauge("goalrt_worker_heartbeat_age_seconds", "Seconds since the last heartbeat.", registry=r).set_function(
            lambda: time.monotonic() - self._beat
        )
        Gauge("goalrt_worker_goals_held", "Goals this worker holds a lease on.", registry=r).set_function(
            lambda: float(held())
        )
        self._figures = {
            name: Gauge(name, text, registry=r)
            for name, text in (
                ("goalrt_goals_runnable", "Goals a claim could take now (all workers)."),
                ("goalrt_goals_oldest_runnable_age_seconds", "Age of the oldest runnable goal, from its run_at."),
                ("goalrt_goals_waiting", "Goals waiting (an event, a sleep, an ask, children)."),
                ("goalrt_goals_parked", "Goals parked by a concurrency or rate limit."),
                ("goalrt_log_head_position", "The last position the log handed out."),
                ("goalrt_log_unpositioned_events", "Committed events the clock has not positioned yet."),
                ("goalrt_log_tick_lag_seconds", "Age of the oldest committed event not positioned yet."),
                ("goalrt_goals_lease_expired", "Active goals whose lease ran out (a claim takes them over)."),
            )
        }
        self._server: Any = None

    def claimed(self, goal_type: str) -> None:
        self._claimed.labels(goal_type).inc()

    def claim_took(self, seconds: float) -> None:
        self._claim.observe(seconds)

    def started(self, seconds: float) -> None:
        self._start.observe(seconds)

    def step(self, action: str, outcome: str, seconds: float) -> None:
        self._steps.labels(action, outcome).observe(seconds)

    def ended(self, goal_type: str, outcome: str) -> None:
        (self._completed if outcome == "completed" else self._failed).labels(goal_type).inc()

    def retried(self, action: str) -> None:
        self._retries.labels(action).inc()

    def refused(self) -> None:
        self._refused.inc()

    def lease_lost(self) -> None:
        self._lost.inc()

    def progress(self, action: str, stored: bool) -> None:
        self._progress.labels(action, "stored" if stored else "refused").inc()

    def heartbeat(self) -> None:
        self._beat = time.monotonic()

    def reconnected(self) -> None:
        self._reconnects.inc()

    def serve(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port`` from a thread; return the port (``port`` 0: a free one)."""
        from prometheus_client import start_http_server

        self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        bound: int = self._server.server_port
        return bound

    def close(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    async def refresh(self, pool: asyncpg.Pool, schema: str, interval: float) -> None:
        """Read the queue's figures every ``interval`` seconds, until cancelled; a failed read keeps the last ones."""
        query = queries("goals", schema)["queue_figures"]
        warned = False
        while True:
            try:
                async with pool.acquire() as conn:
                    row = await conn.fetchrow(query, timeout=max(interval, 5.0))
                for key, name in (
                    ("runnable", "goalrt_goals_runnable"),
                    ("oldest_runnable", "goalrt_goals_oldest_runnable_age_seconds"),
                    ("waiting", "goalrt_goals_waiting"),
                    ("parked", "goalrt_goals_parked"),
                    ("head", "goalrt_log_head_position"),
                    ("unpositioned", "goalrt_log_unpositioned_events"),
                    ("tick_lag", "goalrt_log_tick_lag_seconds"),
                    ("expired", "goalrt_goals_lease_expired"),
                ):
                    self._figures[name].set(float(row[key]))
                warned = False
            except Exception as exc:  # a figure missing now and then is no reason to stop the worker
                if not warned:
                    log.warning("worker metrics: could not read the queue's figures: %s", exc)
                    warned = True
            await asyncio.sleep(interval)


__all__ = ["PrometheusMetrics", "WorkerMetrics"]
