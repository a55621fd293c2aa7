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
                description="all: every answer, labelled by agent; majority: a vote on normalised answers (a "
                "`FINAL ANSWER:` line if given; a tie is a disagreement); confidence: each agent ends with "
                "`CONFIDENCE: <0..1>`, the highest wins; judge: the judge agent picks or merges."
            ),
        ] = "all",
        judge: Annotated[
            str | None,
            Field(
                max_length=64,
                description="The judge agent; required by reconcile='judge' and on_disagreement='judge'.",
            ),
        ] = None,
        threshold: Annotated[
            float,
            Field(ge=0, le=1, description="reconcile='confidence': the lowest confidence that can win."),
        ] = 0.5,
        on_disagreement: Annotated[
            Literal["judge", "fail", "escalate"],
            Field(
                description="A tie or no confident answer. judge: the judge decides; fail: the run stops "
                "(`disagreement`) with every answer; escalate: a human accepts the leading answer or not "
                "(approve_action, elicitation or the CLI)."
            ),
        ] = "fail",
        control: Control = None,
        limits: LimitsArg = None,
        wait_seconds: WaitSeconds = None,
    ) -> RunResult | InputRequiredResult:
        """Agents answer the same task at the same time (N agents take about as long as the slowest one); their
        answers are reconciled by `reconcile`, a disagreement is settled by `on_disagreement`, and an agent
        that fails is left out (the run fails only if all do). The `reconciled` audit event shows the votes."""
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
