"""run_magentic: a manager keeps task and progress ledgers and pulls agents in as needed."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import InputRequiredResult
from pydantic import Field, ValidationError

from orchestration.config import describe_validation_error
from orchestration.errors import InvalidInputError
from orchestration.patterns.magentic import MagenticOptions, magentic
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
    @server.tool(title="Run a magentic (ledger-driven) team", annotations=RUN_STARTER)
    @tool_errors
    async def run_magentic(
        ctx: Context[Any, Any],
        goal: Task,
        agents: Annotated[
            list[str] | None, Field(description="The team (default: every agent but the manager).")
        ] = None,
        manager: Annotated[
            str | None, Field(max_length=64, description="Manager agent (default: `planner`).")
        ] = None,
        max_rounds: Annotated[int | None, Field(ge=1, le=200, description="Rounds before stopping.")] = None,
        max_stalls: Annotated[
            int, Field(ge=0, le=50, description="Rounds without progress before a replan.")
        ] = 3,
        max_resets: Annotated[int, Field(ge=0, le=20, description="Replans before stopping.")] = 2,
        control: Control = None,
        limits: LimitsArg = None,
        wait_seconds: WaitSeconds = None,
    ) -> RunResult | InputRequiredResult:
        """A manager plans (facts, guesses, plan), then each round decides whether the goal is met, whether the
        work is looping, and who does what next; stalls trigger replans. Ledgers are recorded in the audit."""
        if (followed := await followed_retry(ctx, wait_seconds)) is not None:
            return followed
        rt = state(ctx).runtime
        lead = manager or ("planner" if "planner" in rt.config.member_names() else None)
        if lead is None:
            raise InvalidInputError(
                "manager: name the manager agent (the team has no agent called 'planner')"
            )
        check_member(rt, lead)
        team = check_members(rt, agents if agents is not None else [a for a in rt.config.agents if a != lead])
        if not team:
            raise InvalidInputError("agents: the manager needs at least one other agent to direct")
        check_task(goal, "goal")
        try:
            options = MagenticOptions(
                manager=lead, max_rounds=max_rounds, max_stalls=max_stalls, max_resets=max_resets
            )
        except ValidationError as exc:
            raise InvalidInputError(describe_validation_error(exc)) from None
        return await start_and_follow(
            ctx,
            "magentic",
            goal,
            magentic(goal, team, options),
            options={"agents": team, **options.model_dump()},
            control=control,
            limits=limits,
            wait_seconds=wait_seconds,
        )

    _ = run_magentic
