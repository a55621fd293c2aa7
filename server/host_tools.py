"""`submit_step`: the calling assistant answers a step of an agent that runs on the host's own model."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import InputRequiredResult, ToolAnnotations
from pydantic import Field

from orchestration import host_steps
from orchestration.errors import InvalidInputError
from orchestration.host_steps import MAX_CALLS, MAX_OUTPUT_CHARS, HostCall
from server.app import state, tool_errors
from server.follow import follow_run, resume_followed
from server.schemas import RunResult


def host_calls(tool_calls: list[dict[str, Any]] | None) -> list[HostCall]:
    """The answer's tool calls, each `{"name": str, "arguments": object}`, or a clear refusal."""
    calls = []
    for i, call in enumerate(tool_calls or []):
        name, arguments = call.get("name"), call.get("arguments", {})
        extra = sorted(set(call) - {"name", "arguments"})
        if not isinstance(name, str) or not name or not isinstance(arguments, dict) or extra:
            raise InvalidInputError(
                f'tool_calls[{i}] must be {{"name": <a tool of the step>, "arguments": {{...}}}}'
                + (f"; unknown key(s) {', '.join(extra)}" if extra else "")
            )
        calls.append(HostCall(name, arguments))
    return calls


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
        run_id: Annotated[str, Field(min_length=1, max_length=64)],
        step_id: Annotated[str, Field(min_length=1, max_length=64, description="From host_steps.")],
        output: Annotated[str, Field(max_length=MAX_OUTPUT_CHARS, description="The agent's reply.")] = "",
        tool_calls: Annotated[
            list[dict[str, Any]] | None,
            Field(
                max_length=MAX_CALLS,
                description='Tools the agent calls: [{"name", "arguments"}]; the next step shows the results.',
            ),
        ] = None,
    ) -> RunResult | InputRequiredResult:
        """Use when a run result lists host_steps: answer one as its agent. Returns the run with its next
        host_steps or its result."""
        app = state(ctx)
        if (
            followed := await resume_followed(ctx)
        ) is not None:  # a 2026-07-28 retry: follow, don't re-answer
            return await follow_run(ctx, followed, app.settings.default_wait_seconds)
        rt = app.runtime
        calls = host_calls(tool_calls)
        await host_steps.submit_step(
            rt.pending, rt.reader, run_id.strip(), step_id.strip(), output, calls, client=client_name(ctx)
        )
        return await follow_run(ctx, run_id.strip(), app.settings.default_wait_seconds)

    _ = submit_step
