"""plan_and_execute: a planner writes an explicit plan, executors run it as a DAG, an evaluator scores it."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import InputRequiredResult
from pydantic import Field

from orchestration.config import validated
from orchestration.errors import InvalidInputError
from orchestration.patterns.plan import PlanOptions
from orchestration.spec import RunSpec
from server.app import state, tool_errors
from server.schemas import RunResult
from server.starting import (
    RUN_STARTER,
    Control,
    LimitsArg,
    Task,
    WaitSeconds,
    check_member,
    check_members,
    check_task,
    followed_retry,
    start_and_follow,
)


def register(server: MCPServer[Any]) -> None:
    @server.tool(name="plan_and_execute", title="Plan, execute, evaluate, replan", annotations=RUN_STARTER)
    @tool_errors
    async def plan_and_execute_tool(
        ctx: Context[Any, Any],
        goal: Task,
        agents: Annotated[
            list[str] | None,
            Field(description="Executors (default: the rest of the team)."),
        ] = None,
        planner: Annotated[str | None, Field(max_length=64, description="Default: planner.")] = None,
        evaluator: Annotated[
            str | None, Field(max_length=64, description="Scores the result (optional).")
        ] = None,
        threshold: Annotated[float, Field(ge=0, le=1, description="Lowest passing score.")] = 0.7,
        max_replans: Annotated[int, Field(ge=0, le=10, description="Revisions after a low score.")] = 2,
        dry_run: Annotated[bool, Field(description="Only plan and estimate the cost.")] = False,
        control: Control = None,
        limits: LimitsArg = None,
        wait_seconds: WaitSeconds = None,
    ) -> RunResult | InputRequiredResult:
        """Use for a goal that splits into subtasks up front: a planner assigns them to agents with dependencies,
        independent ones run in parallel, an optional evaluator can ask for a revised plan. dry_run:
        the plan and its cost only."""
        if (followed := await followed_retry(ctx, wait_seconds)) is not None:
            return followed
        rt = state(ctx).runtime
        lead = planner or ("planner" if "planner" in rt.config.member_names() else None)
        if lead is None:
            raise InvalidInputError(
                "planner: name the planner agent (the team has no agent called 'planner')"
            )
        check_member(rt, lead)
        check_member(rt, evaluator)
        default = [a for a in rt.config.agents if a not in (lead, evaluator)]
        executors = check_members(rt, agents if agents is not None else default)
        if not executors:
            raise InvalidInputError("agents: the plan needs at least one executor besides the planner")
        check_task(goal, "goal")
        options = validated(
            PlanOptions,
            {
                "planner": lead,
                "evaluator": evaluator,
                "threshold": threshold,
                "max_replans": max_replans,
                "dry_run": dry_run,
            },
        )
        spec = RunSpec(
            pattern="plan",
            members=executors,
            task=goal,
            options=options.model_dump(),
            control=control or "centralized",
        )
        return await start_and_follow(ctx, spec, limits=limits, wait_seconds=wait_seconds)

    _ = plan_and_execute_tool
