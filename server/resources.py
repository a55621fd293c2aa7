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

from orchestration.approvals import chained_request, open_approvals
from orchestration.errors import RunNotFoundError
from server.app import AppState, state
from server.notifications import RECENT_RUNS, listen_for_list_changes
from server.principals import current_principal, own_run

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
            run = own_run(ctx, run_id)
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
        reader = state(ctx).runtime.reader
        rows = reader.query("select * from approvals where action_id = ?", (action_id,))
        if not rows or not current_principal().may_see(_run_of(reader, rows[0]["run_id"])):
            raise ResourceNotFoundError(f"no action {action_id!r}; list_pending_approvals lists open ones")
        shown = dict(rows[0])
        asked, problem = chained_request(reader, action_id)  # what the run asked, not the editable row
        if asked is not None:
            shown.update(
                {k: asked.get(k) for k in ("agent", "tool", "reason", "rule", "human_only", "digest")}
            )
            shown["arguments"] = json.dumps(asked.get("arguments"), ensure_ascii=False)
        else:
            shown["problem"] = problem
        return json.dumps(shown, indent=2, default=str)

    async def list_resources(ctx: Any, params: PaginatedRequestParams | None) -> ListResourcesResult:
        listen_for_list_changes(server, ctx.session)
        listed = await server.list_resources()
        app = ctx.lifespan_context
        if isinstance(app, AppState):
            listed += _approvals(app) + _runs(app)
        return ListResourcesResult(resources=listed)

    server._lowlevel_server.add_request_handler("resources/list", PaginatedRequestParams, list_resources)
    _ = run_resource, approval_resource


def _run_of(reader: Any, run_id: str) -> dict[str, Any]:
    rows = reader.query("select principal from runs where id = ?", (run_id,))
    return rows[0] if rows else {}


def _principal_filter() -> str | None:
    """The principal whose runs the caller may list (None: all of them)."""
    caller = current_principal()
    return None if caller.approver else caller.name


def _runs(app: AppState) -> list[Resource]:
    return [
        Resource(
            uri=f"concertmaster://runs/{row['id']}",
            name=row["id"],
            title=f"{row['pattern']} run, {row['status']}: {_short(row['input'])}",
            description=f"started {row['started_at']}; agents: {row.get('agents') or '-'}",
            mime_type=JSON,
        )
        for row in app.runtime.reader.runs(limit=RECENT_RUNS, principal=_principal_filter())
    ]


def _approvals(app: AppState) -> list[Resource]:
    # as each run asked it (the chained event), not as the editable row says
    shown = open_approvals(app.runtime.reader, principal=_principal_filter())
    return [
        Resource(
            uri=f"concertmaster://approvals/{row['id']}",
            name=row["id"],
            title=f"waiting for you: {row['payload'].get('agent')} wants {row['payload'].get('tool')}",
            description=f"{row['problem'] or row['payload'].get('reason')} (run {row['run_id']};"
            f" expires {row['expires_at'] or 'never'})",
            mime_type=JSON,
        )
        for row in shown
    ]


def _short(text: str | None, limit: int = 60) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
