"""A goal's console page and its actions: cancel (after a confirmation page), retry, and answering an ask.

The actions call ``AsyncGoals.cancel``, ``retry`` and ``resume``, as
``POST /api/v1/goals/{id}/cancel``, ``/retry`` and ``/resume`` do, on the
caller's database role: a reader's session is refused by PostgreSQL (a 403 page).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from goalrt.errors import GoalrtError, InvalidGoalError
from goalrt.goals.status import GoalStatus
from goalrt.serve.console_access import ConsoleCaller, ConsoleRoute, form_of, goalrt_error_page, page
from goalrt.serve.console_view import ask_answer, ask_fields, ask_step, timeline

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

# Who answered, as goal.resumed records it, when the form leaves it empty.
DEFAULT_ACTOR = "console"


async def _goal_page(
    request: Request, caller: ConsoleCaller, goal_id: int, status: int = 200, **extra: object
) -> Response:
    async with caller.goals() as goals:
        info = await goals.get(goal_id)
        tree = await goals.tree(goal_id)
    ask = ask_step(info)
    schema = (ask.args or {}).get("schema") if ask is not None and isinstance(ask.args, dict) else None
    values: dict[str, object] = {"answer_error": None, "answer_form": {}, **extra}
    return page(
        request,
        "goal.html",
        status,
        info=info,
        moments=timeline(info.events),
        tree=tree,
        ask=ask,
        fields=ask_fields(schema) if ask is not None else None,
        finished=GoalStatus(info.status).finished,
        **values,
    )


@router.get("/goals/{goal_id}")
async def goal(request: Request, caller: ConsoleCaller, goal_id: int) -> Response:
    return await _goal_page(request, caller, goal_id)


@router.get("/goals/{goal_id}/cancel")
async def confirm_cancel(request: Request, caller: ConsoleCaller, goal_id: int) -> Response:
    """Ask before cancelling: the button on the goal's page leads here, and this page's form posts."""
    async with caller.goals() as goals:
        info = await goals.get(goal_id)
    return page(request, "cancel.html", info=info, finished=GoalStatus(info.status).finished)


@router.post("/goals/{goal_id}/cancel")
async def cancel(request: Request, caller: ConsoleCaller, goal_id: int) -> Response:
    form = await form_of(request)
    async with caller.goals() as goals:
        await goals.cancel(goal_id, form.get("reason", "").strip() or None)
    return RedirectResponse(f"/goals/{goal_id}", status_code=303)


@router.post("/goals/{goal_id}/retry")
async def retry(request: Request, caller: ConsoleCaller, goal_id: int) -> Response:
    """Run a failed or cancelled goal again (from the form's step, or its first one not done)."""
    form = await form_of(request)
    text = form.get("from_step", "").strip()
    if text and not (text.isdigit() and int(text) >= 1):
        return goalrt_error_page(request, InvalidGoalError(f"from step must be a step number, got {text[:40]!r}"))
    async with caller.goals() as goals:
        await goals.retry(goal_id, from_step=int(text) if text else None, reason=form.get("reason", "").strip() or None)
    return RedirectResponse(f"/goals/{goal_id}", status_code=303)


@router.post("/goals/{goal_id}/resume")
async def resume(request: Request, caller: ConsoleCaller, goal_id: int) -> Response:
    """Answer the goal's ask with the form's fields; a refused answer shows the page again with why."""
    form = await form_of(request)
    refused: GoalrtError | None = None
    async with caller.goals() as goals:
        ask = ask_step(await goals.get(goal_id))
        if ask is not None:
            schema = ask.args.get("schema") if isinstance(ask.args, dict) else None
            try:
                answer = ask_answer(ask_fields(schema), form)
                await goals.resume(goal_id, answer, actor=form.get("by", "").strip() or DEFAULT_ACTOR)
            except GoalrtError as exc:
                refused = exc
    if ask is None:
        message = f"goal {goal_id} is not waiting for an answer"
        return await _goal_page(request, caller, goal_id, 409, answer_error=message)
    if refused is not None:
        shown = goalrt_error_page(request, refused)
        if shown.status_code != 400:
            return shown
        message = (str(refused).strip().splitlines() or [type(refused).__name__])[0]
        return await _goal_page(request, caller, goal_id, 400, answer_error=message, answer_form=form)
    return RedirectResponse(f"/goals/{goal_id}", status_code=303)
