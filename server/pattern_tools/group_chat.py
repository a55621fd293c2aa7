"""start_group_chat: a discussion among agents on a shared transcript, bounded by max_turns."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import InputRequiredResult
from pydantic import Field

from orchestration.config import validated
from orchestration.patterns.group_chat import MAX_TURNS, GroupChatOptions
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
    @server.tool(title="Start a group chat", annotations=RUN_STARTER)
    @tool_errors
    async def start_group_chat(
        ctx: Context[Any, Any],
        agents: Members,
        topic: Task,
        max_turns: Annotated[
            int | None,
            Field(
                ge=1,
                le=MAX_TURNS,
                description="Turns before it is resolved (default: the max_turns limit).",
            ),
        ] = None,
        speaker_selection: Annotated[
            Literal["round_robin", "manager"],
            Field(description="round_robin (in order) or manager (it picks)."),
        ] = "round_robin",
        manager: Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=64,
                description="Picks speakers and/or summarises; with a group it sees only its group's messages.",
            ),
        ] = None,
        termination_phrase: Annotated[
            str,
            Field(
                min_length=1,
                max_length=64,
                description="A message with it ends the chat.",
            ),
        ] = "TERMINATE",
        resolution: Annotated[
            Literal["summarize", "last_proposal"] | None,
            Field(description="At max_turns: summarize (by the manager; default with one) or last_proposal."),
        ] = None,
        control: Control = None,
        limits: LimitsArg = None,
        wait_seconds: WaitSeconds = None,
    ) -> RunResult | InputRequiredResult:
        """Use for a discussion or debate among agents on a shared transcript. Ends on the manager's conclusion,
        the termination phrase, or max_turns (status stopped, resolution as output)."""
        if (followed := await followed_retry(ctx, wait_seconds)) is not None:
            return followed
        rt = state(ctx).runtime
        members = check_members(rt, agents)
        check_member(rt, manager)
        check_task(topic, "topic")
        options = validated(
            GroupChatOptions,
            {
                "max_turns": max_turns,
                "speaker_selection": speaker_selection,
                "manager": manager,
                "termination_phrase": termination_phrase,
                "resolution": resolution,
            },
        )
        spec = RunSpec(
            pattern="group_chat",
            members=members,
            task=topic,
            options=options.model_dump(),
            control=control or "centralized",
        )
        return await start_and_follow(ctx, spec, limits=limits, wait_seconds=wait_seconds)

    _ = start_group_chat
