"""Following a run from a tool call: bounded wait, progress and log notifications, sampling carried across."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
from mcp.server.mcpserver import Context
from mcp_types import InputRequiredResult

from orchestration.host_steps import open_steps, wait_settled
from orchestration.models.host import HOST_STEP
from orchestration.runtime import Runtime
from server.app import state
from server.bridge import (
    accept_answers,
    carry_pending,
    client_offers_elicitation,
    elicit_approvals,
    is_modern,
    state_run_id,
)
from server.notifications import send_log, wants_log
from server.progress import STEP_ENDS, RunProgress, asked_for_progress
from server.schemas import HostStep, PendingInfo, RunResult, run_result

MAX_WAIT_SECONDS = 50.0
PROGRESS_KINDS = {"step_started", "step_finished", "step_failed", "tool_called", "input_requested"}
"""The events a follower reports (progress and a log message each)."""
FOLLOWED_KINDS = PROGRESS_KINDS | STEP_ENDS
"""The events a follower reads (a cancelled or stopped step counts as ended, without a message of its own)."""


def wait_bounds(wait_seconds: float | None, default: float) -> float:
    """The wait a tool applies: the caller's, or the server default."""
    return default if wait_seconds is None else wait_seconds


async def follow_run(
    ctx: Context[Any, Any], run_id: str, wait_seconds: float
) -> RunResult | InputRequiredResult:
    """Wait up to `wait_seconds` for the run to end (sending progress), then report it.

    Progress notifications go to a call that carries a progress token, log messages to a client that asked for
    them (`logging/setLevel`, or a 2026-07-28 request's log level); a call that asked for neither is not
    followed event by event at all (no subscription, no audit reads per event, nothing written to the client).
    On a 2026-07-28 connection, a sampling request of the run ends the wait early and is returned as
    `input_required`: the client answers it and retries this same call, which continues the wait.
    """
    rt = state(ctx).runtime
    progress, logs = asked_for_progress(ctx), wants_log(ctx, "info")
    if not (progress or logs):
        run, carried = await _wait(ctx, rt, run_id, wait_seconds)
    else:
        async with _reporting(ctx, rt, run_id, progress=progress, logs=logs):
            run, carried = await _wait(ctx, rt, run_id, wait_seconds)
    if carried is not None:
        return carried
    return describe_run(ctx, run)


async def _wait(
    ctx: Context[Any, Any], rt: Runtime, run_id: str, wait_seconds: float
) -> tuple[dict[str, Any], InputRequiredResult | None]:
    """The bounded wait: the run's row when it ended, the wait ran out, or a request ended it early (then
    also the `input_required` result that carries the request)."""
    deadline = anyio.current_time() + wait_seconds
    # approvals already reported to this client don't end the wait again: it waits for the decision
    known = frozenset(r.id for r in rt.pending.open_for(run_id, "approval"))
    while True:
        wake = ("sampling", "approval") if is_modern(ctx) else ("approval",)
        run = await rt.wait(
            run_id,
            max(deadline - anyio.current_time(), 0),
            wake_on_pending=(*wake, HOST_STEP),
            known=known if not client_offers_elicitation(ctx) else frozenset(),
        )
        if open_steps(rt.pending, run_id):  # hand over host steps once every ready branch has parked
            await wait_settled(rt, run_id, max(deadline - anyio.current_time(), 0))
            run = rt.get_run(run_id)
        carried = carry_pending(ctx, rt.pending, run_id)
        if carried is not None or not await elicit_approvals(ctx, rt, run_id):
            return run, carried


@asynccontextmanager
async def _reporting(
    ctx: Context[Any, Any], rt: Runtime, run_id: str, *, progress: bool, logs: bool
) -> AsyncIterator[None]:
    """While the body runs, turn the run's events into progress notifications and/or log messages."""
    send, receive = anyio.create_memory_object_stream[tuple[str, dict[str, Any]]](1000)

    def listener(_run_id: str, kind: str, payload: dict[str, Any]) -> None:
        if kind in FOLLOWED_KINDS:
            try:
                send.send_nowait((kind, payload))
            except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # progress is best-effort (and this call may have stopped following); the audit has it all

    tracker = RunProgress(
        rt.get_run(run_id),
        team_names=frozenset(rt.config.teams),
        max_turns=rt.limits.max_turns,
        reader=rt.reader,
    )

    async def forward() -> None:
        async for kind, payload in receive:
            update = tracker.update(kind, payload, rt.reader)
            if kind not in PROGRESS_KINDS:
                continue
            message = rt.audit.redactor.text(update.message)  # errors may quote secrets
            if progress and update.progress is not None:
                await ctx.report_progress(update.progress, update.total, message)
            if logs:
                await send_log(ctx, "info", f"[{run_id}] {message}")

    unsubscribe = rt.subscribe(run_id, listener)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(forward)
            yield
            send.close()
    finally:
        unsubscribe()


def describe_run(ctx: Context[Any, Any], run: dict[str, Any]) -> RunResult:
    """A run row as a tool answer, with its step count, pending requests and latency."""
    rt = state(ctx).runtime
    steps = rt.step_count(run["id"])
    pending = [pending_info(r) for r in rt.reader.pending(run_id=run["id"])]
    started = _parse(run["started_at"])
    ended = _parse(run["ended_at"]) or datetime.now(UTC)
    latency = round((ended - started).total_seconds() * 1000, 1) if started else None
    host_steps = [
        HostStep(
            step_id=r.id,
            agent=r.payload["agent"],
            instructions=r.payload["instructions"],
            messages=r.payload["messages"],
            tools=r.payload["tools"],
        )
        for r in open_steps(rt.pending, run["id"])
    ]
    return run_result(run, steps=steps, pending=pending, latency_ms=latency, host_steps=host_steps)


async def resume_followed(ctx: Context[Any, Any]) -> str | None:
    """If this call is a client's retry after `input_required`, deliver its answers and return the run id."""
    run_id = state_run_id(ctx)
    if run_id is None:
        return None
    await accept_answers(ctx, state(ctx).runtime)
    return run_id


def pending_info(row: dict[str, Any]) -> PendingInfo:
    """A pending request row as the tools describe it."""
    payload = json.loads(row["payload"]) if row["kind"] == "approval" else {}
    return PendingInfo(
        request_id=row["id"],
        kind=row["kind"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        question=payload.get("question"),
        human_only=bool(payload.get("human_only")),
    )


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
