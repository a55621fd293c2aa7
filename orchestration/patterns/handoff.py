"""Handoff: agents route the task among themselves (decentralized control).

Each agent is offered one tool per agent it may route to (its `routes`, filtered by the control model):
`transfer_to_X` hands the whole task over (X takes the next turn), `consult_X` asks X a question and returns
the answer to the caller (a sub-operation, nested under the caller's step). The run ends when an agent answers
without handing off. Guardrails: `max_handoffs`, and deterministic loop detection on the path of agents
(A -> B -> A -> B is caught after three handoffs, before any handoff limit); either one escalates back to the
caller with the partial result instead of failing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestration.config import validated
from orchestration.context import Outcome, RunBody, RunContext
from orchestration.errors import GuardrailTripped
from orchestration.models.base import Message, ToolSpec
from orchestration.outcomes import AgentTool, ToolCallContext, ToolOutcome
from orchestration.patterns.delegate import task_prompt
from policies.routing import may_route

MESSAGE_SCHEMA = {
    "type": "object",
    "properties": {"message": {"type": "string", "description": "What the other agent needs to know."}},
    "required": ["message"],
}
LONGEST_CYCLE = 4


class HandoffOptions(BaseModel):
    """Options of a handoff run (also of a `[teams.NAME]` with `pattern = "handoff"`)."""

    model_config = ConfigDict(extra="forbid")

    allow_consult: bool = Field(True, description="Offer consult_X tools (ask and get the answer back).")
    context: str | None = Field(None, description="Background for the task, given to the first agent.")


def repeated_cycle(path: Sequence[str], longest: int = LONGEST_CYCLE) -> list[str] | None:
    """The cycle of agents at the end of `path` that has just repeated (A,B,A,B -> [A, B]), if any."""
    n = len(path)
    for length in range(2, longest + 1):
        if n >= 2 * length and list(path[n - 2 * length : n - length]) == list(path[n - length :]):
            return list(path[n - length :])
    return None


def routing_control(control: str) -> str:
    """Handoffs are decentralized by nature; only federated control narrows them further (group boundaries)."""
    return "federated" if control == "federated" else "decentralized"


def routes_of(ctx: RunContext, source: str, members: Sequence[str]) -> list[str]:
    """The members `source` may route to under the run's control model."""
    routes, groups, control = ctx.config.routes(), ctx.config.groups(), routing_control(ctx.control)
    return [m for m in members if may_route(source, m, control=control, routes=routes, groups=groups).allowed]


def handoff(
    start: str, task: str, *, members: Sequence[str], context: str | None = None, allow_consult: bool = True
) -> RunBody:
    """A run body in which `start` takes `task` and agents among `members` may hand it on."""

    async def body(ctx: RunContext) -> Outcome:
        groups = ctx.config.groups()
        current, prompt = start, task_prompt(task, context)
        path = [start]
        notes: list[tuple[str, str]] = []  # (agent, text) handed across, oldest first
        consults = 0
        turn = 0
        while True:
            targets = routes_of(ctx, current, members)

            async def consult(arguments: dict[str, Any], call: ToolCallContext, target: str) -> ToolOutcome:
                nonlocal consults
                ctx.budget.add_handoff()
                consults += 1
                question = str(arguments.get("message", ""))
                await ctx.record(
                    "handoff",
                    {"from": call.agent, "to": target, "mode": "consult", "message": question},
                    step_id=call.step_id,
                    durable="later",
                )
                answer = await ctx.step(
                    target, question, key=f"consult{consults}.{target}", parent_step_id=call.step_id
                )
                return ToolOutcome(answer.output)

            tools = [_transfer_tool(t) for t in targets]
            if allow_consult:
                tools += [_consult_tool(t, consult) for t in targets]
            history = [
                Message("user", f"[{who} handed over] {text}")
                for who, text in notes
                if ctx.control != "federated" or groups.get(who) == groups.get(current)
            ]
            result = await ctx.step(current, prompt, key=f"{turn}.{current}", history=history, tools=tools)
            turn += 1
            transfer = result.stopped_by.data if result.stopped_by else {}
            if transfer.get("mode") != "transfer":
                return Outcome(result.output, data={"path": path})
            target, note = transfer["to"], transfer["message"]
            try:
                ctx.budget.add_handoff()
            except GuardrailTripped as exc:
                return await _escalate(ctx, "max_handoffs", exc.message, result.output or note, path)
            path.append(target)
            await ctx.record(
                "handoff",
                {"from": current, "to": target, "mode": "transfer", "message": note},
                step_id=result.step_id,
                durable="later",
            )
            cycle = repeated_cycle(path)
            if cycle is not None:
                reason = f"the task went {' -> '.join(path)}: the cycle {' -> '.join(cycle)} repeated"
                return await _escalate(ctx, "loop_detected", reason, result.output or note, path)
            notes.append((current, note))
            prompt = f"{task_prompt(task, context)}\n\n{current} handed this task to you: {note}"
            current = target

    return body


async def _escalate(ctx: RunContext, reason: str, detail: str, partial: str, path: list[str]) -> Outcome:
    """Stop handing off and give the task back to the caller with what was done so far."""
    await ctx.record("escalated", {"reason": reason, "detail": detail, "path": path}, durable="later")
    return Outcome(
        partial,
        "stopped",
        reason,
        f"escalated back to you: {detail}. The last agent was {path[-1]}; decide how to proceed "
        "(answer yourself, delegate to one agent, or raise max_handoffs).",
        data={"path": path},
    )


def _transfer_tool(target: str) -> AgentTool:
    async def call(arguments: dict[str, Any], _: ToolCallContext) -> ToolOutcome:
        message = str(arguments.get("message", "")).strip() or "(no message)"
        return ToolOutcome(message, stop=True, data={"mode": "transfer", "to": target, "message": message})

    spec = ToolSpec(
        f"transfer_to_{target}",
        f"Hand the whole task over to {target}; they answer from here.",
        MESSAGE_SCHEMA,
    )
    return AgentTool(spec, call)


def _consult_tool(target: str, consult: Any) -> AgentTool:
    async def call(arguments: dict[str, Any], ctx: ToolCallContext) -> ToolOutcome:
        return await consult(arguments, ctx, target)  # type: ignore[no-any-return]

    spec = ToolSpec(
        f"consult_{target}",
        f"Ask {target} a question and get the answer back; you keep the task.",
        MESSAGE_SCHEMA,
    )
    return AgentTool(spec, call)


def build_team(members: Sequence[str], task: str, options: dict[str, Any]) -> RunBody:
    opts = validated(HandoffOptions, options, "handoff options")
    return handoff(members[0], task, members=members, context=opts.context, allow_consult=opts.allow_consult)


def recipe(agent: str, members: Sequence[str], context: str | None) -> dict[str, Any]:
    """How to rebuild a handoff run after a restart: the first agent leads the members."""
    return {
        "pattern": "handoff",
        "members": [agent, *(m for m in members if m != agent)],
        "options": {"context": context},
    }
