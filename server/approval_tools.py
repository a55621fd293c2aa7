"""approve_action and list_pending_approvals: a human's decision through the assistant.

The assistant must ask the user and pass on their answer; the tool annotations tell clients this tool
changes the world, so they show the user what is being approved. Agents never see these tools.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field

from server.app import state, tool_errors
from server.follow import describe_run
from server.schemas import ApprovalInfo, ApprovalList, DecisionResult

ActionId = Annotated[
    str, Field(min_length=1, max_length=64, description="An action_id from list_pending_approvals.")
]


def register(server: MCPServer[Any]) -> None:
    @server.tool(title="List actions waiting for approval", annotations=ToolAnnotations(read_only_hint=True))
    @tool_errors
    async def list_pending_approvals(
        ctx: Context[Any, Any],
        run_id: Annotated[str | None, Field(max_length=64, description="Only this run's actions.")] = None,
    ) -> ApprovalList:
        """Actions agents want to take that need a human decision: agent, tool, exact arguments, why, and when
        the request expires. Show them to the user before calling approve_action."""
        rt = state(ctx).runtime
        rows = rt.reader.pending(kind="approval", run_id=run_id)
        approvals = []
        for row in rows:
            p = json.loads(row["payload"])
            approvals.append(
                ApprovalInfo(
                    action_id=row["id"],
                    run_id=row["run_id"],
                    agent=p["agent"],
                    tool=p["tool"],
                    arguments=p["arguments"],
                    reason=p["reason"],
                    rule=p.get("rule"),
                    digest=p["digest"],
                    human_only=bool(p.get("human_only")),
                    expires_at=row["expires_at"],
                )
            )
        return ApprovalList(approvals=approvals)

    @server.tool(
        title="Approve or deny an agent's action (ask the user first)",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
        ),
    )
    @tool_errors
    async def approve_action(
        ctx: Context[Any, Any],
        action_id: ActionId,
        decision: Annotated[Literal["approve", "deny"], Field(description="The user's decision.")],
        reason: Annotated[
            str, Field(max_length=2000, description="The user's reason, recorded in the audit.")
        ] = "",
        digest: Annotated[
            str | None,
            Field(
                max_length=64,
                description="The digest list_pending_approvals showed; if given, the decision "
                "applies only if the action is still exactly that one.",
            ),
        ] = None,
    ) -> DecisionResult:
        """Record the USER's decision on a pending action. Only call this with an answer the user gave you
        for this exact action (agent, tool, arguments); never decide on their behalf. The run resumes at once.
        Some actions accept only a human channel (elicitation or `concertmaster approve ID`)."""
        rt = state(ctx).runtime
        await rt.approvals.decide(
            action_id, decision, reason, channel="tool", decided_by="user (via the assistant)", digest=digest
        )
        run_id = rt.run_of_request(action_id)
        run = await rt.wait(run_id, 2.0, wake_on_pending=("approval",))
        return DecisionResult(
            action_id=action_id, decision=decision, run_id=run_id, run=describe_run(ctx, run)
        )

    _ = (list_pending_approvals, approve_action)
