"""run_magentic: a manager keeps a task ledger and a progress ledger and pulls agents in as needed."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import InputRequiredResult
from pydantic import Field

from orchestration.config import validated
from orchestration.errors import InvalidInputError
from orchestration.patterns.magentic import MAX_ROUNDS, MagenticOptions, magentic
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

DEFAULT_MANAGER = "planner"


def register(server: MCPServer[Any]) -> None:
    @server.tool(title="Run a magentic (ledger-driven) team", annotations=RUN_STARTER)
    @tool_errors
    async def run_magentic(
        ctx: Context[Any, Any],
        goal: Task,
        agents: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=64)]] | None,
            Field(
                max_length=1000,
                description="Who the manager directs (default: all but it).",
            ),
        ] = None,
        manager: Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=64,
                description="Keeps the ledgers (default: planner).",
            ),
        ] = None,
        max_rounds: Annotated[
            int | None,
            Field(
                ge=1,
                le=MAX_ROUNDS,
                description="Rounds, replans included (default: the max_turns limit).",
            ),
        ] = None,
        max_stalls: Annotated[
            int,
            Field(ge=0, le=50, description="Stalled rounds in a row before a replan."),
        ] = 3,
        max_resets: Annotated[int, Field(ge=0, le=20, description="Replans before the run stops.")] = 2,
        control: Control = None,
        limits: LimitsArg = None,
        wait_seconds: WaitSeconds = None,
    ) -> RunResult | InputRequiredResult:
        """Use for an open-ended goal whose steps are not known in advance: a manager keeps a ledger, picks who
        acts each round and replans when stuck. If the goal splits into subtasks up front,
        plan_and_execute is cheaper."""
        if (followed := await followed_retry(ctx, wait_seconds)) is not None:
            return followed
        rt = state(ctx).runtime
        lead = manager
        if lead is None:
            if DEFAULT_MANAGER not in rt.config.agents:
                raise InvalidInputError(
                    f"manager: name the manager agent (the team has no agent called {DEFAULT_MANAGER!r})"
                )
            lead = DEFAULT_MANAGER
        check_member(rt, lead)
        team = check_members(rt, agents if agents is not None else [a for a in rt.config.agents if a != lead])
        check_task(goal, "goal")
        options = validated(
            MagenticOptions,
            {"manager": lead, "max_rounds": max_rounds, "max_stalls": max_stalls, "max_resets": max_resets},
        )
        magentic(goal, team, options)  # refuses an empty team, repeats and the manager among the agents
        spec = RunSpec(
            pattern="magentic",
            members=team,
            task=goal,
            options=options.model_dump(),
            control=control or "centralized",
        )
        return await start_and_follow(ctx, spec, limits=limits, wait_seconds=wait_seconds)

    _ = run_magentic
