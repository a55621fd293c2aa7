"""Runs and approvals as MCP resources, for clients that browse rather than call tools.

`resources/list` shows the recent runs and the actions waiting for a human (it changes as they do: see
`server.notifications`); each is read as JSON from the audit.
"""

from __future__ import annotations

import json
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp_types import ListResourcesResult, PaginatedRequestParams, Resource

from orchestration.errors import RunNotFoundError
from server.app import AppState, state
from server.notifications import RECENT_RUNS, listen_for_list_changes

JSON = "application/json"


def register(server: MCPServer[Any]) -> None:
    """Add concertmaster's resources to `server`."""

    @server.resource(
        "concertmaster://runs/{run_id}",
        name="run",
        mime_type=JSON,
        description="A run with its steps and events, as recorded in the audit.",
    )
    async def run_resource(run_id: str, ctx: Context[Any, Any]) -> str:
        rt = state(ctx).runtime
        try:
            run = rt.get_run(run_id)
        except RunNotFoundError as exc:
            raise ResourceNotFoundError(exc.message) from None
        body = {"run": run, "steps": rt.reader.steps(run_id), "events": rt.reader.events(run_id)}
        return json.dumps(body, indent=2, default=str)

    @server.resource(
        "concertmaster://approvals/{action_id}",
        name="approval",
        mime_type=JSON,
        description="An action that needed a human: the exact tool and arguments, why, and the decision.",
    )
    async def approval_resource(action_id: str, ctx: Context[Any, Any]) -> str:
        rows = state(ctx).runtime.reader.query("select * from approvals where action_id = ?", (action_id,))
        if not rows:
            raise ResourceNotFoundError(f"no action {action_id!r}; list_pending_approvals lists open ones")
        return json.dumps(rows[0], indent=2, default=str)

    async def list_resources(ctx: Any, params: PaginatedRequestParams | None) -> ListResourcesResult:
        listen_for_list_changes(server, ctx.session)
        listed = await server.list_resources()
        app = ctx.lifespan_context
        if isinstance(app, AppState):
            listed += _approvals(app) + _runs(app)
        return ListResourcesResult(resources=listed)

    server._lowlevel_server.add_request_handler("resources/list", PaginatedRequestParams, list_resources)
    _ = run_resource, approval_resource


def _runs(app: AppState) -> list[Resource]:
    return [
        Resource(
            uri=f"concertmaster://runs/{row['id']}",
            name=row["id"],
            title=f"{row['pattern']} run, {row['status']}: {_short(row['input'])}",
            description=f"started {row['started_at']}; agents: {row.get('agents') or '-'}",
            mime_type=JSON,
        )
        for row in app.runtime.reader.runs(limit=RECENT_RUNS)
    ]


def _approvals(app: AppState) -> list[Resource]:
    rows = app.runtime.reader.query(
        "select action_id, run_id, agent, tool, reason, expires_at from approvals where status = 'pending'"
        " order by created_at"
    )
    return [
        Resource(
            uri=f"concertmaster://approvals/{row['action_id']}",
            name=row["action_id"],
            title=f"waiting for you: {row['agent']} wants {row['tool']}",
            description=f"{row['reason']} (run {row['run_id']}; expires {row['expires_at'] or 'never'})",
            mime_type=JSON,
        )
        for row in rows
    ]


def _short(text: str | None, limit: int = 60) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
