"""Agent memory: indexing against appending, search latency, and how often the right event is in the top 3.

What it measures
----------------
A scratch database (``goalrt_mbench_<random>``, migrated, dropped at the
end) on the server given (default: GOALRT_DATABASE_URL, else the embedded
PostgreSQL 18, which has pgvector). A generated history of ``--events``
events: routine traffic of an online shop (orders placed and paid, payments
failed with the usual reasons, shipments sent, delayed and delivered, users
signing up and asking the usual questions, goals started and completed),
all drawn from one shared vocabulary, and among it ``NEEDLES``: events that
each happened once, with a labelled query a person might ask about it,
written without copying the event's words where English allows.

1. Keeping up: one thread appends the history (``append_many``, batches of
   1,000) while another runs the follower (``Memory.follow``) with the
   embedder of the run. Printed: events/s appended (all events over the time
   the appends took), events/s indexed (all events over the time from the
   start until the cursor reached the head), and how far behind the indexer
   was when the appends ended.
2. Search latency: ``--queries`` searches (the labelled queries and routine
   ones, in turn), p50 and p99, hybrid (words and vectors) and words alone.
3. Quality: for each needle, whether it is among the first 3 hits of its
   paraphrase and of a query in its own words (the way a person who saw it
   would ask), hybrid and words alone (``embedder=None``).

    python -m bench.memory_bench [--events 100000] [--queries 400] [--embedder wordllama] [--database-url URL]

The bench prints figures; it never asserts one.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

# (stream, type, data, a paraphrase, a query in the event's own words): each happens once in the history.
NEEDLES: list[tuple[str, str, dict[str, Any], str, str]] = [
    (
        "order:o-5521",
        "shipment.damaged",
        {"note": "box arrived crushed, the vase inside broken"},
        "which parcel got smashed on the way?",
        "the crushed box with a broken vase",
    ),
    (
        "user:u-881",
        "user.asked",
        {"question": "can I pay with bitcoin?"},
        "customer wanted to use cryptocurrency",
        "paying with bitcoin",
    ),
    (
        "payment:p-7781",
        "payment.failed",
        {"reason": "fraud check flagged a stolen card"},
        "suspicious transaction blocked as theft",
        "stolen card fraud",
    ),
    (
        "order:o-9001",
        "order.cancelled",
        {"reason": "customer moved abroad before delivery"},
        "buyer relocated to another country",
        "order cancelled, customer moved abroad",
    ),
    (
        "goal:4411",
        "goal.failed",
        {"error": "http.call: 503 from api.weather.example after 5 attempts"},
        "weather service was unavailable",
        "503 from the weather api",
    ),
    (
        "user:u-1203",
        "user.complained",
        {"message": "the courier was rude and threw the package over the fence"},
        "delivery driver behaved badly",
        "rude courier threw the package",
    ),
    (
        "order:o-3310",
        "order.refunded",
        {"amount": 1299, "reason": "duplicate charge"},
        "money returned because they were billed twice",
        "refund for a duplicate charge",
    ),
    (
        "inventory:sku-77",
        "stock.depleted",
        {"item": "red umbrella", "warehouse": "Leeds"},
        "we ran out of umbrellas",
        "umbrellas out of stock",
    ),
    (
        "user:u-4410",
        "user.asked",
        {"question": "do you ship to Antarctica?"},
        "delivery to the south pole",
        "shipping to Antarctica",
    ),
    (
        "goal:5120",
        "goal.failed",
        {"error": "ai.call: the model answered with an empty message"},
        "language model gave a blank reply",
        "ai.call empty message",
    ),
    (
        "payment:p-2290",
        "payment.failed",
        {"reason": "bank servers offline for maintenance"},
        "bank outage stopped the charge",
        "bank servers offline",
    ),
    (
        "order:o-6677",
        "order.placed",
        {"items": ["wedding cake", "champagne"], "total": 480},
        "someone ordered things for a marriage celebration",
        "wedding cake order",
    ),
    (
        "user:u-3001",
        "user.deleted",
        {"reason": "privacy request under GDPR"},
        "account erased for data protection",
        "GDPR deletion",
    ),
    (
        "shipment:s-909",
        "shipment.delayed",
        {"cause": "volcanic ash closed the airport"},
        "eruption grounded the flights",
        "volcanic ash delay",
    ),
    (
        "user:u-5150",
        "user.asked",
        {"question": "is the sweater made of wool from ethical farms?"},
        "question about animal welfare of the jumper",
        "ethical wool sweater",
    ),
    (
        "goal:7001",
        "goal.completed",
        {"result": "newsletter sent to 12000 subscribers"},
        "mass email campaign finished",
        "newsletter sent",
    ),
    (
        "order:o-1111",
        "order.placed",
        {"items": ["telescope"], "gift_message": "happy birthday grandpa"},
        "present for an old man's birthday",
        "telescope gift for grandpa",
    ),
    (
        "payment:p-6060",
        "payment.failed",
        {"reason": "card expired last month"},
        "the credit card was out of date",
        "expired card",
    ),
    (
        "user:u-7272",
        "user.complained",
        {"message": "the website kept logging me out every five minutes"},
        "session keeps ending unexpectedly",
        "logged out every five minutes",
    ),
    (
        "warehouse:w-2",
        "incident.reported",
        {"what": "forklift collided with a shelf", "injuries": "none"},
        "accident with a lifting vehicle in storage",
        "forklift incident",
    ),
    (
        "order:o-8080",
        "order.placed",
        {"items": ["dog food", "chew toy", "leash"]},
        "purchase of pet supplies for a puppy",
        "dog food and a leash",
    ),
    (
        "goal:9090",
        "goal.failed",
        {"error": "db.query: statement timeout after 30s"},
        "database query took too long",
        "db.query statement timeout",
    ),
    (
        "user:u-6464",
        "user.asked",
        {"question": "can I change the delivery address after ordering?"},
        "update where the package goes",
        "change delivery address",
    ),
    (
        "shipment:s-4242",
        "shipment.lost",
        {"carrier": "SlowPost", "last_seen": "Rotterdam"},
        "package vanished in the Netherlands",
        "shipment lost in Rotterdam",
    ),
    (
        "order:o-2468",
        "order.placed",
        {"items": ["solar panels"], "total": 5400},
        "big purchase of renewable energy equipment",
        "solar panels order",
    ),
    (
        "user:u-1357",
        "user.complained",
        {"message": "the shoes are two sizes too small"},
        "footwear did not fit",
        "shoes too small",
    ),
    (
        "payment:p-9999",
        "payment.failed",
        {"reason": "currency not supported: Mongolian tugrik"},
        "unsupported money type",
        "Mongolian tugrik payment",
    ),
    (
        "goal:3141",
        "goal.waiting",
        {"ask": "approve refund above 1000 euros?"},
        "waiting for a manager to allow a large reimbursement",
        "refund approval above 1000 euros",
    ),
    (
        "inventory:sku-12",
        "stock.recalled",
        {"item": "baby stroller", "defect": "brake fails on slopes"},
        "pushchair withdrawn for safety",
        "stroller recall, brakes",
    ),
    (
        "user:u-2020",
        "user.signed_up",
        {"referral": "podcast about gardening"},
        "new customer heard about us on a horticulture show",
        "signed up after a gardening podcast",
    ),
]

# Routine queries for the latency figures (their answers are not labelled).
ROUTINE_QUERIES = [
    "payment failed card declined",
    "shipment delayed",
    "order placed",
    "customer question about returns",
    "goal failed",
    "refund",
    "user signed up",
    "delivery was late",
    "insufficient funds",
    "tracking number",
]

_CUSTOMERS = 5000
_REASONS = ["card declined", "insufficient funds", "3-D Secure not completed", "bank refused", "card blocked"]
_ITEMS = ["t-shirt", "mug", "poster", "notebook", "hoodie", "cap", "socks", "backpack", "pen set", "sticker pack"]
_QUESTIONS = [
    "where is my order?",
    "how do I return an item?",
    "when will my refund arrive?",
    "can I change my order?",
    "do you have this in blue?",
    "what is your returns policy?",
]
_CAUSES = ["weather", "high volume", "customs check", "address incomplete", "vehicle breakdown"]


def routine(rng: random.Random, i: int) -> dict[str, Any]:
    """Return one routine event of the history (``i``: its number, for ids)."""
    c = f"u-{rng.randrange(_CUSTOMERS)}"
    o = f"o-{100000 + i}"
    kind = rng.randrange(8)
    if kind == 0:
        return {
            "stream": f"order:{o}",
            "type": "order.placed",
            "data": {"customer": c, "items": rng.sample(_ITEMS, 2), "total": rng.randrange(5, 200)},
        }
    if kind == 1:
        return {
            "stream": f"payment:p-{i}",
            "type": "payment.failed",
            "data": {"customer": c, "reason": rng.choice(_REASONS)},
        }
    if kind == 2:
        return {
            "stream": f"payment:p-{i}",
            "type": "payment.captured",
            "data": {"order": o, "amount": rng.randrange(5, 200)},
        }
    if kind == 3:
        return {"stream": f"shipment:s-{i}", "type": "shipment.sent", "data": {"order": o, "carrier": "DHL"}}
    if kind == 4:
        return {
            "stream": f"shipment:s-{i}",
            "type": "shipment.delayed",
            "data": {"order": o, "cause": rng.choice(_CAUSES)},
        }
    if kind == 5:
        return {"stream": f"user:{c}", "type": "user.asked", "data": {"question": rng.choice(_QUESTIONS)}}
    if kind == 6:
        return {"stream": f"goal:{i}", "type": "goal.completed", "data": {"result": {"order": o, "status": "done"}}}
    return {"stream": f"user:{c}", "type": "user.signed_up", "data": {"email_opt_in": rng.random() < 0.5}}


def history(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """Return ``n`` events: routine ones with the needles spread among them."""
    rng = random.Random(seed)
    events = [routine(rng, i) for i in range(max(n - len(NEEDLES), 0))]
    for k, (stream, type_, data, _, _) in enumerate(NEEDLES):
        events.insert(
            min(len(events), (k + 1) * len(events) // (len(NEEDLES) + 1)),
            {"stream": stream, "type": type_, "data": data},
        )
    return events


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def keep_up(url: str, events: list[dict[str, Any]], embedder: Any) -> tuple[float, float, int]:
    """Append ``events`` while the follower indexes; return (appended/s, indexed/s, behind when appends ended)."""
    from goalrt.log.eventlog import EventLog
    from goalrt.memory.memory import Memory

    stop = threading.Event()
    errors: list[BaseException] = []

    def follow() -> None:
        try:
            with Memory.connect(url, embedder=embedder) as memory:
                memory.follow(batch=1000, idle_poll=0.05, stop=stop)
        except BaseException as exc:  # printed below
            errors.append(exc)

    indexer = threading.Thread(target=follow)
    started = time.perf_counter()
    indexer.start()
    with EventLog.connect(url) as log, Memory.connect(url, embedder=None) as probe:
        for i in range(0, len(events), 1000):
            log.append_many(events[i : i + 1000])
        appended = time.perf_counter() - started
        log.tick()
        status = probe.status()
        behind = status.head - status.cursor_pos
        while status.cursor_pos < status.head and not errors:
            time.sleep(0.05)
            status = probe.status()
        indexed = time.perf_counter() - started
    stop.set()
    indexer.join()
    if errors:
        raise SystemExit(f"the indexer failed: {errors[0]}")
    return len(events) / appended, len(events) / indexed, behind


def search_figures(url: str, embedder: Any, queries: int) -> tuple[float, float, int, int, int]:
    """Return p50 and p99 ms, and the needles found in the top 3 by paraphrase and by their words, of ``embedder``."""
    from goalrt.memory.memory import Memory

    asked = [n[3] for n in NEEDLES] + [n[4] for n in NEEDLES] + ROUTINE_QUERIES
    with Memory.connect(url, embedder=embedder) as memory:
        memory.search("warm up")
        times = []
        for i in range(queries):
            started = time.perf_counter()
            memory.search(asked[i % len(asked)], limit=10)
            times.append((time.perf_counter() - started) * 1000)
        found = [0, 0]
        for stream, type_, _, paraphrase, keyword in NEEDLES:
            for i, q in enumerate((paraphrase, keyword)):
                top = memory.search(q, limit=3)
                found[i] += any(h.stream == stream and h.type == type_ for h in top)
    return statistics.median(times), pct(times, 99), found[0], found[1], len(NEEDLES)


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.pgbench_support import scratch_databases
    from goalrt.db.config import database_url
    from goalrt.db.migrate import upgrade
    from goalrt.memory.embedders import embedder_from_env

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--database-url", help="server to use (default: GOALRT_DATABASE_URL, else the embedded server)")
    p.add_argument("--events", type=int, default=100_000, help="events in the history (default 100000)")
    p.add_argument("--queries", type=int, default=400, help="searches timed per mode (default 400)")
    p.add_argument("--embedder", default="wordllama", help="GOALRT_MEMORY_EMBEDDER for the run (default wordllama)")
    args = p.parse_args(argv)
    os.environ["GOALRT_MEMORY_EMBEDDER"] = args.embedder
    embedder = embedder_from_env()
    events = history(args.events)
    with scratch_databases(database_url(args.database_url), [f"goalrt_mbench_{uuid.uuid4().hex[:8]}"]) as (url,):
        upgrade(url)
        appended, indexed, behind = keep_up(url, events, embedder)
        from goalrt.memory.memory import Memory

        with Memory.connect(url, embedder=None) as memory:
            status = memory.status()
        hybrid = search_figures(url, embedder, args.queries)
        words = search_figures(url, None, args.queries)
    name = embedder.name if embedder is not None else "none"
    print(f"{len(events)} events, embedder {name}, pgvector {'yes' if status.vectors else 'no'}")
    print(f"{'appended events/s':40s} {appended:10.0f}")
    print(f"{'indexed events/s (same run)':40s} {indexed:10.0f}")
    print(f"{'behind when appends ended':40s} {behind:10d}")
    for label, (p50, p99, para, key, total) in (("hybrid", hybrid), ("full text", words)):
        print(f"{label + ' search p50 / p99 ms':40s} {p50:10.1f} {p99:8.1f}")
        print(f"{label + ' top 3, paraphrased queries':40s} {para:10d} / {total} ({100 * para / total:.0f}%)")
        print(f"{label + ' top 3, queries in its words':40s} {key:10d} / {total} ({100 * key / total:.0f}%)")
    print(f"(CPUs: {os.cpu_count()}; the appender, the indexer and the database share them)")


if __name__ == "__main__":
    main()
