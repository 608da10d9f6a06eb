"""The web console of `goalrt serve`, over HTTP against a real server, database and worker.

Goals are run by a worker in this process (console_support), so every page
shows real data: finished, failed, waiting and parent goals, state with
history, a limit, the worker itself and a loaded GDL version.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from goalrt import Goals, State
from tests.integration.console_support import HOSTILE, Seeded, registry, running_worker, seed, spread_history
from tests.integration.serve_support import serving


@dataclass
class Console:
    client: httpx.Client
    base: str
    url: str
    seeded: Seeded

    def post(self, path: str, data: dict[str, str], **headers: str) -> httpx.Response:
        """POST a form as a browser on the console's own page does (Origin is this server)."""
        return self.client.post(path, data=data, headers={"Origin": self.base, **headers})


@pytest.fixture
def console(db_url: str) -> Iterator[Console]:
    with running_worker(db_url):
        seeded = seed(db_url)
        with serving(db_url, registry=registry()) as base, httpx.Client(base_url=base, timeout=30) as client:
            yield Console(client, base, db_url, seeded)


PAGES = ["/", "/goals", "/events", "/state", "/workers", "/limits", "/waiting", "/gdl"]


def test_every_page_renders_real_data(console: Console) -> None:
    s = console.seeded
    for path in PAGES:
        r = console.client.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        assert r.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in r.headers["content-security-policy"]
    overview = console.client.get("/").text
    complete = int(re.search(r'id="count-complete">(\d+)<', overview).group(1))  # type: ignore[union-attr]
    # 5 jobs, the fanout and its 2 children; the approve goal waits, boom failed.
    assert complete == 8
    assert re.search(r'id="workers-alive">1<', overview)
    # The chart has a bar with a height for the minute the goals completed in.
    assert re.search(r'<rect [^>]*height="(?!0\.0")[0-9.]+"', overview)
    assert f'/goals/{s.asking}"' in console.client.get("/waiting").text
    assert "Approve the refund?" in console.client.get("/waiting").text
    limits = console.client.get("/limits").text
    assert "<td>work</td>" in limits
    workers = console.client.get("/workers").text
    assert "heartbeat age" in workers and " s</td>" in workers
    gdl = console.client.get("/gdl").text
    assert 'id="gdl-workspace">shop<' in gdl and 'id="gdl-version">1<' in gdl
    events = console.client.get("/events").text
    assert "goal.completed" in events and 'hx-trigger="every 2s"' in events
    assert console.client.get("/static/htmx.min.js").status_code == 200


def test_overview_charts_say_when_the_bound_cut_the_hour(console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    from goalrt.serve import console_pages

    monkeypatch.setattr(console_pages, "CHART_GOALS", 3)  # the server runs in this process (serve_support)
    html = console.client.get("/overview/charts").text
    assert 'id="charts-cut"' in html and "Counted among the newest 3 goals" in html


def test_overview_charts_draw_a_seeded_hour(console: Console) -> None:
    """Goals moved to known minutes: one bar part per status and minute, one point per minute with completions."""
    ago = [3, 4, 4, 8, 8, 8, 20, 45]  # minutes before now that each complete goal ended; it took i + 1 s
    spread_history(console.url, ago, console.seeded.failed)
    html = console.client.get("/").text
    throughput = html[html.index('id="chart-throughput"') : html.index('id="chart-latency"')]
    latency = html[html.index('id="chart-latency"') :]
    assert throughput.count('<g class="minute">') == 60
    assert throughput.count('class="bar status-complete"') == 5  # minutes 3, 4, 8, 20 and 45 before now
    assert throughput.count('class="bar status-failed"') == 1
    assert ": 3 complete</title>" in throughput and ": 1 failed</title>" in throughput
    for name in ("p50", "p95"):
        assert latency.count(f'class="point line-{name}"') == 5
        assert latency.count(f'class="line line-{name}"') == 1  # only minutes 4 and 3 before now are adjacent
    # The minute with three goals that took 4, 5 and 6 seconds.
    assert "p50 5 s (3 complete)" in latency and "p95 5.9 s (3 complete)" in latency
    assert "8 completed, 1 failed, 0 cancelled in the last hour" in html
    assert 'id="charts-cut"' not in html
    with Goals.connect(console.url) as goals:
        assert not goals.per_minute(60, 10_000).cut
        bounded = goals.per_minute(60, 3)  # the newest 3 goals were created now: the window's start is cut off
    assert bounded.cut and bounded.since is not None and len(bounded.minutes) == 60
    # htmx asks for the charts again: the fragment alone, with the same poller.
    fragment = console.client.get("/overview/charts").text
    assert fragment.startswith('<div id="charts" hx-get="/overview/charts" hx-trigger="every 10s"')
    assert fragment.count('class="point line-p50"') == 5 and "<html" not in fragment


def test_gdl_page_draws_the_workspace_graph_of_any_version(console: Console) -> None:
    """Each node of gdl graph's Mermaid is in the SVG, for the current version and for an older one chosen."""
    from goalrt.db.connect import connect
    from goalrt.gdl import check
    from goalrt.gdl.graph import mermaid
    from goalrt.gdl.runtime import load

    def drawn(html: str) -> tuple[list[str], int]:
        svg = html[html.index('<svg class="graph"') : html.index("</svg>", html.index('<svg class="graph"'))]
        edges = sum(int(n) for n in re.findall(r'<g class="edge[^"]*" data-edges="(\d)">', svg))
        return re.findall(r'<g class="node kind-\w+" data-key="([^"]+)">', svg), edges

    def expected(path: str) -> tuple[int, int]:
        lines = mermaid(check(path)).splitlines()
        nodes = [line for line in lines if re.match(r"\s+n\d+[\[({]", line)]
        return len(nodes), sum(1 for line in lines if "->|" in line)

    first = console.client.get("/gdl").text
    keys, edges = drawn(first)
    assert (len(keys), edges) == expected("gdl/examples/shop") == (15, 19)
    for key in ("goal:fulfill", "action:carrier.ship", "event:order.created", "path:orders.{Order}.status"):
        assert key in keys
    assert "fulfillment</text>" in first  # a node's app, under its kind
    with connect(console.url) as conn:
        second = load(conn, check("tests/fixtures/gdl/valid/shop"))
    now = console.client.get("/gdl").text
    assert f'id="gdl-version">{second.version}<' in now
    assert (len(drawn(now)[0]), drawn(now)[1]) == expected("tests/fixtures/gdl/valid/shop")
    versions = now[now.index('id="gdl-versions"') :]
    assert versions.count('<a href="/gdl?version=') == 2 and second.content_hash[:16] in versions
    older = console.client.get("/gdl", params={"version": 1}).text
    assert 'id="gdl-version">1<' in older and "An older version" in older
    assert drawn(older) == (keys, edges)
    missing = console.client.get("/gdl", params={"version": 99})
    assert missing.status_code == 404 and "no GDL version 99" in missing.text


def test_goal_filters_search_and_paging(console: Console) -> None:
    s = console.seeded

    def ids(response: httpx.Response) -> list[int]:
        assert response.status_code == 200, response.text[:300]
        return [int(i) for i in re.findall(r'<td><a href="/goals/(\d+)">', response.text)]

    failed = ids(console.client.get("/goals", params={"status": "failed"}))
    assert failed == [s.failed]
    waiting = ids(console.client.get("/goals", params={"status": "waiting"}))
    assert sorted(waiting) == sorted([s.asking, s.napping])
    jobs = ids(console.client.get("/goals", params={"name": "job"}))
    assert len(jobs) == 7 and jobs == sorted(jobs, reverse=True)
    assert ids(console.client.get("/goals", params={"name": "job", "status": "failed"})) == []
    everything = ids(console.client.get("/goals"))
    assert everything == sorted(everything, reverse=True) and len(everything) == 11
    assert 'rel="next"' not in console.client.get("/goals").text
    bad = console.client.get("/goals", params={"status": "nosuch"})
    assert bad.status_code == 400 and "unknown status" in bad.text
    by_id = console.client.get("/goals", params={"q": str(s.failed)}, follow_redirects=False)
    assert by_id.status_code == 303 and by_id.headers["location"] == f"/goals/{s.failed}"
    by_key = console.client.get("/goals", params={"q": "order-k1"}, follow_redirects=False)
    assert by_key.status_code == 303 and by_key.headers["location"] == f"/goals/{s.keyed}"
    missing = console.client.get("/goals", params={"q": "no-such-key"})
    assert missing.status_code == 404 and "no goal has the id or idempotency key" in missing.text


def test_paging_walks_every_goal_once(console: Console) -> None:
    with Goals.connect(console.url) as goals:
        for n in range(60):
            goals.submit("job", {"n": n})
    seen: list[int] = []
    page = 1
    while True:
        r = console.client.get("/goals", params={"name": "job", "page": page})
        seen += [int(i) for i in re.findall(r'<td><a href="/goals/(\d+)">', r.text)]
        if 'rel="next"' not in r.text:
            break
        page += 1
    # 7 jobs of the seed and 60 more: two pages of 50, each goal once, newest first.
    assert page == 2 and len(seen) == 67 == len(set(seen)) and seen == sorted(seen, reverse=True)


def test_goal_page_shows_timeline_steps_tree_and_errors(console: Console) -> None:
    s = console.seeded
    page = console.client.get(f"/goals/{s.fanout}").text
    timeline = page[page.index('id="timeline"') :]
    types = re.findall(r"<strong>([a-z_.]+)</strong>", timeline)
    assert types[0] == "goal.submitted" and "goal.planned" in types and "goal.waiting" in types
    assert types[-1] == "goal.completed"
    positions = [int(p) for p in re.findall(r'<span class="pos">(\d+)</span>', timeline)]
    assert positions == sorted(positions)
    tree = page[page.index('id="tree"') :]
    assert len(re.findall(r'<li class="depth-1"><a href="/goals/\d+">', tree)) == 2
    failed = console.client.get(f"/goals/{s.failed}").text
    # The handler's error, escaped, in the steps table and as the goal's error.
    assert "the part &lt;b&gt;broke&lt;/b&gt;" in failed and "<b>broke</b>" not in failed
    assert 'id="goal-status">failed<' in failed
    job = console.client.get(f"/goals/{s.done[0]}").text
    assert "<td>work</td>" in job.replace(" ", "") or ">work<" in job
    assert "doubled" in job


def test_hostile_params_are_shown_escaped(console: Console) -> None:
    for path in (f"/goals/{console.seeded.hostile}", "/events/rows?after=0"):
        page = console.client.get(path).text
        assert HOSTILE not in page and "<script>alert" not in page
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page, path


def test_cancel_from_the_form(console: Console) -> None:
    napping = console.seeded.napping
    goal_page = console.client.get(f"/goals/{napping}").text
    assert f'href="/goals/{napping}/cancel"' in goal_page
    confirm = console.client.get(f"/goals/{napping}/cancel").text
    assert 'method="post"' in confirm and "Yes, cancel" in confirm
    r = console.post(f"/goals/{napping}/cancel", {"reason": "not needed"})
    assert r.status_code == 303 and r.headers["location"] == f"/goals/{napping}"
    after = console.client.get(f"/goals/{napping}").text
    assert 'id="goal-status">cancelled<' in after and "goal.cancelled" in after
    assert "cancel-link" not in after
    again = console.post(f"/goals/{napping}/cancel", {})
    assert again.status_code == 409 and "invalid_transition" in again.text


def test_retry_from_the_form(console: Console) -> None:
    napping = console.seeded.napping
    assert "retry-form" not in console.client.get(f"/goals/{napping}").text  # not ended: nothing to retry
    assert console.post(f"/goals/{napping}/cancel", {"reason": "later"}).status_code == 303
    page = console.client.get(f"/goals/{napping}").text
    assert f'action="/goals/{napping}/retry"' in page
    for bad in ("0", "two", "-1"):
        refused = console.post(f"/goals/{napping}/retry", {"from_step": bad})
        assert refused.status_code == 400 and "from step must be a step number" in refused.text, bad
    cross = console.client.post(f"/goals/{napping}/retry", data={}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    with Goals.connect(console.url) as goals:
        assert goals.get(napping).status == "cancelled"
    r = console.post(f"/goals/{napping}/retry", {"from_step": "", "reason": "now"})
    assert r.status_code == 303 and r.headers["location"] == f"/goals/{napping}"
    after = console.client.get(f"/goals/{napping}").text
    assert "goal.retried" in after and "retry-form" not in after
    with Goals.connect(console.url) as goals:
        assert goals.get(napping).status in ("pending", "active", "waiting")


def test_a_post_from_elsewhere_is_refused(console: Console) -> None:
    napping = console.seeded.napping
    for headers in ({}, {"Origin": "https://evil.example"}, {"Referer": "https://evil.example/x"}, {"Origin": "null"}):
        r = console.client.post(f"/goals/{napping}/cancel", data={}, headers=headers)
        assert r.status_code == 403 and "cross_site" in r.text, headers
    with Goals.connect(console.url) as goals:
        assert goals.get(napping).status == "waiting"
    referer = console.client.post(
        f"/goals/{napping}/cancel", data={}, headers={"Referer": f"{console.base}/goals/{napping}/cancel"}
    )
    assert referer.status_code == 303


def test_answering_an_ask_from_the_form_resumes_the_goal(console: Console) -> None:
    asking = console.seeded.asking
    page = console.client.get(f"/goals/{asking}").text
    assert 'id="ask-form"' in page and "Approve the refund?" in page
    for field in ("f.approved", "f.amount", "f.note"):
        assert f'name="{field}"' in page
    wrong = console.post(f"/goals/{asking}/resume", {"f.approved": "true", "f.amount": "lots"})
    assert wrong.status_code == 400 and 'id="answer-error"' in wrong.text and "amount" in wrong.text
    refused = console.post(f"/goals/{asking}/resume", {"f.approved": "true"})
    assert refused.status_code == 400 and "amount" in refused.text
    with Goals.connect(console.url) as goals:
        assert goals.get(asking).status == "waiting"
    with running_worker(console.url):
        r = console.post(f"/goals/{asking}/resume", {"f.approved": "true", "f.amount": "25", "by": "ann"})
        assert r.status_code == 303, r.text[:500]
        with Goals.connect(console.url) as goals:
            info = goals.wait(asking, timeout=30)
    assert info.status == "complete"
    answered = next(s for s in info.steps if s.kind == "ask")
    assert answered.result == {"approved": True, "amount": 25}
    resumed = next(e for e in info.events if e.type == "goal.resumed")
    assert resumed.data.get("by") == "ann" or "ann" in str(resumed.data)


def test_state_browser_travels_in_time(console: Console) -> None:
    now = console.client.get("/state", params={"prefix": "orders"}).text
    assert "orders.o1.status" in now and "&#34;paid&#34;" in now and "orders.o2.status" in now
    with State.connect(console.url) as st:
        first = st.history("orders.o1.status")[0].pos
    then = console.client.get("/state", params={"prefix": "orders", "at": str(first)}).text
    assert "&#34;created&#34;" in then and "&#34;paid&#34;" not in then and "orders.o2.status" not in then
    assert f"As it was at position {first}" in then


def test_live_event_rows_follow_the_log(console: Console) -> None:
    page = console.client.get("/events").text
    after = int(re.search(r"/events/rows\?after=(\d+)", page).group(1))  # type: ignore[union-attr]
    with Goals.connect(console.url) as goals:
        new = goals.submit("job", {"n": 1}).id
    rows = console.client.get("/events/rows", params={"after": after}).text
    assert f"goal:{new}</a></td><td>goal.submitted<" in rows
    positions = [int(p) for p in re.findall(r'<tr class="event"><td>(\d+)</td>', rows)]
    assert positions and positions == sorted(positions, reverse=True) and min(positions) > after
    later = int(re.search(r"/events/rows\?after=(\d+)", rows).group(1))  # type: ignore[union-attr]
    assert later == max(positions)
    # The next poll sends only what came after: never an event twice.
    again = console.client.get("/events/rows", params={"after": later}).text
    assert all(int(p) > later for p in re.findall(r'<tr class="event"><td>(\d+)</td>', again))
    assert f"goal:{new}</a></td><td>goal.submitted<" not in again


@pytest.fixture
def reader_console(db_url: str) -> Iterator[tuple[httpx.Client, str, dict[str, str], int]]:
    """A server with two tokens: one of a goalrt_reader login role, one of the server's own (admin) URL."""
    with running_worker(db_url):
        seeded = seed(db_url)
    role = f"goalrt_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE goalrt_reader").format(sql.Identifier(role)))
    params = conninfo_to_dict(db_url)
    params["user"] = role
    params.pop("password", None)
    tokens = {"reader-token-0123456789": make_conninfo("", **params), "admin-token-0123456789": db_url}
    try:
        with serving(db_url, tokens=tokens) as base, httpx.Client(base_url=base, timeout=30) as client:
            yield client, base, tokens, seeded.napping
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_tokens_login_and_a_reader_cannot_cancel(reader_console: tuple[httpx.Client, str, dict[str, str], int]) -> None:
    client, base, _, napping = reader_console
    anonymous = client.get("/goals", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login?next=")
    wrong = client.post("/login", data={"token": "not-a-token-at-all", "next": "/goals"}, headers={"Origin": base})
    assert wrong.status_code == 401 and "Unknown token" in wrong.text
    offsite = client.post(
        "/login",
        data={"token": "reader-token-0123456789", "next": "https://evil.example/"},
        headers={"Origin": base},
        follow_redirects=False,
    )
    assert offsite.status_code == 303 and offsite.headers["location"] == "/"
    cookie = offsite.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    for path in ("/goals", f"/goals/{napping}", "/", "/overview/charts", "/gdl", "/gdl?version=1"):
        assert client.get(path).status_code == 200, path  # a reader sees the charts, the versions and the graph
    assert 'id="gdl-graph"' in client.get("/gdl").text
    refused = client.post(f"/goals/{napping}/cancel", data={}, headers={"Origin": base})
    assert refused.status_code == 403 and "permission_denied" in refused.text
    assert client.get(f"/goals/{napping}").text.count('id="goal-status">waiting<') == 1
    # A bearer header works as the API's does, without the cookie.
    client.cookies.clear()
    bearer = {"Authorization": "Bearer admin-token-0123456789", "Origin": base}
    done = client.post(f"/goals/{napping}/cancel", data={}, headers=bearer, follow_redirects=False)
    assert done.status_code == 303
