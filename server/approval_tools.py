"""approve_action and list_pending_approvals: a human's decision through the assistant.

The assistant must ask the user and pass on their answer; the tool annotations tell clients this tool
changes the world, so they show the user what is being approved. Agents never see these tools.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field

from orchestration.approvals import open_approvals
from server.app import state, tool_errors
from server.follow import describe_run
from server.principals import current_principal, own_action
from server.schemas import ApprovalInfo, ApprovalList, DecisionResult

ActionId = Annotated[str, Field(min_length=1, max_length=64, description="From list_pending_approvals.")]


def register(server: MCPServer[Any]) -> None:
    @server.tool(title="List actions waiting for approval", annotations=ToolAnnotations(read_only_hint=True))
    @tool_errors
    async def list_pending_approvals(
        ctx: Context[Any, Any],
        run_id: Annotated[str | None, Field(max_length=64, description="Only this run.")] = None,
    ) -> ApprovalList:
        """Use when a run is awaiting_approval or the user asks what is waiting: actions that need a human
        (agent, tool, exact arguments, reason, expiry). Show them to the user."""
        rt = state(ctx).runtime
        caller = current_principal()
        approvals = []
        for shown in open_approvals(
            rt.reader, run_id, principal=None if caller.approver else caller.name
        ):  # as the run asked it: the chained event, not the row
            p = shown["payload"]
            approvals.append(
                ApprovalInfo(
                    action_id=shown["id"],
                    run_id=shown["run_id"],
                    agent=p["agent"],
                    tool=p["tool"],
                    arguments=p["arguments"],
                    reason=p["reason"] if shown["problem"] is None else f"{shown['problem']}",
                    rule=p.get("rule"),
                    digest=p["digest"],
                    human_only=bool(p.get("human_only")),
                    expires_at=shown["expires_at"],
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
        reason: Annotated[str, Field(max_length=2000, description="The user's reason.")] = "",
        digest: Annotated[
            str | None,
            Field(
                max_length=64,
                description="As listed: the decision then applies only to exactly that action.",
            ),
        ] = None,
    ) -> DecisionResult:
        """Use only to pass on the USER's own decision on one pending action; never decide for them. The run
        resumes at once. Some actions accept only elicitation or the CLI."""
        rt = state(ctx).runtime
        own_action(ctx, action_id)
        await rt.approvals.decide(
            action_id,
            decision,
            reason,
            channel="tool",
            decided_by=f"{current_principal().name} (via the assistant)",
            digest=digest,
        )
        run_id = rt.run_of_request(action_id)
        run = await rt.wait(run_id, 2.0, wake_on_pending=("approval",))
        return DecisionResult(
            action_id=action_id, decision=decision, run_id=run_id, run=describe_run(ctx, run)
        )

    _ = (list_pending_approvals, approve_action)
