"""run_handoff: an agent takes the task and may hand it on to the agents its routes allow."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import InputRequiredResult
from pydantic import Field

from orchestration.spec import RunSpec
from server.app import state, tool_errors
from server.schemas import RunResult
from server.starting import (
    RUN_STARTER,
    LimitsArg,
    Task,
    WaitSeconds,
    check_members,
    check_task,
    followed_retry,
    start_and_follow,
)


def register(server: MCPServer[Any]) -> None:
    @server.tool(title="Start a handoff run", annotations=RUN_STARTER)
    @tool_errors
    async def run_handoff(
        ctx: Context[Any, Any],
        agent: Annotated[str, Field(min_length=1, max_length=64, description="First agent.")],
        task: Task,
        agents: Annotated[
            list[str] | None,
            Field(description="Who may take part (default: all)."),
        ] = None,
        context: Annotated[str | None, Field(max_length=100_000, description="Background.")] = None,
        control: Annotated[
            Literal["decentralized", "federated", "hierarchical"],
            Field(
                description="decentralized (routes as configured), federated (cross-group routes must be explicit; only the handover note crosses) or hierarchical."
            ),
        ] = "decentralized",
        limits: LimitsArg = None,
        wait_seconds: WaitSeconds = None,
    ) -> RunResult | InputRequiredResult:
        """Use when agents should route the task themselves: each may transfer_to_X or consult_X another agent
        its routes allow. Loops and max_handoffs stop it with the partial result and the path."""
        if (followed := await followed_retry(ctx, wait_seconds)) is not None:
            return followed
        rt = state(ctx).runtime
        members = check_members(rt, agents if agents is not None else rt.config.member_names())
        check_members(rt, [agent], "agent")
        if agent not in members:
            members = [agent, *members]
        check_task(task)
        spec = RunSpec(
            pattern="handoff",
            members=[agent, *(m for m in members if m != agent)],
            task=task,
            options={"context": context},
            control=control or "centralized",
        )
        return await start_and_follow(ctx, spec, limits=limits, wait_seconds=wait_seconds)

    _ = run_handoff
