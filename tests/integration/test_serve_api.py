"""`goalrt serve`'s JSON API, against a real uvicorn server and database: each endpoint, and bad input.

Every refused request answers one JSON error ``{"error": {"code", "message"}}``
with the CLI's one-line message, and writes nothing (goals and events are
counted before and after).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from goalrt import Registry, State
from goalrt.db.connect import connect
from goalrt.gdl import check
from goalrt.gdl.runtime import load
from goalrt.goals.goals import Goals
from goalrt.planner import Set
from goalrt.state import forks, snapshots
from tests.integration.serve_support import counts, serving

REPO_SHOP = "gdl/examples/shop"


class Job(BaseModel):
    n: int


def registry() -> Registry:
    reg = Registry()

    @reg.goal("job", params=Job)
    def job(p: Job) -> list[Any]:
        return []

    reg.achieve("lit", "lamp.on == true")

    @reg.action("switch", pre="lamp.on == false", effects=[Set("lamp.on", True)])
    async def switch(args: dict[str, Any], ctx: Any) -> None:
        return None

    return reg


@pytest.fixture
def api(db_url: str) -> Iterator[httpx.Client]:
    with Goals.connect(db_url, registry=registry()) as goals:
        goals.register()
    with serving(db_url, registry=registry()) as base, httpx.Client(base_url=f"{base}/api/v1", timeout=30) as client:
        yield client


def error_of(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert "\n" not in body["error"]["message"]
    return dict(body["error"])


def test_submit_get_list_tree_cancel(api: httpx.Client) -> None:
    r = api.post("/goals", json={"name": "job", "params": {"n": 1}, "priority": 3, "key": "k1"})
    assert r.status_code == 201 and r.json()["created"] is True
    goal_id = r.json()["id"]
    again = api.post("/goals", json={"name": "job", "params": {"n": 1}, "key": "k1"})
    assert again.status_code == 200 and again.json() == {"id": goal_id, "created": False}
    info = api.get(f"/goals/{goal_id}").json()
    assert info["status"] == "pending" and info["priority"] == 3 and info["params"] == {"n": 1}
    assert [e["type"] for e in info["events"]] == ["goal.submitted"]
    assert [g["id"] for g in api.get("/goals", params={"status": "pending", "name": "job"}).json()["goals"]] == [
        goal_id
    ]
    assert api.get("/goals", params={"status": "complete"}).json()["goals"] == []
    assert api.get("/goals", params={"waiting": "true"}).json()["goals"] == []
    assert [n["id"] for n in api.get(f"/goals/{goal_id}/tree").json()["nodes"]] == [goal_id]
    assert api.post(f"/goals/{goal_id}/cancel", json={"reason": "no need"}).json()["outcome"] == "cancelled"
    refused = api.post(f"/goals/{goal_id}/cancel")
    assert refused.status_code == 409 and error_of(refused)["code"] == "invalid_transition"
    not_waiting = api.post(f"/goals/{goal_id}/resume", json={"data": {"ok": True}})
    assert not_waiting.status_code in (400, 409), not_waiting.text
    error_of(not_waiting)


def test_batch_submit_is_idempotent_and_all_or_nothing(api: httpx.Client, db_url: str) -> None:
    batch = {"goals": [{"name": "job", "params": {"n": i}, "key": f"b{i}"} for i in range(3)]}
    first = api.post("/goals/batch", json=batch).json()["goals"]
    assert [g["created"] for g in first] == [True, True, True]
    before = counts(db_url)
    second = api.post("/goals/batch", json=batch).json()["goals"]
    assert [g["id"] for g in second] == [g["id"] for g in first] and not any(g["created"] for g in second)
    assert counts(db_url) == before
    # One bad goal refuses the whole batch.
    bad = {"goals": [{"name": "job", "params": {"n": 9}}, {"name": "job", "params": {"n": "many"}}]}
    r = api.post("/goals/batch", json=bad)
    assert r.status_code == 400, r.text
    assert error_of(r)["code"] == "invalid_goal"
    assert counts(db_url) == before


BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("post", "/goals", {"content": b'{"name": "job", "params": '}, 400, "invalid_json"),
    ("post", "/goals", {"content": b'{"name": "job", "params": {"n": NaN}}'}, 400, "invalid_json"),
    ("post", "/goals", {"json": {"name": "nosuch"}}, 400, "invalid_goal"),
    ("post", "/goals", {"json": {"name": "job", "params": {"n": "x"}}}, 400, "invalid_goal"),
    ("post", "/goals", {"json": {"name": "job", "params": {"n": 1}, "colour": "red"}}, 400, "invalid_request"),
    ("post", "/goals", {"json": {"name": "job", "params": {"n": 1}, "delay": "soon"}}, 400, "config"),
    ("post", "/goals", {"json": {"params": {"n": 1}}}, 400, "invalid_request"),
    ("post", "/goals", {"json": [1, 2]}, 400, "invalid_request"),
    ("post", "/goals/batch", {"json": {"goals": []}}, 400, "invalid_request"),
    ("get", "/goals/999", {}, 404, "goal_not_found"),
    ("get", "/goals/x", {}, 400, "invalid_request"),
    ("get", "/goals", {"params": {"status": "nosuch"}}, 400, "invalid_request"),
    ("get", "/goals", {"params": {"limit": "0"}}, 400, "invalid_request"),
    ("post", "/goals/999/cancel", {}, 404, "goal_not_found"),
    ("post", "/goals/999/resume", {"json": {"data": [1]}}, 400, "invalid_request"),
    ("get", "/events", {"params": {"after": "-1"}}, 400, "invalid_request"),
    ("get", "/state/bad..path", {}, 400, "invalid_state_change"),
    ("get", "/state", {"params": {"at": "yesterday"}}, 404, "out_of_range"),
    ("get", "/snapshots/nosuch", {}, 404, "out_of_range"),
    ("get", "/goals", {"params": {"fork": "nosuch"}}, 404, "out_of_range"),
    ("put", "/limits/pay", {"json": {"concurrency": 0}}, 400, "invalid_request"),
    ("delete", "/limits/pay", {}, 404, "not_found"),
    ("post", "/plan", {"json": {"name": "job"}}, 400, "config"),
    ("post", "/plan", {"json": {"name": "nosuch"}}, 400, "invalid_goal"),
    ("get", "/nosuch", {}, 404, "not_found"),
    (
        "post",
        "/goals",
        {"json": {"name": "job", "params": {"n": 1}}, "headers": {"traceparent": "00-x"}},
        400,
        "invalid_goal",
    ),
    (
        "post",
        "/goals/batch",
        {
            "json": {"goals": [{"name": "job", "params": {"n": 1}}]},
            "headers": {"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"},
        },
        400,
        "invalid_goal",
    ),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), BAD_REQUESTS)
def test_bad_input_is_one_json_error_and_writes_nothing(
    api: httpx.Client, db_url: str, method: str, path: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    before = counts(db_url)
    r = api.request(method.upper(), path, **kwargs)
    assert (r.status_code, error_of(r)["code"]) == (status, code), r.text
    assert counts(db_url) == before


CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_the_traceparent_header_is_kept_with_the_goals(api: httpx.Client, db_url: str) -> None:
    one = api.post("/goals", json={"name": "job", "params": {"n": 1}}, headers={"traceparent": CALLER}).json()["id"]
    none = api.post("/goals", json={"name": "job", "params": {"n": 2}}).json()["id"]
    batch = api.post(
        "/goals/batch", json={"goals": [{"name": "job", "params": {"n": 3}}]}, headers={"traceparent": CALLER}
    ).json()["goals"]
    with connect(db_url) as conn:
        rows = dict(conn.execute("SELECT id, trace_context FROM goalrt.goals").fetchall())
    assert rows == {one: CALLER, none: None, batch[0]["id"]: CALLER}
    message = error_of(api.post("/goals", json={"name": "job"}, headers={"traceparent": "bad"}))["message"]
    assert message.startswith("the traceparent header must be a W3C traceparent")


def test_the_messages_are_the_clis(api: httpx.Client) -> None:
    assert error_of(api.get("/goals/999"))["message"] == "goal 999 does not exist"
    assert error_of(api.post("/goals", json={"name": "nosuch"}))["message"].startswith("unknown goal type 'nosuch'")


def test_events_state_snapshots_forks(api: httpx.Client, db_url: str) -> None:
    with State.connect(db_url) as st:
        st.set("orders.o1.status", "created")
        st.set("orders.o1.status", "paid")
        snapshots.create(st, "s1", note="after paying")
        forks.create(st.connection, "sim")
        head = st.tick()
    events = api.get("/events", params={"type": "state.*"}).json()["events"]
    assert [e["type"] for e in events] == ["state.changed", "state.changed"]
    first_pos = events[0]["pos"]
    later = api.get("/events", params={"after": first_pos}).json()["events"]
    assert later and all(e["pos"] > first_pos for e in later)
    assert api.get("/events", params={"stream": "nosuch"}).json()["events"] == []
    assert api.get("/state/orders.o1.status").json()["value"] == "paid"
    assert api.get("/state/orders.o1.status", params={"at": str(first_pos)}).json()["value"] == "created"
    assert [e["path"] for e in api.get("/state", params={"pattern": "orders.*"}).json()["entries"]] == [
        "orders.o1.status"
    ]
    assert [h["value"] for h in api.get("/state/orders.o1.status/history").json()["history"]] == ["created", "paid"]
    missing = api.get("/state/orders.o2.status")
    assert missing.status_code == 404 and error_of(missing)["message"] == "path orders.o2.status does not exist"
    assert [s["name"] for s in api.get("/snapshots").json()["snapshots"]] == ["s1"]
    shown = api.get("/snapshots/s1").json()
    assert shown["note"] == "after paying" and shown["state"][0]["value"] == "paid"
    assert [f["name"] for f in api.get("/forks").json()["forks"]] == ["sim"]
    assert api.get("/state/orders.o1.status", params={"fork": "sim"}).json()["value"] == "paid"
    assert head >= events[-1]["pos"]


def test_limits_workers_gdl_plan(api: httpx.Client, db_url: str) -> None:
    assert api.get("/limits").json() == {"limits": []}
    limit = api.put("/limits/pay", json={"concurrency": 2}).json()
    assert limit["action"] == "pay" and limit["max_concurrent"] == 2
    assert [lim["action"] for lim in api.get("/limits").json()["limits"]] == ["pay"]
    assert api.delete("/limits/pay").json()["dropped"] is True
    assert api.get("/workers").json() == {"workers": []}
    assert error_of(api.get("/gdl"))["code"] == "not_found"
    with connect(db_url) as conn:
        load(conn, check(REPO_SHOP))
    gdl = api.get("/gdl").json()
    assert (gdl["workspace"], gdl["version"]) == ("shop", 1) and gdl["definitions"]["runtime"]["goal_types"]
    with State.connect(db_url) as st:
        st.set("lamp.on", False)
    planned = api.post("/plan", json={"name": "lit"}).json()
    assert planned["found"] is True and [s["action"] for s in planned["steps"]] == ["switch"]


def test_openapi_lists_every_endpoint(api: httpx.Client) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/goals",
        "/api/v1/goals/batch",
        "/api/v1/goals/{goal_id}",
        "/api/v1/goals/{goal_id}/wait",
        "/api/v1/goals/{goal_id}/retry",
        "/api/v1/events/stream",
    ):
        assert path in paths
    assert "SubmitRequest" in api.get("/openapi.json").text


def test_wait_and_retry(api: httpx.Client, db_url: str) -> None:
    goal_id = api.post("/goals", json={"name": "job", "params": {"n": 1}}).json()["id"]
    late = api.get(f"/goals/{goal_id}/wait", params={"timeout": 0.2})
    assert late.status_code == 408 and error_of(late) == {
        "code": "goal_wait_timeout",
        "message": f"goal {goal_id} is still pending after 0.2 s (it goes on; wait again or cancel it)",
    }
    assert api.get(f"/goals/{goal_id}/wait", params={"timeout": 301}).status_code == 400
    refused = api.post(f"/goals/{goal_id}/retry")
    assert refused.status_code == 409 and "cannot retry goal" in error_of(refused)["message"]
    api.post(f"/goals/{goal_id}/cancel", json={"reason": "not now"})
    ended = api.get(f"/goals/{goal_id}/wait", params={"timeout": 5})
    assert ended.status_code == 200 and ended.json()["status"] == "cancelled"
    before = counts(db_url)
    bad = api.post(f"/goals/{goal_id}/retry", json={"from_step": 0})
    assert bad.status_code == 400 and counts(db_url) == before
    again = api.post(f"/goals/{goal_id}/retry", json={"reason": "now"})
    assert again.status_code == 200 and again.json() == {"id": goal_id, "outcome": "pending", "first_step": None}
    assert api.get(f"/goals/{goal_id}").json()["status"] == "pending"
    assert api.post("/goals/987654/retry").status_code == 404
