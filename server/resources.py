"""Runs and the team as MCP resources, for clients that browse rather than call tools."""

from __future__ import annotations

import json
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError

from orchestration.errors import RunNotFoundError
from server.app import state
from server.principals import own_run


def register(server: MCPServer[Any]) -> None:
    """Add concertmaster's resources to `server`."""

    @server.resource(
        "concertmaster://runs/{run_id}",
        name="run",
        mime_type="application/json",
        description="A run with its steps and events, as recorded in the audit.",
    )
    async def run_resource(run_id: str, ctx: Context[Any, Any]) -> str:
        rt = state(ctx).runtime
        try:
            run = own_run(ctx, run_id)
        except RunNotFoundError as exc:
            raise ResourceNotFoundError(exc.message) from None
        body = {"run": run, "steps": rt.reader.steps(run_id), "events": rt.reader.events(run_id)}
        return json.dumps(body, indent=2, default=str)

    _ = run_resource
