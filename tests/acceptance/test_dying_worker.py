"""A step that kills its worker process fails its goal after max_attempts instead of being retried forever."""

from __future__ import annotations

from pathlib import Path

import psycopg

from goalrt import Goals
from tests.acceptance.test_worker_processes import Workers, wait_until

HANDLERS = "tests.acceptance.dying_handlers"


def test_a_step_that_kills_its_worker_fails_after_max_attempts(db_url: str, tmp_path: Path) -> None:
    workers = Workers(db_url, tmp_path, HANDLERS, ("--lease", "1s", "--poll", "0.2s", "--grace", "2s"))
    try:
        with psycopg.connect(db_url, autocommit=True) as conn, Goals.connect(db_url) as goals:
            proc = workers.start("w")

            def known() -> bool:
                return conn.execute("SELECT 1 FROM goalrt.goal_types WHERE name = 'dies'").fetchone() is not None

            wait_until(known, 60, workers, "the goal type registered")
            gid = goals.submit("dies", {}).id
            deaths = 0

            def ended() -> bool:
                return goals.get(gid).status in ("complete", "failed", "cancelled")

            # Restart the worker each time the step kills it, until the goal ends
            # (before the fix it never did: each new worker ran the step again).
            while not ended():
                assert deaths <= 4, f"goal {gid} still {goals.get(gid).status} after {deaths} worker deaths"
                wait_until(lambda p=proc: ended() or p.poll() is not None, 60, workers, "the worker's death or the end")
                if proc.poll() is not None:
                    assert proc.returncode == 17, workers.tail()
                    deaths += 1
                    proc = workers.start("w")
            info = goals.get(gid)
            reason = "step 2 (payment.charge): the worker died running it 2 times (max_attempts 2)"
            assert (info.status, info.last_error, deaths) == ("failed", reason, 2), workers.tail()
            step = conn.execute("SELECT status, attempts FROM goalrt.goal_steps WHERE goal_id = %s AND seq = 2", (gid,))
            assert step.fetchone() == ("failed", 2)
            assert proc.poll() is None  # the last worker failed the goal and lives on
    finally:
        workers.stop_all()
