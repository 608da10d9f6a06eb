"""`goalrt serve`'s health checks, metrics and tokens, against a real uvicorn server and database."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from goalrt import Registry, Step
from goalrt.errors import ConfigError
from goalrt.goals.goals import Goals
from goalrt.serve.access import load_tokens
from tests.integration.serve_support import counts, serving
from tests.integration.test_worker import until_finished, with_worker

APP_TOKEN = "app-token-" + "a" * 20
READER_TOKEN = "reader-token-" + "r" * 20


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{base}/metrics", timeout=30).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_healthz_and_readyz_on_a_migrated_database(db_url: str) -> None:
    with serving(db_url) as base:
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{base}/readyz", timeout=30)
        assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_readyz_is_503_with_a_reason_on_an_unmigrated_database(empty_db_url: str) -> None:
    with serving(empty_db_url) as base:
        assert httpx.get(f"{base}/healthz").status_code == 200
        r = httpx.get(f"{base}/readyz", timeout=30)
        assert r.status_code == 503
        assert r.json()["status"] == "unavailable" and "not migrated" in r.json()["reason"]


def test_readyz_is_503_when_the_database_is_unreachable() -> None:
    with serving("postgresql://nobody@127.0.0.1:1/none") as base:
        r = httpx.get(f"{base}/readyz", timeout=30)
        assert r.status_code == 503 and "cannot connect" in r.json()["reason"]


def registry() -> Registry:
    reg = Registry()

    @reg.goal("job")
    def job(p: Any) -> list[Step]:
        return [Step("work")]

    @reg.action("work")
    async def work(args: dict[str, Any], ctx: Any) -> None:
        return None

    return reg


def test_metrics_parse_and_change_as_goals_run(db_url: str) -> None:
    reg = registry()
    with Goals.connect(db_url, registry=reg) as goals:
        goals.register()
    with serving(db_url) as base:
        before = scrape(base)
        assert before[("goalrt_goals", (("status", "complete"),))] == 0
        ids = [httpx.post(f"{base}/api/v1/goals", json={"name": "job"}, timeout=30).json()["id"] for _ in range(3)]
        pending = scrape(base)
        assert pending[("goalrt_goals", (("status", "pending"),))] == 3

        async def run(goals: Any, worker: Any) -> None:
            await until_finished(goals, *ids)

        asyncio.run(with_worker(db_url, reg, run))
        after = scrape(base)
    assert after[("goalrt_goals", (("status", "complete"),))] == 3
    assert after[("goalrt_log_head_position", ())] > pending[("goalrt_log_head_position", ())]
    submits = ("goalrt_http_requests_total", (("method", "POST"), ("route", "/api/v1/goals"), ("status", "201")))
    assert after[submits] == 3
    timed = ("goalrt_http_request_duration_seconds_count", (("method", "POST"), ("route", "/api/v1/goals")))
    assert after[timed] == 3
    assert ("goalrt_workers_alive", ()) in after


Login = Callable[[str], str]


@pytest.fixture
def login_url(db_url: str) -> Iterator[Login]:
    """``login_url(group)``: the URL of a new LOGIN role granted ``group``."""
    made: list[str] = []
    with psycopg.connect(db_url, autocommit=True) as conn:

        def make(group: str) -> str:
            role = f"goalrt_t_{uuid.uuid4().hex[:10]}"
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(role), sql.Identifier(group)))
            made.append(role)
            params = conninfo_to_dict(db_url)
            params["user"] = role
            params.pop("password", None)
            return make_conninfo("", **params)

        yield make
        for role in made:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_reader_token_cannot_write_and_an_app_token_can(db_url: str, login_url: Login) -> None:
    with Goals.connect(db_url, registry=registry()) as goals:
        goals.register()
    tokens = {APP_TOKEN: login_url("goalrt_app"), READER_TOKEN: login_url("goalrt_reader")}
    with serving(db_url, tokens=tokens) as base, httpx.Client(base_url=f"{base}/api/v1", timeout=30) as api:
        reader = {"Authorization": f"Bearer {READER_TOKEN}"}
        app = {"Authorization": f"Bearer {APP_TOKEN}"}
        before = counts(db_url)
        refused = api.post("/goals", json={"name": "job"}, headers=reader)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
        assert counts(db_url) == before
        assert api.put("/limits/work", json={"concurrency": 1}, headers=app).status_code == 403  # admin only
        for headers in ({}, {"Authorization": "Bearer nosuch-token-0000000000"}, {"Authorization": APP_TOKEN}):
            r = api.get("/goals", headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert counts(db_url) == before
        created = api.post("/goals", json={"name": "job"}, headers=app)
        assert created.status_code == 201, created.text
        listed = api.get("/goals", headers=reader).json()["goals"]
        assert [g["id"] for g in listed] == [created.json()["id"]]
        info = api.get(f"/goals/{created.json()['id']}", headers=reader).json()
        assert info["events"][0]["db_role"] == conninfo_to_dict(tokens[APP_TOKEN])["user"]
        # Health checks need no token.
        assert httpx.get(f"{base}/readyz", timeout=30).status_code == 200


def test_the_token_file_is_checked(tmp_path: Path) -> None:
    file = tmp_path / "tokens.toml"
    file.write_text(f'"{APP_TOKEN}" = "postgresql://app@db/x"\n')
    file.chmod(0o600)
    assert load_tokens(file, warn=print) == {APP_TOKEN: "postgresql://app@db/x"}
    file.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_tokens(file, warn=print)
    warned: list[str] = []
    file.chmod(0o640)
    load_tokens(file, warn=warned.append)
    assert warned and "readable by its group" in warned[0]
    short = tmp_path / "tokens.json"
    short.write_text('{"abc": "postgresql://app@db/x"}')
    short.chmod(0o600)
    with pytest.raises(ConfigError, match="shorter than 16"):
        load_tokens(short, warn=print)


def test_serve_refuses_a_non_local_host_without_tokens(db_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "goalrt", "--database-url", db_url, "serve", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "goalrt: error: listening on 0.0.0.0 needs --tokens FILE (bearer tokens mapped to database roles)"
    ]
