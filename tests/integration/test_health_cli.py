"""goalrt health, metrics, stream and rewind against a real database (click's runner, in process)."""

from __future__ import annotations

import json

import psycopg
from click.testing import CliRunner

from goalrt.cli.main import cli
from goalrt.goals.health import Level, QueueFigures, queue_checks


def run(url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--database-url", url, *args])
    return result.exit_code, result.output


def test_health_fails_with_runnable_goals_and_no_worker_and_names_each_check(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("SELECT goalrt.register_goal_type('h.job', '{}')")
        c.execute("SELECT goalrt.submit_goals(%s::jsonb)", (json.dumps([{"name": "h.job"}] * 3),))
    code, out = run(db_url, "health")
    assert code == 1, out
    assert "ok    database  reachable and migrated" in out
    assert "fail  workers   none alive, and 3 goal(s) are runnable" in out
    code, out = run(db_url, "health", "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert {c["name"]: c["level"] for c in report["checks"]}["workers"] == "fail"


def test_health_is_ok_on_an_idle_database_with_a_live_worker(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("SELECT goalrt.register_worker_v2('w1', 'w1', 'host', 1, 1, '{}', '{}', NULL, NULL)")
    code, out = run(db_url, "health")
    assert code == 0, out
    assert "ok    workers   1 alive" in out


def test_health_fails_naming_an_unmigrated_database(empty_db_url: str) -> None:
    code, out = run(empty_db_url, "health")
    assert code == 1
    assert "fail  database  the database has no goalrt schema: not migrated; run `goalrt migrate`" in out


def test_health_fails_naming_an_unreachable_server() -> None:
    code, out = run("postgresql://nobody@127.0.0.1:1/none", "health")
    assert code == 1
    assert out.startswith("fail  database  ") and "Traceback" not in out


def test_metrics_counts_recent_goals_and_their_times(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("SELECT goalrt.register_goal_type('h.job', '{}')")
        c.execute("SELECT goalrt.submit_goals(%s::jsonb)", (json.dumps([{"name": "h.job"}] * 4),))
        (old,) = c.execute("SELECT min(id) FROM goalrt.goals").fetchone()  # type: ignore[misc]
        c.execute("SELECT goalrt.cancel_goal(id, 'test') FROM goalrt.goals WHERE id <> %s", (old,))
    code, out = run(db_url, "metrics", "--json")
    assert code == 0, out
    figures = json.loads(out)
    assert figures["goals"] == {"pending": 1, "cancelled": 3}
    (cancelled,) = figures["finished"]
    assert cancelled["status"] == "cancelled" and cancelled["count"] == 3 and cancelled["p50"] >= 0
    assert figures["runnable"] == 1 and figures["workers_alive"] == 0
    # Only the newest goals are looked at: the bound holds.
    code, out = run(db_url, "metrics", "--json", "--newest", "1")
    assert json.loads(out)["finished"][0]["count"] == 1
    code, out = run(db_url, "metrics")
    assert code == 0 and "cancelled" in out and "backlog: 1 runnable" in out
    code, out = run(db_url, "metrics", "--window", "soon")
    assert code == 2 and "Invalid value for --window: invalid duration 'soon'" in out


def test_rewind_makes_a_fork_of_the_state_as_it_was(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("""SELECT goalrt.change_state('[{"op": "set", "path": "a", "value": 1}]')""")
        (pos,) = c.execute("CALL goalrt.tick_commit(200, NULL)").fetchone()  # type: ignore[misc]
        c.execute("""SELECT goalrt.change_state('[{"op": "set", "path": "a", "value": 2}]')""")
    code, out = run(db_url, "rewind", str(pos))
    assert code == 0, out
    assert f"fork rewind_{pos} holds the state as it was at pos {pos}" in out
    code, out = run(db_url, "--fork", f"rewind_{pos}", "state", "get", "a")
    assert code == 0 and out.startswith("a = 1 "), out
    code, out = run(db_url, "rewind", "yesterday-ish")
    assert code != 0 and "Traceback" not in out


def test_queue_checks_warn_on_an_old_backlog_expired_leases_and_a_stalled_clock() -> None:
    figures = QueueFigures(
        runnable=2, oldest_runnable=90, waiting=0, parked=0, head=5, unpositioned=3, tick_lag=20, expired=1
    )
    levels = {c.name: c.level for c in queue_checks(figures, workers_alive=1, unserved=2, max_wait=60)}
    assert levels == {
        "workers": Level.OK,
        "backlog": Level.WARN,
        "handlers": Level.WARN,
        "leases": Level.WARN,
        "clock": Level.WARN,
    }
    calm = QueueFigures(
        runnable=0, oldest_runnable=0, waiting=0, parked=0, head=5, unpositioned=0, tick_lag=0, expired=0
    )
    assert {c.level for c in queue_checks(calm, workers_alive=0, unserved=0)} == {Level.OK, Level.WARN}
