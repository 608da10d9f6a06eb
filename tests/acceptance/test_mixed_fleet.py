"""A mixed fleet under chaos: only some workers have some handlers, and workers are SIGKILLed at random.

The onboarding workspace of issue 16: ``kyc.check`` (handler only on the KYC
workers, refusing blocklisted domains), ``account.open`` (``pure``: any
worker), ``mail.welcome`` (handler only on the mail worker). A bare worker
with no handlers plans goals and runs the pure step. What must hold:

- every goal ends as its handlers dictate: a blocklisted sign-up fails at
  kyc.check and is never opened or welcomed; the others are welcomed;
- each step ran on a worker that has its handler (a handler step never
  completes without a call of its handler);
- 0 stuck (nothing pending or active), 0 doubled (each step's state effect
  exactly once; a handler called twice only for a step whose goal changed hands).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from goalrt import Goals, State
from goalrt.db.connect import connect
from goalrt.gdl import check
from goalrt.gdl.runtime import load
from goalrt.state.state import Change
from tests.acceptance.test_worker_processes import Workers, wait_until

ONBOARDING = """
type User under users { status: string  domain: string }

action kyc.check(u: User) {
  require users.{u}.status == "new"
  effect  users.{u}.status = "checked"
  retry 20 backoff fixed 50ms
}
action account.open(u: User) {
  require users.{u}.status == "checked"
  effect  users.{u}.status = "open"
  pure
}
action mail.welcome(u: User) {
  require users.{u}.status == "open"
  effect  users.{u}.status = "welcomed"
  retry 20 backoff fixed 50ms
}
goal onboard(u: User) { achieve users.{u}.status == "welcomed" }
"""
KYC = "tests.acceptance.fleet_kyc"
MAIL = "tests.acceptance.fleet_mail"
# Which workers may complete each action (by name prefix): handler steps only where the handler is.
RUNS_ON = {"kyc.check": ("kyc-",), "mail.welcome": ("mail-",), "account.open": ("kyc-", "mail-", "bare-")}


@pytest.fixture
def fleet(db_url: str, tmp_path: Path) -> Iterator[Workers]:
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute(
            "CREATE TABLE chaos_calls (id bigserial PRIMARY KEY, goal_id bigint, seq int, key text, attempt int, "
            "worker text, phase text, at timestamptz DEFAULT clock_timestamp())"
        )
    root = tmp_path / "crm"
    (root / "apps" / "crm").mkdir(parents=True)
    (root / "goalrt.toml").write_text('name = "crm"\nversion = "1"\n')
    (root / "apps" / "crm" / "onboarding.gdl").write_text(ONBOARDING)
    with connect(db_url) as conn:
        load(conn, check(root))
    logs = tmp_path / "logs"
    logs.mkdir()
    # No handler module of its own: each worker is given its team's (a bare one none at all).
    w = Workers(db_url, logs, handlers="")
    yield w
    w.stop_all()


def start(fleet: Workers, name: str) -> None:
    team = {"kyc": KYC, "mail": MAIL}.get(name.split("-")[0])
    fleet.start(name, *(("--handlers", team) if team else ()))


def test_a_mixed_fleet_under_sigkill_routes_every_step_to_a_capable_worker(db_url: str, fleet: Workers) -> None:
    rng = random.Random(16)
    names = ["kyc-0", "kyc-1", "mail-0", "bare-0"]
    users = {f"u{i}": "spam.example" if rng.random() < 0.25 else "good.example" for i in range(60)}
    with State.connect(db_url) as state:
        for user, domain in users.items():
            state.change([Change.set(f"users.{user}.domain", domain), Change.set(f"users.{user}.status", "new")])
    with psycopg.connect(db_url, autocommit=True) as conn:
        for name in names:
            start(fleet, name)
        wait_until(
            lambda: conn.execute("SELECT count(*) FROM goalrt.workers").fetchone() == (len(names),),
            60,
            fleet,
            "workers registered",
        )
        with Goals.connect(db_url) as goals:
            submitted = goals.submit_many([("onboard", {"u": u}, None) for u in users])
            ids = {user: s.id for user, s in zip(users, submitted, strict=True)}
        kills = 0
        deadline = time.monotonic() + 180

        def open_goals() -> int:
            row = conn.execute("SELECT count(*) FROM goalrt.goals WHERE status IN ('pending', 'active')").fetchone()
            assert row is not None
            return int(row[0])

        while open_goals():
            assert time.monotonic() < deadline, f"goals still open after {kills} kills\n{fleet.tail()}"
            time.sleep(rng.uniform(0.4, 1.2))
            if not open_goals():
                break
            victim = rng.choice(names)
            fleet.kill(victim)
            kills += 1
            start(fleet, victim)
        assert kills >= 2, "the run finished before the chaos started; raise the load"

        # Every goal ended as its handlers dictate.
        conn.execute("SELECT goalrt.tick()")
        with State.connect(db_url) as state:
            for user, gid in ids.items():
                status, error = conn.execute(
                    "SELECT status, last_error FROM goalrt.goals WHERE id = %s", (gid,)
                ).fetchone()  # type: ignore[misc]
                if users[user] == "spam.example":
                    assert status == "failed" and "spam.example is blocklisted" in error, (user, status, error)
                    assert state.value(f"users.{user}.status") == "new"
                else:
                    assert status == "complete", (user, status, error)
                    assert state.value(f"users.{user}.status") == "welcomed"
        # Each step completed on a worker that has its handler, and a handler step never without a call.
        completed = conn.execute(
            "SELECT (data->>'goal_id')::bigint, (data->>'seq')::int, data->>'action', data->>'worker' "
            "FROM goalrt.events WHERE type = 'step.completed' OR (type = 'goal.completed' AND data ? 'seq')"
        ).fetchall()
        wrong = [c for c in completed if not c[3].startswith(RUNS_ON[c[2]])]
        assert not wrong, wrong[:10]
        called = {(g, s) for g, s in conn.execute("SELECT DISTINCT goal_id, seq FROM chaos_calls").fetchall()}
        uncalled = [c for c in completed if c[2] != "account.open" and (c[0], c[1]) not in called]
        assert not uncalled, f"handler steps completed without their handler: {uncalled[:10]}"
        # 0 doubled: each completed step changed the state once; a handler step counted itself once.
        per_step = conn.execute(
            "SELECT metadata->>'goal_id', metadata->>'seq', count(*) FROM goalrt.events "
            "WHERE type = 'state.changed' AND stream LIKE 'goal:%' GROUP BY 1, 2 HAVING count(*) <> 1"
        ).fetchall()
        assert per_step == [], per_step[:10]
        assert conn.execute(
            "SELECT count(*) FROM goalrt.events WHERE type = 'state.changed' AND stream LIKE 'goal:%'"
        ).fetchone() == (len(completed),)
        counts = conn.execute("SELECT path, value FROM goalrt.state WHERE path LIKE 'fleet.g%'").fetchall()
        assert counts and all(value == 1 for _, value in counts), [c for c in counts if c[1] != 1][:10]
        # A handler called more than once only for a step whose goal changed hands, never more than its attempts.
        dups = conn.execute(
            """SELECT c.goal_id, c.seq, count(*), s.attempts,
                      EXISTS (SELECT 1 FROM goalrt.events e WHERE e.stream = 'goal:' || c.goal_id
                               AND e.type IN ('goal.lease_expired', 'step.result_refused', 'goal.released'))
                 FROM chaos_calls c JOIN goalrt.goal_steps s ON s.goal_id = c.goal_id AND s.seq = c.seq
                GROUP BY c.goal_id, c.seq, s.attempts HAVING count(*) > 1"""
        ).fetchall()
        assert all(changed and calls <= attempts for _, _, calls, attempts, changed in dups), dups[:10]
        # 0 stuck.
        assert open_goals() == 0
    print(f"mixed fleet: {len(ids)} goals, {kills} kills, {len(completed)} steps, {len(dups)} steps called twice")
