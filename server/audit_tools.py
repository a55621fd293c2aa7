"""The audit for the assistant: `query_audit` (read-only SQL), the schema and each run's diagram as resources."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from orchestration.audit.catalog import describe_schema
from orchestration.audit.query import MAX_ROWS, AuditQuery
from orchestration.diagram import markdown
from orchestration.errors import InvalidInputError, RunNotFoundError
from orchestration.runtime import Runtime
from server.app import state, tool_errors
from server.principals import current_principal, own_run


class AuditRows(BaseModel):
    """What a read-only audit query returned."""

    columns: list[str] = Field(description="Column names, in order.")
    rows: list[list[Any]] = Field(description="The rows, each a list in column order.")
    truncated: bool = Field(description="True when more rows matched than `limit`.")


def run_diagram(rt: Runtime, run_id: str) -> str:
    """A run's Mermaid diagrams as fenced markdown (`RunNotFoundError` for an unknown run)."""
    run = rt.get_run(run_id)
    return markdown(run, rt.reader.steps(run["id"]), rt.reader.events(run["id"], limit=100_000))


def register(server: MCPServer[Any]) -> None:
    """Add `query_audit` and the audit resources to `server`."""

    @server.tool(
        title="Query the audit (read-only SQL)",
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False),
    )
    @tool_errors
    async def query_audit(
        ctx: Context[Any, Any],
        sql: Annotated[str, Field(min_length=1, max_length=20_000, description="One SQLite SELECT.")],
        limit: Annotated[int, Field(ge=1, le=MAX_ROWS, description="Most rows to return.")] = 100,
    ) -> AuditRows:
        """Use to answer questions about past runs (cost, agents, tool calls, approvals) with one read-only
        SELECT over the audit. Views: run_summary, run_cost_by_agent, tool_calls (tool as
        server.tool, decision allowed/approved/denied/refused), transcript, guardrail_stops, approvals,
        model_calls, agent_usage, daily_cost; tables runs, steps, events (kind, JSON payload), pending_requests.
        Times are UTC ISO text (started_at >= date('now','-7 days')). Columns and kinds:
        concertmaster://audit/schema."""
        rt = state(ctx).runtime
        if not current_principal().approver:  # it reads every principal's runs
            raise InvalidInputError(
                "query_audit reads every principal's runs: it needs a token marked approver in the tokens file"
            )
        engine = AuditQuery(rt.audit.path, rt.audit.redactor)
        result = await anyio.to_thread.run_sync(engine.run, sql, limit)
        return AuditRows(columns=result.columns, rows=result.rows, truncated=result.truncated)

    @server.resource(
        "concertmaster://audit/schema",
        name="audit schema",
        mime_type="text/markdown",
        description="The audit's tables, views, columns, event kinds and stop reasons (for query_audit).",
    )
    async def audit_schema() -> str:
        return describe_schema()

    @server.resource(
        "concertmaster://runs/{run_id}/diagram",
        name="run diagram",
        mime_type="text/markdown",
        description="A run as Mermaid: a sequence diagram (who spoke to whom, tools, approvals, tokens, cost) "
        "and, for plans, the DAG.",
    )
    async def run_diagram_resource(run_id: str, ctx: Context[Any, Any]) -> str:
        try:
            own_run(ctx, run_id)
            return run_diagram(state(ctx).runtime, run_id)
        except RunNotFoundError as exc:
            raise ResourceNotFoundError(exc.message) from None

    _ = (query_audit, audit_schema, run_diagram_resource)
