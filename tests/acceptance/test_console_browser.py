"""The web console in a real headless Chromium (Playwright from PyPI driving Debian's ``chromium``).

No browser is downloaded: Playwright launches /usr/bin/chromium (``.ci/run``
installs it). The pages show data from goals a worker ran; a goal is
cancelled from its page; the events page shows a new event and the
overview's charts a new goal without a reload; the GDL page draws the loaded
workspace's graph. Screenshots of the main pages go to pytest's temporary directory, or with
``GOALRT_SCREENSHOTS=docs/img`` to the ones kept in git and shown in the
README (so an ordinary run leaves the working tree unchanged).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from goalrt import Goals
from tests.integration.console_support import Seeded, registry, running_worker, seed, spread_history
from tests.integration.serve_support import serving

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() or shutil.which("chromium") is None,
    reason="Debian's chromium is not installed (apt-get install -y chromium; .ci/run does)",
)


@pytest.fixture
def browser_page(db_url: str) -> Iterator[tuple[Any, str, Seeded, str]]:
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    with running_worker(db_url):
        seeded = seed(db_url)
        with (
            serving(db_url, registry=registry()) as base,
            playwright.sync_playwright() as p,
        ):
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                yield page, base, seeded, db_url
            finally:
                browser.close()


def test_pages_cancel_and_live_events(browser_page: tuple[Any, str, Seeded, str], tmp_path: Path) -> None:
    from playwright.sync_api import expect

    shots = Path(os.environ.get("GOALRT_SCREENSHOTS") or tmp_path)
    page, base, seeded, url = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    shots.mkdir(parents=True, exist_ok=True)

    spread_history(url, [3, 4, 4, 8, 8, 8, 20, 45], seeded.failed)  # an hour with something to draw
    page.goto(f"{base}/")
    expect(page.locator("#count-complete")).to_have_text("8")
    # The charts: a slot per minute of the last hour, bars where goals ended, points where some completed.
    expect(page.locator("#chart-throughput g.minute")).to_have_count(60)
    expect(page.locator("#chart-throughput rect.bar.status-complete").first).to_be_visible()
    expect(page.locator("#chart-latency circle.point.line-p95").first).to_be_visible()
    page.screenshot(path=str(shots / "console-overview.png"), full_page=True)
    # htmx redraws the charts (every 10 s) without a reload: a goal that completes now is counted.
    page.evaluate("window.__loadedOnce = true")
    expect(page.locator("#charts")).to_contain_text("8 completed")
    with Goals.connect(url) as goals:
        goals.wait(goals.submit("job", {"n": 78}).id, timeout=30)
    expect(page.locator("#charts")).to_contain_text("9 completed", timeout=25_000)
    assert page.evaluate("window.__loadedOnce") is True, "the overview was reloaded"

    page.goto(f"{base}/goals")
    expect(page.locator("#goals tbody tr")).to_have_count(12)
    page.select_option("select[name=status]", "failed")
    page.click("text=Filter")
    expect(page.locator("#goals tbody tr")).to_have_count(1)
    page.goto(f"{base}/goals")
    page.screenshot(path=str(shots / "console-goals.png"), full_page=True)

    page.goto(f"{base}/goals/{seeded.fanout}")
    expect(page.locator("#timeline li").first).to_contain_text("goal.submitted")
    expect(page.locator("#tree li")).to_have_count(2)
    page.screenshot(path=str(shots / "console-goal.png"), full_page=True)

    page.goto(f"{base}/goals/{seeded.asking}")
    expect(page.locator("#ask-form")).to_be_visible()
    page.screenshot(path=str(shots / "console-ask.png"), full_page=True)

    for path, shot in (("/state?prefix=orders", "console-state.png"), ("/workers", "console-workers.png")):
        page.goto(f"{base}{path}")
        expect(page.locator("main table")).to_be_visible()
        page.screenshot(path=str(shots / shot), full_page=True)
    # The workspace graph of the loaded shop: every node drawn, inside the picture.
    page.goto(f"{base}/gdl")
    expect(page.locator("#gdl-graph g.node")).to_have_count(15)
    expect(page.locator('#gdl-graph g.node[data-key="goal:fulfill"]')).to_be_visible()
    expect(page.locator("#gdl-versions tbody tr")).to_have_count(1)
    page.screenshot(path=str(shots / "console-gdl.png"), full_page=True)
    for path in ("/limits", "/waiting"):
        page.goto(f"{base}{path}")
        expect(page.locator("h1")).to_be_visible()

    # Cancel the sleeping goal from its page, through the confirmation page.
    page.goto(f"{base}/goals/{seeded.napping}")
    page.click("#cancel-link")
    page.fill("input[name=reason]", "from the browser")
    page.click("#confirm-cancel")
    expect(page.locator("#goal-status")).to_have_text("cancelled")
    expect(page.locator("#timeline")).to_contain_text("goal.cancelled")

    # The events page shows an event committed after it loaded, without a reload.
    page.goto(f"{base}/events")
    page.evaluate("window.__loadedOnce = true")
    expect(page.locator("#events-poll")).to_be_visible()
    with Goals.connect(url) as goals:
        new = goals.submit("job", {"n": 77}).id
    expect(page.locator(f"#events tr.event:has-text('goal:{new}')").first).to_be_visible(timeout=15_000)
    assert page.evaluate("window.__loadedOnce") is True, "the page was reloaded"
    page.screenshot(path=str(shots / "console-events.png"), full_page=False)
    assert not errors, errors
