"""`submit_step`: the calling assistant answers a step of an agent that runs on the host's own model."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import InputRequiredResult, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from orchestration import host_steps
from orchestration.host_steps import MAX_CALLS, MAX_OUTPUT_CHARS, HostCall
from server.app import state, tool_errors
from server.follow import follow_run, resume_followed
from server.schemas import RunResult


class ToolCallArg(BaseModel):
    """A tool call the agent makes."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, description="A tool name from the step's tools.")
    arguments: dict[str, Any] = Field(default_factory=dict, description="Its arguments.")


def client_name(ctx: Context[Any, Any]) -> str:
    """The connected client's name from its `clientInfo` (recorded as the model of host steps)."""
    params = ctx.session.client_params
    name = params.client_info.name if params is not None else ""
    return name or "unknown client"


def register(server: MCPServer[Any]) -> None:
    """Add `submit_step` to `server`."""

    @server.tool(
        title="Answer a host step",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
        ),
    )
    @tool_errors
    async def submit_step(
        ctx: Context[Any, Any],
        run_id: Annotated[str, Field(min_length=1, max_length=64, description="The run's id.")],
        step_id: Annotated[str, Field(min_length=1, max_length=64, description="A step_id from host_steps.")],
        output: Annotated[
            str, Field(max_length=MAX_OUTPUT_CHARS, description="The agent's reply, as that agent.")
        ] = "",
        tool_calls: Annotated[
            list[ToolCallArg] | None,
            Field(
                max_length=MAX_CALLS,
                description="Tools the agent calls instead of (or before) answering; the next step shows the "
                "results.",
            ),
        ] = None,
    ) -> RunResult | InputRequiredResult:
        """When a run result lists host_steps: do one step as its agent and answer here. Returns the run,
        with its next host_steps (or its result) once the branches that can go on have parked."""
        app = state(ctx)
        if (
            followed := await resume_followed(ctx)
        ) is not None:  # a 2026-07-28 retry: follow, don't re-answer
            return await follow_run(ctx, followed, app.settings.default_wait_seconds)
        rt = app.runtime
        calls = [HostCall(c.name, c.arguments) for c in tool_calls or []]
        await host_steps.submit_step(
            rt.pending, rt.reader, run_id.strip(), step_id.strip(), output, calls, client=client_name(ctx)
        )
        return await follow_run(ctx, run_id.strip(), app.settings.default_wait_seconds)

    _ = submit_step
