"""run_concurrent: agents answer the same task in parallel; the answers are reconciled by a rule."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import InputRequiredResult
from pydantic import Field

from orchestration.config import validated
from orchestration.patterns.concurrent import ConcurrentOptions
from orchestration.spec import RunSpec
from server.app import state, tool_errors
from server.schemas import RunResult
from server.starting import (
    RUN_STARTER,
    Control,
    LimitsArg,
    Members,
    Task,
    WaitSeconds,
    check_member,
    check_members,
    check_task,
    followed_retry,
    start_and_follow,
)


def register(server: MCPServer[Any]) -> None:
    @server.tool(title="Run agents in parallel and reconcile", annotations=RUN_STARTER)
    @tool_errors
    async def run_concurrent(
        ctx: Context[Any, Any],
        agents: Members,
        task: Task,
        reconcile: Annotated[
            Literal["all", "majority", "confidence", "judge"],
            Field(
                description="all: every answer; majority: a vote (a `FINAL ANSWER:` line counts); confidence: the highest `CONFIDENCE: <0..1>`; judge: the judge picks or merges."
            ),
        ] = "all",
        judge: Annotated[
            str | None,
            Field(
                max_length=64,
                description="Judge agent (for judge in reconcile or on_disagreement).",
            ),
        ] = None,
        threshold: Annotated[
            float,
            Field(ge=0, le=1, description="Lowest confidence that can win."),
        ] = 0.5,
        on_disagreement: Annotated[
            Literal["judge", "fail", "escalate"],
            Field(
                description="On a tie or no confident answer: the judge decides, fail (with every answer), or escalate to a human."
            ),
        ] = "fail",
        control: Control = None,
        limits: LimitsArg = None,
        wait_seconds: WaitSeconds = None,
    ) -> RunResult | InputRequiredResult:
        """Use for independent answers to the same task at once (second opinions, votes): N agents take about one
        agent's time. reconcile combines the answers; on_disagreement settles a tie."""
        if (followed := await followed_retry(ctx, wait_seconds)) is not None:
            return followed
        rt = state(ctx).runtime
        members = check_members(rt, agents)
        check_task(task)
        check_member(rt, judge)
        options = validated(
            ConcurrentOptions,
            {
                "reconcile": reconcile,
                "judge": judge,
                "threshold": threshold,
                "on_disagreement": on_disagreement,
            },
        )
        spec = RunSpec(
            pattern="concurrent",
            members=members,
            task=task,
            options=options.model_dump(),
            control=control or "centralized",
        )
        return await start_and_follow(ctx, spec, limits=limits, wait_seconds=wait_seconds)

    _ = run_concurrent
