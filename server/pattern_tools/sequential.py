"""run_sequential: agents in a fixed order, each working on the previous one's output."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import InputRequiredResult
from pydantic import WithJsonSchema

from orchestration.patterns.sequential import Checkpoint
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

CHECKPOINT_SCHEMA = {
    "type": "object",
    "properties": {
        **{name: {"type": "string"} for name in ("must_match", "must_not_match", "agent")},
        **{name: {"type": "integer"} for name in ("min_chars", "max_chars")},
        "check_last": {"type": "boolean"},
    },
    "description": "Checks between steps; a failure stops the chain: must_match / must_not_match (regex), "
    "min_chars, max_chars, agent (answers PASS or FAIL: reason), check_last (check the last output too).",
}
"""What the host model reads of `checkpoint`; the argument is still validated by `Checkpoint`."""


def register(server: MCPServer[Any]) -> None:
    @server.tool(title="Run agents in sequence", annotations=RUN_STARTER)
    @tool_errors
    async def run_sequential(
        ctx: Context[Any, Any],
        agents: Members,
        task: Task,
        checkpoint: Annotated[Checkpoint | None, WithJsonSchema(CHECKPOINT_SCHEMA)] = None,
        control: Control = None,
        limits: LimitsArg = None,
        wait_seconds: WaitSeconds = None,
    ) -> RunResult | InputRequiredResult:
        """Use when each agent builds on the previous one's output (research, then write, then review). Returns
        the last output; a failed checkpoint stops the chain and says why."""
        if (followed := await followed_retry(ctx, wait_seconds)) is not None:
            return followed
        rt = state(ctx).runtime
        members = check_members(rt, agents)
        check_task(task)
        if checkpoint is not None:
            check_member(rt, checkpoint.agent)
        spec = RunSpec(
            pattern="sequential",
            members=members,
            task=task,
            options={"checkpoint": checkpoint.model_dump() if checkpoint else None},
            control=control or "centralized",
        )
        return await start_and_follow(ctx, spec, limits=limits, wait_seconds=wait_seconds)

    _ = run_sequential
