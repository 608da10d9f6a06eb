"""A worker's Prometheus metrics (scraped over HTTP) and its OpenTelemetry spans change as its goals run."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from goalrt import (
    ActionContext,
    AsyncGoals,
    ConfigError,
    InvalidGoalError,
    PermanentError,
    Registry,
    Retry,
    Step,
    Worker,
    tracing,
)
from tests.integration.test_worker import checkout_registry, until_finished, wait_for, with_worker

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def sample_registry() -> Registry:
    """checkout (pay, ship), broken (fails for good), flaky (fails once, then succeeds)."""
    registry = checkout_registry([])
    failures: list[int] = []

    @registry.goal("broken")
    def broken(p: Any) -> list[Step]:
        return [Step("boom")]

    @registry.action("boom")
    async def boom(args: Any, ctx: ActionContext) -> None:
        raise PermanentError("no")

    @registry.goal("flaky")
    def flaky(p: Any) -> list[Step]:
        return [Step("sometimes")]

    @registry.action("sometimes", retry=Retry(max_attempts=3, backoff=0.01, jitter=0))
    async def sometimes(args: Any, ctx: ActionContext) -> str:
        if not failures:
            failures.append(ctx.attempt)
            raise RuntimeError("once")
        return "ok"

    return registry


async def scrape(port: int) -> Samples:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def test_metrics_change_as_goals_run(db_url: str) -> None:
    async def body(goals: AsyncGoals, worker: Worker) -> None:
        assert worker.metrics_port
        before = await scrape(worker.metrics_port)
        assert total(before, "goalrt_worker_goals_completed_total") == 0
        assert ("goalrt_worker_heartbeat_age_seconds", frozenset()) in before
        ids = [(await goals.submit("checkout", {"order": f"o{i}", "amount": 1})).id for i in range(3)]
        ids += [(await goals.submit("broken")).id, (await goals.submit("flaky")).id]
        infos = await until_finished(goals, *ids)
        assert [i.status for i in infos] == ["complete"] * 3 + ["failed", "complete"]

        async def counted() -> bool:  # the commit is answered before the worker counts it
            s = await scrape(worker.metrics_port or 0)
            ended = total(s, "goalrt_worker_goals_completed_total") + total(s, "goalrt_worker_goals_failed_total")
            return ended == 5 and value(s, "goalrt_log_head_position") > 0

        await wait_for(counted)
        s = await scrape(worker.metrics_port)
        assert value(s, "goalrt_worker_goals_completed_total", goal_type="checkout") == 3
        assert value(s, "goalrt_worker_goals_completed_total", goal_type="flaky") == 1
        assert value(s, "goalrt_worker_goals_failed_total", goal_type="broken") == 1
        assert value(s, "goalrt_worker_goals_failed_total", goal_type="checkout") == 0
        assert value(s, "goalrt_worker_goals_claimed_total", goal_type="checkout") == 3
        assert total(s, "goalrt_worker_goals_claimed_total") == worker.stats.claimed
        assert value(s, "goalrt_worker_step_retries_total", action="sometimes") == 1
        steps = "goalrt_worker_step_duration_seconds_count"
        assert value(s, steps, action="pay", outcome="complete") == 3
        assert value(s, steps, action="ship", outcome="complete") == 3
        assert value(s, steps, action="boom", outcome="fail") == 1
        assert value(s, steps, action="sometimes", outcome="retry") == 1
        assert value(s, steps, action="sometimes", outcome="complete") == 1
        assert total(s, steps) == worker.stats.steps == 9
        # One start per claim that ran a handler: 3 checkouts, broken, flaky twice (its retry is a new claim).
        assert value(s, "goalrt_worker_start_latency_seconds_count") == 6
        assert value(s, "goalrt_worker_claim_duration_seconds_count") >= 1
        assert value(s, "goalrt_worker_results_refused_total") == 0
        assert value(s, "goalrt_goals_runnable") == 0
        assert value(s, "goalrt_goals_waiting") == 0

    asyncio.run(with_worker(db_url, sample_registry(), body, metrics_port=0, metrics_interval=0.05))


def test_a_taken_metrics_port_is_a_clear_error(db_url: str) -> None:
    async def body(goals: AsyncGoals, worker: Worker) -> None:
        second = Worker(db_url, sample_registry(), metrics_port=worker.metrics_port, poll=0.05)
        with pytest.raises(ConfigError, match=r"metrics: cannot listen on 127\.0\.0\.1:\d+"):
            async with asyncio.timeout(30):
                await second.run()

    asyncio.run(with_worker(db_url, sample_registry(), body, metrics_port=0))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """goalrt's spans, kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_tracer_provider(None)


def test_each_goal_is_one_trace_of_claim_plan_steps_and_commits(db_url: str, spans: InMemorySpanExporter) -> None:
    caller = TracerProvider().get_tracer("caller")
    submitted: dict[str, int] = {}

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        with caller.start_as_current_span("request") as request:
            submitted["trace"] = request.get_span_context().trace_id
            for name, params in (("checkout", {"order": "o1", "amount": 1}), ("broken", {})):
                submitted[name] = (await goals.submit(name, params)).id
        await until_finished(goals, submitted["checkout"], submitted["broken"])

    asyncio.run(with_worker(db_url, sample_registry(), body))  # drained: every goal's spans have ended
    finished = spans.get_finished_spans()
    by_goal: dict[int, list[ReadableSpan]] = {}
    for span in finished:
        by_goal.setdefault(int((span.attributes or {})["goalrt.goal_id"]), []).append(span)

    for name, steps in (("checkout", ["pay", "ship"]), ("broken", ["boom"])):
        goal_spans = sorted(by_goal[submitted[name]], key=lambda s: (s.start_time or 0, s.name != "goalrt.goal"))
        (submit,) = [s for s in goal_spans if s.name == "goalrt.submit"]
        # The submit is a span of the caller's trace, and the worker's spans continue it under the submit.
        assert submit.context is not None and submit.context.trace_id == submitted["trace"]
        assert submit.kind is trace.SpanKind.PRODUCER
        worker_spans = [s for s in goal_spans if s is not submit]
        assert [s.name for s in worker_spans] == [
            "goalrt.goal",
            "goalrt.claim",
            "goalrt.plan",
            *[n for step in steps for n in (f"goalrt.step {step}", "goalrt.commit")],
        ]
        root = worker_spans[0]
        assert root.parent is not None and root.parent.span_id == submit.context.span_id and root.parent.is_remote
        assert root.context is not None
        assert {s.context.trace_id for s in worker_spans if s.context} == {submitted["trace"]}
        assert all(s.parent is not None and s.parent.span_id == root.context.span_id for s in worker_spans[1:])
        # The claim that took it ended after the submit began (a claim already in flight may have begun before).
        assert (submit.start_time or 0) < (worker_spans[1].end_time or 0)

    (boom,) = [s for s in by_goal[submitted["broken"]] if s.name == "goalrt.step boom"]
    assert boom.status.status_code is trace.StatusCode.ERROR and "no" in str(boom.status.description)
    assert (boom.attributes or {})["goalrt.outcome"] == "fail"


def test_a_goal_submitted_without_a_trace_is_a_trace_of_its_own(db_url: str, spans: InMemorySpanExporter) -> None:
    """No current span at submit: the submit span is a root, and the goal's spans continue its trace."""
    submitted: dict[str, int] = {}

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        for order in ("a", "b"):
            submitted[order] = (await goals.submit("checkout", {"order": order, "amount": 1})).id
        await until_finished(goals, *submitted.values())

    asyncio.run(with_worker(db_url, sample_registry(), body))
    traces = set()
    for goal_id in submitted.values():
        mine = [s for s in spans.get_finished_spans() if (s.attributes or {}).get("goalrt.goal_id") == goal_id]
        (submit,) = [s for s in mine if s.name == "goalrt.submit"]
        assert submit.parent is None and submit.context is not None
        assert {s.context.trace_id for s in mine if s.context} == {submit.context.trace_id}
        traces.add(submit.context.trace_id)
    assert len(traces) == 2  # one trace per goal


CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def traced_registry(seen: dict[str, Any]) -> Registry:
    """``traced``: one step, whose handler notes the span it runs in."""
    registry = Registry()

    @registry.goal("traced")
    def traced(p: Any) -> list[Step]:
        return [Step("look"), Step("look")]

    @registry.action("look")
    async def look(args: Any, ctx: ActionContext) -> None:
        current = trace.get_current_span().get_span_context()
        seen.setdefault("handler", []).append((current.trace_id, current.span_id))

    return registry


def test_an_explicit_traceparent_is_continued_into_the_handlers(db_url: str, spans: InMemorySpanExporter) -> None:
    """Given as traceparent= at submit: the handler runs in the caller's trace, the goal span a child of its span."""
    seen: dict[str, Any] = {}
    ids: list[int] = []

    async def body(goals: AsyncGoals, worker: Worker) -> None:
        ids.append((await goals.submit("traced", traceparent=CALLER)).id)
        await until_finished(goals, *ids)

    asyncio.run(with_worker(db_url, traced_registry(seen), body))
    mine = [s for s in spans.get_finished_spans() if (s.attributes or {}).get("goalrt.goal_id") == ids[0]]
    worker_spans = sorted(
        (s for s in mine if s.name != "goalrt.submit"), key=lambda s: (s.start_time or 0, s.name != "goalrt.goal")
    )
    assert [s.name for s in worker_spans] == [
        "goalrt.goal",
        "goalrt.claim",
        "goalrt.plan",
        "goalrt.step look",
        "goalrt.commit",
        "goalrt.step look",
        "goalrt.commit",
    ]
    trace_id, span_id = int(CALLER.split("-")[1], 16), int(CALLER.split("-")[2], 16)
    root = worker_spans[0]
    assert root.parent is not None and (root.parent.trace_id, root.parent.span_id) == (trace_id, span_id)
    assert {s.context.trace_id for s in worker_spans if s.context} == {trace_id}
    # Each handler ran inside its step's span, in the caller's trace.
    steps = [s for s in worker_spans if s.name == "goalrt.step look"]
    assert seen["handler"] == [(trace_id, s.context.span_id) for s in steps if s.context]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # a version goalrt does not keep
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
        CALLER + "-00",
        CALLER + "\n",
        "x" * 10_000,
    ],
)
def test_a_malformed_traceparent_is_refused_in_one_line_naming_it(db_url: str, bad: str) -> None:
    async def body(goals: AsyncGoals, worker: Worker) -> None:
        with pytest.raises(InvalidGoalError) as raised:
            await goals.submit("traced", traceparent=bad)
        message = str(raised.value)
        assert message.startswith("traceparent must be a W3C traceparent") and "\n" not in message
        assert len(message) < 400
        # Past the Python check (as from psql): the database refuses it too, naming the option.
        with pytest.raises(InvalidGoalError, match=r"options\.traceparent must be a W3C traceparent"):
            await goals.submit_many([("traced", {}, {"traceparent": bad})])
        assert await goals.list(name="traced") == []

    asyncio.run(with_worker(db_url, traced_registry({}), body))
