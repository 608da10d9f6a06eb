"""Handlers of the agent workspace (gdl/examples/agent): an AI agent that answers a question with memory.

The goal ``answered(q)`` is GDL (gdl/examples/agent/apps/research): the
planner researches the topic over HTTP (``http.call``, the primary source
first, the mirror once the primary failed for good), then this module's
``agent.recall`` looks the research up in memory, and ``ai.call`` answers.

Run it offline (from the repository root, with the embedded PostgreSQL or
GOALRT_DATABASE_URL):

    python -m workers.agent_stubs &                 # the sources and the chat model, on 127.0.0.1:8765
    goalrt gdl load gdl/examples/agent              # --replace if the database runs another workspace
    goalrt memory index --follow &                  # memory, as events commit (an admin's job)
    export GOALRT_AI_BASE_URL=http://127.0.0.1:8765/v1 GOALRT_AI_MODEL=stub-agent   # as its goalrt.toml says
    goalrt worker --handlers workers.agent &
    goalrt state set questions.tides.status '"asked"'
    goalrt submit answered q=tides
    goalrt get 1                                    # primary failed (503), re-planned: mirror, recall, answer
    goalrt search "tides"                           # the research, the answer and the agent's note
"""

from __future__ import annotations

from typing import Any

import goalrt


@goalrt.action("agent.recall")
async def recall(args: dict[str, Any], ctx: goalrt.ActionContext) -> goalrt.Result:
    """Put what memory holds about the question (this goal's research first, then older notes) into the state."""
    q = args["q"]
    assert ctx.memory is not None, "a worker always gives a handler its memory"
    hits = await ctx.memory.search(f"{q} facts research", limit=20)
    mine = [h for h in hits if h.stream == f"goal:{ctx.goal_id}" and h.type == "step.completed"]
    if not mine:
        # Retryable: the indexer has not reached this goal's research yet (the action retries).
        raise RuntimeError("memory has not indexed this goal's research yet")
    notes = [h for h in hits if h.type == "memory.noted"][:3]
    facts = [line for h in mine for line in h.text.splitlines() if line.startswith("result.body.")]
    context = " ".join(line.split(": ", 1)[-1] for line in facts + [f"note: {n.text.splitlines()[-1]}" for n in notes])
    ctx.memory.remember(f"researched {q}: {len(facts)} facts recalled", question=q)
    return goalrt.Result(
        {"facts": len(facts), "notes": len(notes)},
        changes=[goalrt.Change.set(f"questions.{q}.context", context[:2000])],
    )
