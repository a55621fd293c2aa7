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
                description="The agents (or teams) the manager directs (default: every agent but the manager).",
            ),
        ] = None,
        manager: Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=64,
                description=f"The manager that keeps the ledgers (default: the agent `{DEFAULT_MANAGER}`, "
                "required when the team has none).",
            ),
        ] = None,
        max_rounds: Annotated[
            int | None,
            Field(
                ge=1,
                le=MAX_ROUNDS,
                description="Rounds in the whole run, replans included (default: the max_turns limit).",
            ),
        ] = None,
        max_stalls: Annotated[
            int,
            Field(ge=0, le=50, description="Stalled rounds in a row tolerated before the manager replans."),
        ] = 3,
        max_resets: Annotated[
            int, Field(ge=0, le=20, description="Replans allowed before the run stops (max_resets).")
        ] = 2,
        control: Control = None,
        limits: LimitsArg = None,
        wait_seconds: WaitSeconds = None,
    ) -> RunResult | InputRequiredResult:
        """A manager writes a task ledger (facts, guesses, plan), then each round a progress ledger: is the goal
        met, is the work looping, is it progressing, who does what next. Stalled rounds make it replan. Returns
        the manager's final answer, or (status `stopped`, reason max_rounds / max_resets) its best partial
        answer. Every ledger is in the run's audit events."""
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
