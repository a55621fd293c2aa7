"""One agent step: guard check, the model <-> tool loop, and its audit rows. Every pattern calls this."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import anyio

from orchestration import telemetry
from orchestration.approvals import request_approval
from orchestration.audit.schema import now
from orchestration.context import RunContext
from orchestration.errors import ConcertmasterError, GuardrailTripped, ProviderError
from orchestration.ids import new_id
from orchestration.journal import REPLY_FORMAT, StepRecord
from orchestration.models.base import (
    Message,
    ModelProvider,
    ModelRequest,
    ModelResponse,
    Replayable,
    ToolResult,
)
from orchestration.outcomes import AgentTool, StepFailed, StepResult, ToolCallContext, ToolOutcome
from orchestration.spec import RunSpec
from orchestration.telemetry import traced_step, traced_tool


@traced_step
async def run_step(
    ctx: RunContext,
    agent_name: str,
    prompt: str,
    *,
    key: str,
    history: Sequence[Message] = (),
    tools: Sequence[AgentTool] = (),
    parent_step_id: str | None = None,
) -> StepResult:
    """Run `agent_name` on `prompt` (after `history`) as one audited step.

    Raises `GuardrailTripped` before starting when a limit is reached, `StepFailed` when the step fails
    (recorded as a failed step first), and lets cancellation through (recorded as a cancelled step).
    In a resumed run, a step the journal has is replayed: a finished one returns its recorded output, an
    unfinished one replays its recorded replies and tool results and goes on from there.
    """
    full_key = ctx.key_prefix + key
    if ctx.is_team(agent_name):
        return await _run_team(ctx, agent_name, prompt, key=key, parent_step_id=parent_step_id)
    agent = ctx.agent(agent_name)
    journal = ctx.engine.journal
    record = journal.steps.get(full_key) if journal is not None else None
    if record is not None and record.status in ("succeeded", "failed"):
        return _replay_finished(ctx, agent_name, record)
    ctx.budget.check_step(ctx.depth)
    ctx.budget.steps += 1
    step_id = record.step_id if record else new_id("step")
    replies = list(record.replies) if record else []
    provider = ctx.provider(agent_name)
    t0 = time.perf_counter()
    remaining = ctx.budget.limits.step_timeout_s
    try:
        if record is None:
            await _start(ctx, step_id, agent_name, full_key, prompt, parent_step_id, now())
        else:  # a step cut short by a restart: its recorded replies and tool results are replayed, not re-paid
            await ctx.record(
                "step_resumed",
                {"agent": agent_name, "key": full_key, "replies": len(replies)},
                step_id=step_id,
                statements=[("update steps set status = 'running' where id = ?", (step_id,))],
                durable="later",
            )
        if agent.tools and ctx.engine.agent_tools is not None:
            tools = [*tools, *await ctx.engine.agent_tools(ctx, agent_name)]
        tool_map = {t.spec.name: t for t in tools}
        messages = [*history, Message("user", prompt)]
        output, model, stopped_by, calls = "", None, None, 0
        while True:  # one model call (+ its tool calls) per loop
            if replies:
                response = replies.pop(0)
                _account_replayed(ctx, provider, response)
            else:
                request = ModelRequest(
                    system=agent.instructions,
                    messages=tuple(messages),
                    tools=tuple(t.spec for t in tools),
                    max_tokens=agent.max_tokens,
                    agent=agent_name,
                    run_id=ctx.run_id,
                    step_id=step_id,
                )
                await reserve_budget(ctx, request, step_id)
                call_started = time.perf_counter()
                # the step timeout bounds the agent's own work; a wait for a human (approval) is not counted
                remaining = max(min(ctx.budget.limits.step_timeout_s, ctx.budget.remaining_seconds()), 0.001)
                await ctx.durable()  # what this call is sent (earlier replies, tool results) is recorded
                async with asyncio.timeout(remaining):  # native: a fraction of anyio's cancel scope, per step
                    response = await provider.complete(request)
                await _record_model_call(
                    ctx, step_id, agent_name, response, time.perf_counter() - call_started
                )
            model, output = response.model, response.text
            if not response.tool_calls or not tool_map:
                break
            results = []
            for tc in response.tool_calls:
                calls += 1
                recorded = record.tool_results.get(tc.id) if record is not None else None
                if recorded is not None:
                    outcome = ToolOutcome(recorded.content, recorded.is_error, recorded.stop, recorded.data)
                else:
                    in_flight = record.started_calls.get(tc.id) if record is not None else None
                    outcome = await _call_tool(
                        ctx,
                        step_id,
                        agent_name,
                        tool_map,
                        tc.name,
                        tc.arguments,
                        calls,
                        call_id=tc.id,
                        in_flight=in_flight is not None,
                    )
                if outcome.stop:
                    stopped_by, output = outcome, outcome.content
                    break
                results.append(ToolResult(tc.id, outcome.content, outcome.is_error))
            if stopped_by is not None:
                break
            messages += [
                Message("assistant", response.text, tool_calls=response.tool_calls),
                Message("user", tool_results=tuple(results)),
            ]
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            await _finish(ctx, step_id, "cancelled", t0, error="cancelled")
        raise
    except TimeoutError as exc:
        limits = ctx.budget.limits
        if remaining < limits.step_timeout_s:  # the run's clock ran out, not the step's
            message = f"the run took longer than run_timeout_s={limits.run_timeout_s:g} s"
            await _finish(ctx, step_id, "failed", t0, error=message)
            raise GuardrailTripped("run_timeout_s", message) from None
        message = f"timed out after {limits.step_timeout_s:g} s (step_timeout_s)"
        await _finish(ctx, step_id, "failed", t0, error=message)
        raise StepFailed(agent_name, step_id, message, exc) from None
    except (ProviderError, GuardrailTripped, ConcertmasterError) as exc:
        await _finish(ctx, step_id, "failed", t0, error=exc.message)
        if isinstance(exc, GuardrailTripped):
            raise
        raise StepFailed(agent_name, step_id, exc.message, exc) from None
    await _finish(ctx, step_id, "succeeded", t0, output=output)
    if output:
        ctx.partial = output
    return StepResult(step_id, agent_name, output, model, stopped_by=stopped_by)


def _replay_finished(ctx: RunContext, agent_name: str, record: StepRecord) -> StepResult:
    """A step ended before the restart: its output (or its failure, again), with the budget and the model's
    position restored."""
    ctx.budget.steps += 1
    provider = ctx.provider(agent_name)
    for reply in record.replies:
        _account_replayed(ctx, provider, reply)
    if not record.finished:
        raise StepFailed(agent_name, record.step_id, record.error or "the step failed")
    if record.output:
        ctx.partial = record.output
    stopped = record.stopped_by
    stopped_by = ToolOutcome(stopped.content, stopped.is_error, True, stopped.data) if stopped else None
    return StepResult(
        record.step_id, agent_name, record.output or "", record.model, stopped_by=stopped_by, replayed=True
    )


def _account_replayed(ctx: RunContext, provider: ModelProvider, reply: ModelResponse) -> None:
    """A replayed reply counts against the budget as when it was made, and moves a stateful model (the
    scripted one) past it."""
    ctx.budget.spend(reply)
    if isinstance(provider, Replayable):
        provider.replayed(reply)


async def reserve_budget(ctx: RunContext, request: ModelRequest, step_id: str) -> None:
    """Before a model call, reserve its projected usage; past a budget, stop or (policy `on_budget = "ask"`)
    pause the run for a human to extend it."""
    limits = ctx.budget.limits
    if limits.max_tokens is None and limits.max_cost_usd is None:
        return  # no budget to reserve against
    projected = ctx.budget.projected_tokens(request)
    try:
        ctx.budget.check_spend(
            projected_tokens=projected, projected_cost=ctx.budget.projected_cost(projected)
        )
    except GuardrailTripped as exc:
        if ctx.budget.on_budget != "ask" or not ctx.can_ask_human:
            raise
        limit, current = exc.limit, getattr(ctx.budget.limits, exc.limit)
        verdict = await request_approval(
            ctx,
            agent=request.agent,
            tool="budget.extend",
            arguments={"limit": limit, "extend_by": current},
            reason=f"{exc.message}; extend {limit} by {current} (to {current * 2})?",
            rule="on_budget",
            human_only=False,
            ttl_s=ctx.budget.limits.run_timeout_s,
            step_id=step_id,
        )
        if not verdict.approved:
            raise GuardrailTripped(limit, f"{exc.message}; the extension was not approved") from None
        ctx.budget.limits = ctx.budget.limits.merged(**{limit: current * 2})
        await ctx.record(
            "budget_extended",
            {"limit": limit, "to": current * 2, "channel": verdict.channel},
            step_id=step_id,
        )


async def _start(
    ctx: RunContext,
    step_id: str,
    agent: str,
    key: str,
    prompt: str,
    parent_step_id: str | None,
    started: str,
    *,
    provider: str | None = None,
    model: str | None = None,
) -> None:
    team = {"team": model} if provider == "team" else {}
    await ctx.record(
        "step_started",
        {
            "agent": agent,
            "key": key,
            "parent_step_id": parent_step_id,
            "input": prompt,
            "depth": ctx.depth,
            **team,
        },
        step_id=step_id,
        statements=[
            (
                "insert into steps (id, run_id, parent_step_id, key, agent, provider, model, status, input,"
                " started_at) values (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?)",
                (step_id, ctx.run_id, parent_step_id, key, agent, provider, model, prompt, started),
            )
        ],
        durable="later",  # nothing acts on a step's start: committed with the next write or once the loop idles
    )


async def _run_team(
    ctx: RunContext, name: str, prompt: str, *, key: str, parent_step_id: str | None
) -> StepResult:
    """A sub-team as one step of its parent: its own scoped context, its steps nested under this one."""
    spec = ctx.config.teams[name]
    limit = ctx.budget.limits.max_depth
    if ctx.depth + 1 > limit:
        raise GuardrailTripped(
            "max_depth", f"team {name!r} would nest {ctx.depth + 1} deep, past max_depth={limit}"
        )
    ctx.budget.check_spend()
    full_key = ctx.key_prefix + key
    journal = ctx.engine.journal
    record = journal.steps.get(full_key) if journal is not None else None
    step_id, t0 = (record.step_id if record else new_id("step")), time.perf_counter()
    nested = ctx.nested(key=key, parent_step_id=step_id)
    try:
        if record is None:
            await _start(
                ctx,
                step_id,
                name,
                full_key,
                prompt,
                parent_step_id,
                now(),
                provider="team",
                model=spec.pattern,
            )
        elif not record.finished:
            await ctx.record(
                "step_resumed",
                {"agent": name, "key": full_key, "team": spec.pattern},
                step_id=step_id,
                statements=[("update steps set status = 'running' where id = ?", (step_id,))],
                durable="later",
            )
        # a finished team is replayed too (its steps all replay from the journal), so the budget is restored
        if ctx.engine.build_team is None:
            raise ConcertmasterError(f"team {name!r} can't run here: this run context builds no sub-teams")
        team = RunSpec(pattern=spec.pattern, members=tuple(spec.agents), task=prompt, options=spec.options)
        outcome = await ctx.engine.build_team(team)(nested)
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            await _finish(ctx, step_id, "cancelled", t0, error="cancelled")
        raise
    except GuardrailTripped as exc:
        await _finish(ctx, step_id, "stopped", t0, output=nested.partial, error=exc.message)
        raise
    except ConcertmasterError as exc:
        await _finish(ctx, step_id, "failed", t0, error=exc.message)
        raise StepFailed(name, step_id, exc.message, exc) from None
    if record is None or not record.finished:
        await _finish(ctx, step_id, outcome.status, t0, output=outcome.output, error=outcome.error)
    if outcome.status == "failed":
        raise StepFailed(name, step_id, outcome.error or "the team failed")
    if outcome.output:
        ctx.partial = outcome.output
    return StepResult(step_id, name, outcome.output, f"team:{spec.pattern}", replayed=record is not None)


# Unknown tokens or cost (None) leave the total as it is: a total is NULL until something was reported.
_ADD_USAGE = (
    "input_tokens = case when ? is null then input_tokens else coalesce(input_tokens, 0) + ? end,"
    " output_tokens = case when ? is null then output_tokens else coalesce(output_tokens, 0) + ? end,"
    " cost_usd = case when ? is null then cost_usd else coalesce(cost_usd, 0) + ? end"
)


async def _record_model_call(
    ctx: RunContext, step_id: str, agent: str, response: ModelResponse, latency: float
) -> None:
    exceeded = ctx.budget.spend(response)
    telemetry.model_called(response)
    usage = response.usage
    cost = response.cost_usd
    usage_params = (
        usage.input_tokens,
        usage.input_tokens,
        usage.output_tokens,
        usage.output_tokens,
        cost,
        cost,
    )
    payload = {
        "agent": agent,
        "provider": response.provider,
        "model": response.model,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "cost_usd": cost,
        "latency_ms": round(latency * 1000, 3),
        "stop_reason": response.stop_reason,
        "tool_calls": [tc.name for tc in response.tool_calls],
        # the whole reply, so a step cut short by a restart is replayed instead of paid for twice
        "reply": {
            "v": REPLY_FORMAT,
            "text": response.text,
            "stop_reason": response.stop_reason,
            "calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in response.tool_calls],
        },
    }
    totals = ctx.engine.usage  # the run's row gets absolute totals, once per commit (`Write.summary`)
    totals.add(payload)
    await ctx.record(
        "model_called",
        payload,
        step_id=step_id,
        durable="before_use",  # the next model or tool call waits for it (`ctx.durable()`), the run's end too
        statements=[
            (
                "update steps set model = ?, provider = ?, " + _ADD_USAGE + " where id = ?",
                (response.model, response.provider, *usage_params, step_id),
            )
        ],
        summary=(
            f"usage:{ctx.run_id}",
            "update runs set input_tokens = ?, output_tokens = ?, cost_usd = ? where id = ?",
            (totals.input_tokens, totals.output_tokens, totals.cost_usd, ctx.run_id),
        ),
    )
    for limit, used, maximum in exceeded:  # actual use passed a budget (the projection is an estimate)
        await ctx.record(
            "budget_exceeded",
            {"agent": agent, "limit": limit, "used": used, "max": maximum},
            step_id=step_id,
            durable="later",
        )


@traced_tool
async def _call_tool(
    ctx: RunContext,
    step_id: str,
    agent: str,
    tools: dict[str, AgentTool],
    name: str,
    arguments: dict[str, Any],
    count: int,
    *,
    call_id: str = "",
    in_flight: bool = False,
) -> ToolOutcome:
    """Call one tool and record its result. `in_flight`: the server died during this very call before (its
    start is recorded, its result is not); the tool decides what that means (see `agent_tools`)."""
    limit = ctx.budget.limits.max_tool_calls
    t0 = time.perf_counter()
    tool = tools.get(name)
    if tool is None:
        outcome = ToolOutcome(f"unknown tool {name!r}; available: {', '.join(sorted(tools)) or 'none'}", True)
    elif count > limit:
        outcome = ToolOutcome(f"tool call limit reached (max_tool_calls={limit}); answer without tools", True)
    else:
        try:
            await ctx.durable()  # the reply that asks for this call is recorded before the call is made
            outcome = await tool.call(arguments, ToolCallContext(step_id, agent, call_id, in_flight))
        except ConcertmasterError as exc:
            outcome = ToolOutcome(exc.message, is_error=True)
    await ctx.record(
        "tool_called",
        {
            "agent": agent,
            "tool": name,
            "call_id": call_id,
            "arguments": arguments,
            "is_error": outcome.is_error,
            "result": outcome.content,
            "latency_ms": round((time.perf_counter() - t0) * 1000, 3),
            **({"stop": True} if outcome.stop else {}),
            **({"data": outcome.data} if outcome.data else {}),
        },
        step_id=step_id,
        durable="before_use",  # the next model or tool call waits for it (`ctx.durable()`), the run's end too
    )
    return outcome


async def _finish(
    ctx: RunContext,
    step_id: str,
    status: str,
    t0: float,
    *,
    output: str | None = None,
    error: str | None = None,
) -> None:
    latency = round((time.perf_counter() - t0) * 1000, 3)
    kind = {
        "succeeded": "step_finished",
        "failed": "step_failed",
        "cancelled": "step_cancelled",
        "stopped": "step_stopped",
    }[status]
    await ctx.record(
        kind,
        {
            "status": status,
            "latency_ms": latency,
            **({"output": output} if output is not None else {}),
            **({"error": error} if error else {}),
        },
        step_id=step_id,
        statements=[
            (
                "update steps set status = ?, output = ?, error = ?, ended_at = ?, latency_ms = ? where id = ?",
                (status, output, error, now(), latency, step_id),
            )
        ],
        # the step's output is its last model reply, durable already (a resumed run replays the step from it);
        # the run's end is awaited, and committed after this
        durable="later",
    )
