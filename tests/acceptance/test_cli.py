"""The goalrt CLI in a subprocess, end to end against a real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from goalrt.db import migrate

REPO = Path(__file__).resolve().parent.parent.parent


def goalrt(
    url: str | None, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GOALRT_")}
    if url:
        full_env["GOALRT_DATABASE_URL"] = url
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "goalrt", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or REPO,
        timeout=timeout,
    )


def event_count(url: str) -> int:
    with psycopg.connect(url) as c:
        row = c.execute("SELECT count(*) FROM goalrt.event_data").fetchone()
    assert row is not None
    return int(row[0])


def test_migrate_append_list_verify(empty_db_url: str) -> None:
    url = empty_db_url
    check = goalrt(url, "migrate", "--check")
    assert check.returncode == 1 and "run `goalrt migrate`" in check.stderr
    first = goalrt(url, "migrate")
    assert first.returncode == 0, first.stderr
    assert f"migrated database from empty to {migrate.head_revision()}" in first.stdout
    again = goalrt(url, "migrate")
    assert again.returncode == 0 and "already at head" in again.stdout
    assert goalrt(url, "migrate", "--check").returncode == 0

    appended = goalrt(url, "events", "append", "--stream", "s", "--type", "t", "--data", '{"a":1}', "--json")
    assert appended.returncode == 0, appended.stderr
    assert json.loads(appended.stdout) == {"id": 1, "pos": 1}
    human = goalrt(url, "events", "append", "--stream", "s2", "--type", "order.created")
    assert human.stdout.strip() == "appended event 2 at pos 2"

    listed = goalrt(url, "events", "list", "--json")
    lines = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(e["pos"], e["stream"], e["type"], e["data"]) for e in lines] == [
        (1, "s", "t", {"a": 1}),
        (2, "s2", "order.created", {}),
    ]
    # The role this test logs in as, recorded by the database.
    with psycopg.connect(url) as c:
        me = c.execute("SELECT session_user").fetchone()
    assert me is not None and {e["db_role"] for e in lines} == {me[0]}
    filtered = goalrt(url, "events", "list", "--json", "--type", "order.*", "--after", "0")
    assert [json.loads(x)["pos"] for x in filtered.stdout.splitlines()] == [2]
    table = goalrt(url, "events", "list")
    assert table.stdout.splitlines()[0].split() == ["pos", "stream", "type", "db_role", "recorded_at", "data"]
    assert len(table.stdout.splitlines()) == 3

    verified = goalrt(url, "verify")
    assert verified.returncode == 0 and "intact: 2 events" in verified.stdout


@pytest.mark.parametrize(
    ("args", "needle", "code"),
    [
        (["events", "append", "--stream", "s", "--type", "t", "--data", "{nope"], "not valid JSON", 2),
        (["events", "append", "--stream", "s", "--type", ""], "type: must not be empty", 1),
        (["events", "append", "--stream", "", "--type", "t"], "stream: must not be empty", 1),
        (["events", "append", "--stream", "s", "--type", "t", "--metadata", "[1]"], "--metadata must be", 1),
        (["events", "append", "--stream", "s", "--type", "t", "--data", "NaN"], "NaN", 2),
        (["events", "append", "--stream", "s", "--type", "t", "--frobnicate"], "No such option", 2),
    ],
)
def test_bad_input_is_one_line_nonzero_and_writes_nothing(db_url: str, args: list[str], needle: str, code: int) -> None:
    result = goalrt(db_url, *args)
    assert result.returncode == code, result
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("goalrt: error: "), result.stderr
    assert needle in result.stderr
    assert event_count(db_url) == 0


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("postgresql://goalrt@127.0.0.1:1/nothing", "127.0.0.1:1"),
        ("postgresql://goalrt@no-such-host.invalid:5439/x", "no-such-host.invalid:5439"),
        ("postgresql://[broken", "invalid database URL"),
    ],
)
def test_unreachable_database_is_one_line_naming_host_and_port(url: str, needle: str) -> None:
    result = goalrt(url, "events", "list")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and needle in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_unmigrated_database_says_to_migrate(empty_db_url: str) -> None:
    result = goalrt(empty_db_url, "events", "append", "--stream", "s", "--type", "t")
    assert result.returncode == 1 and "goalrt migrate" in result.stderr
    assert result.stderr.count("\n") == 1


def test_verify_names_the_first_tampered_position(db_url: str) -> None:
    for i in range(5):
        assert goalrt(db_url, "events", "append", "--stream", "s", "--type", "t", "--data", str(i)).returncode == 0
    with psycopg.connect(db_url) as c:
        c.execute("SET session_replication_role = replica")
        c.execute("UPDATE goalrt.event_data SET data = '42' WHERE id = 3")
    result = goalrt(db_url, "verify")
    assert result.returncode == 1
    assert result.stderr.strip() == "goalrt: error: hash chain broken at pos 3: content does not match its hash"
    as_json = goalrt(db_url, "verify", "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["first_bad_pos"] == 3


def test_follow_streams_until_interrupted(db_url: str) -> None:
    goalrt(db_url, "events", "append", "--stream", "s", "--type", "before")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOALRT_")}
    env["GOALRT_DATABASE_URL"] = db_url
    proc = subprocess.Popen(
        [sys.executable, "-m", "goalrt", "events", "follow", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["type"] == "before"
        goalrt(db_url, "events", "append", "--stream", "s", "--type", "after")
        assert json.loads(proc.stdout.readline())["type"] == "after"
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_demo_against_a_given_url(db_url: str) -> None:
    result = goalrt(db_url, "demo")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.strip().endswith("demo ok")
    assert "  goals     4: 4 complete (checkout 2, fulfill 1, refund 1)" in result.stdout
    # The URL came from GOALRT_DATABASE_URL: psql is told to use it, and no password is printed.
    assert '  psql "$GOALRT_DATABASE_URL"\n' in result.stdout
    assert "the embedded server" not in result.stdout


def test_embedded_server_default_and_concurrent_start(tmp_path: Path) -> None:
    """Without a URL goalrt starts the embedded server; two processes at once share it."""
    home = {"GOALRT_HOME": str(tmp_path / "home")}
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "goalrt", "db", "url"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**{k: v for k, v in os.environ.items() if not k.startswith("GOALRT_")}, **home},
                cwd=tmp_path,
            )
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=120) for p in procs]
        assert all(p.returncode == 0 for p in procs), outs
        urls = {out.strip() for out, _ in outs}
        assert len(urls) == 1 and "goalrt" in next(iter(urls))

        status = goalrt(None, "db", "status", "--json", env=home, cwd=tmp_path)
        info = json.loads(status.stdout)
        assert info["running"] and info["kind"] == "embedded"
        assert info["pgdata"] == str((tmp_path / "home" / "pgdata").resolve())

        demo = goalrt(None, "demo", env=home, cwd=tmp_path)
        assert demo.returncode == 0, demo.stderr
        with psycopg.connect(next(iter(urls))) as c:
            version = c.execute("SHOW server_version_num").fetchone()
        assert version is not None and int(version[0]) >= 180000
    finally:
        stopped = goalrt(None, "db", "stop", env=home, cwd=tmp_path)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = goalrt(None, "db", "status", "--json", env=home, cwd=tmp_path)
        if not json.loads(status.stdout)["running"]:
            break
        time.sleep(0.2)
    assert not json.loads(status.stdout)["running"]
    refused = goalrt("postgresql://x@127.0.0.1:1/y", "db", "stop")
    assert refused.returncode == 1 and "does not stop an external server" in refused.stderr
