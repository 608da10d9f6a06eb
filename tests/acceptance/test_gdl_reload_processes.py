"""A GDL version loaded mid-run, with `goalrt worker` processes and a SIGKILL: every goal ends as its rules say.

Version 1 onboards a user by ``activate`` then ``crm.push``. Version 2 drops
``crm.push`` (its handler stays registered, as a plain Python action the
planner cannot use) and onboards by ``crm.queue`` then ``crm.confirm`` (pure),
which also sets ``confirmed``. The test loads version 2 with ``goalrt gdl
load`` while goals are half way, kills a worker and starts it again. What
must hold:

- every goal completes, its user's ``crm`` is ``synced``, and ``confirmed``
  is set exactly when the goal's last plan was made with version 2;
- every step that ran is an action its plan's version declares (no step of
  a version 1 plan ran under version 2's rules, nor the reverse);
- goals held across the load were re-planned (reason ``definitions``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from goalrt import State
from goalrt.state.state import Change
from tests.acceptance.test_gdl_db_cli import goalrt
from tests.acceptance.test_worker_processes import Workers, wait_until

HANDLERS = "tests.acceptance.gdl_reload_handlers"
GATE = "GOALRT_RELOAD_GATE"
TYPES = "type User under users { status: string  crm: string  confirmed: boolean }\n"
GOAL = 'goal onboard(u: User) {\n  achieve users.{u}.crm == "synced"\n}\n'
V1 = """
action activate(u: User) { require users.{u}.status == "new"  effect users.{u}.status = "active"  retry 5 }
action crm.push(u: User) { require users.{u}.status == "active"  effect users.{u}.crm = "synced" }
"""
V2 = """
action activate(u: User) { require users.{u}.status == "new"  effect users.{u}.status = "active"  retry 5 }
action crm.queue(u: User) { require users.{u}.status == "active"  effect users.{u}.crm = "queued" }
action crm.confirm(u: User) {
  require users.{u}.crm == "queued"
  effect users.{u}.crm = "synced"
  effect users.{u}.confirmed = true
  pure
}
"""
DECLARED = {1: {"activate", "crm.push"}, 2: {"activate", "crm.queue", "crm.confirm"}}


def workspace(root: Path, actions: str) -> Path:
    (root / "apps" / "crm").mkdir(parents=True)
    (root / "goalrt.toml").write_text('name = "crm"\nversion = "1"\n')
    (root / "apps" / "crm" / "crm.gdl").write_text(TYPES + actions + GOAL)
    return root


@pytest.fixture
def workers(db_url: str, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(db_url, tmp_path, handlers=HANDLERS)
    gate = tmp_path / "gate"
    gate.mkdir()
    w.env[GATE] = str(gate)
    yield w
    (gate / "open").touch()  # (a test that failed before opening it leaves no handler waiting)
    w.stop_all()


def test_a_version_loaded_mid_run_re_plans_held_goals(db_url: str, workers: Workers, tmp_path: Path) -> None:
    rng = random.Random(35)
    count = 90
    loaded = goalrt(db_url, "gdl", "load", str(workspace(tmp_path / "v1", V1)))
    assert loaded.returncode == 0 and "as version 1" in loaded.stdout, loaded.stderr
    users = [f"u{i}" for i in range(count)]
    with State.connect(db_url) as state:
        state.change([Change.set(f"users.{u}.status", "new") for u in users])
    names = ["g0", "g1", "g2"]
    with psycopg.connect(db_url, autocommit=True) as conn:
        for name in names:
            workers.start(name)
        wait_until(lambda: registered(conn, len(names)), 60, workers, "workers registered")
        for u in users:
            conn.execute("SELECT goalrt.submit_goal('onboard', %s::jsonb, '{}')", (f'{{"u": "{u}"}}',))
        wait_until(lambda: complete(conn) >= 1, 60, workers, "work under way")
        # A goal planned with version 1 waits in its first step (the handlers' gate) until the load.
        gate = Path(workers.env[GATE])
        wait_until(lambda: any(gate.glob("held-*")), 60, workers, "a goal held in its first step")
        loaded = goalrt(db_url, "gdl", "load", str(workspace(tmp_path / "v2", V2)))
        assert loaded.returncode == 0 and "as version 2" in loaded.stdout, loaded.stderr
        (gate / "open").touch()
        time.sleep(rng.uniform(0.2, 0.5))
        workers.kill(rng.choice(names))
        workers.start("g3")
        wait_until(lambda: finished(conn), 120, workers, "every goal finished")
        rows = conn.execute("SELECT id, status, last_error FROM goalrt.goals WHERE status <> 'complete'").fetchall()
        assert rows == [], rows[:5]
        conn.execute("SELECT goalrt.tick()")
        # The GDL version of each plan of each goal, and each goal's last one.
        plans = {
            (gid, plan_no): (reason, version)
            for gid, plan_no, reason, version in conn.execute(
                "SELECT (data->>'goal_id')::bigint, (data->>'plan_no')::int, data->>'reason', "
                "(data->'planner'->>'gdl_version')::int FROM goalrt.events WHERE type = 'goal.planned'"
            ).fetchall()
        }
        last = {gid: plans[(gid, n)][1] for gid, n in conn.execute("SELECT id, plan_no FROM goalrt.goals").fetchall()}
        ran = conn.execute(
            "SELECT goal_id, plan_no, action FROM goalrt.goal_steps WHERE status = 'complete'"
        ).fetchall()
        wrong = [(gid, action, plans[(gid, n)]) for gid, n, action in ran if action not in DECLARED[plans[(gid, n)][1]]]
        assert wrong == [], wrong[:5]
        state = dict(conn.execute("SELECT path, value FROM goalrt.state WHERE path LIKE 'users.%'").fetchall())
        params = dict(conn.execute("SELECT id, params->>'u' FROM goalrt.goals").fetchall())
        for gid, u in params.items():
            assert state.get(f"users.{u}.crm") == "synced", (gid, u, last[gid])
            assert state.get(f"users.{u}.confirmed") == (True if last[gid] == 2 else None), (gid, u, last[gid])
        replanned = sum(1 for reason, _ in plans.values() if reason == "definitions")
        assert replanned >= 1, "no goal was held across the load"
        assert {1, 2} <= set(last.values())
    ended = sum(v == 2 for v in last.values())
    print(f"gdl reload: {count} goals, {replanned} re-planned for version 2, {ended} ended on it")


def registered(conn: psycopg.Connection, n: int) -> bool:
    row = conn.execute("SELECT count(*) FROM goalrt.workers").fetchone()
    return bool(row and row[0] >= n)


def complete(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM goalrt.goals WHERE status = 'complete'").fetchone()
    assert row is not None
    return int(row[0])


def finished(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT count(*) FROM goalrt.goals WHERE status IN ('pending', 'active', 'waiting')").fetchone()
    return row == (0,)
