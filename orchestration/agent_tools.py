"""An agent's granted MCP tools, each call gated: pinned definition, policy decision, human approval.

The order matters and is the same for every call: the definition must still be the pinned one, then the
policy decides (allow / require_approval / deny), then a required approval is awaited, and only then is the
downstream tool called. A denied or unapproved tool is never called; the agent is told why.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestration.approvals import request_approval
from orchestration.context import RunContext
from orchestration.errors import GuardrailTripped
from orchestration.models.base import ToolSpec
from orchestration.outcomes import AgentTool, ToolCallContext, ToolOutcome
from orchestration.toolbox import RemoteTool, ToolCallLost, ToolServerError
from policies.engine import Decision


@dataclass(frozen=True)
class GateSettings:
    """How the policy of an agent treats its tool calls."""

    decide: Callable[[str, RemoteTool, dict[str, Any]], Decision]
    """`(agent, tool, arguments) -> ruling`."""
    stop_on_denied: bool = False
    """End the run when a call is denied (else the agent is told and goes on)."""


async def tools_for(ctx: RunContext, agent: str, gate: GateSettings) -> list[AgentTool]:
    """The agent's granted downstream tools, gated. Empty when it has none (no server is started)."""
    grants = ctx.agent(agent).tools
    if not grants or ctx.engine.toolbox is None:
        return []
    remote = await ctx.engine.toolbox.granted_tools(grants)
    return [_gated(ctx, tool, gate) for tool in remote]


def _gated(ctx: RunContext, tool: RemoteTool, gate: GateSettings) -> AgentTool:
    hints = tool.annotations
    retry_safe = bool(hints.get("readOnlyHint") or hints.get("idempotentHint"))

    async def call(arguments: dict[str, Any], call_ctx: ToolCallContext) -> ToolOutcome:
        assert ctx.engine.toolbox is not None
        changed = await ctx.engine.toolbox.check_pin(tool)
        if changed is not None:
            await ctx.record(
                "tool_definition_changed",
                {"tool": tool.qualified, "detail": changed},
                step_id=call_ctx.step_id,
            )
            return ToolOutcome(f"refused: {changed}; the tool is not used until the server is reviewed", True)
        ruling = gate.decide(call_ctx.agent, tool, arguments)
        await ctx.record(
            "policy_decided",
            {
                "agent": call_ctx.agent,
                "tool": tool.qualified,
                "decision": ruling.outcome,
                "rule": ruling.rule,
                "reason": ruling.reason,
            },
            step_id=call_ctx.step_id,
        )
        if ruling.outcome == "deny":
            if gate.stop_on_denied:
                raise GuardrailTripped(
                    "policy_denied", f"{tool.qualified} was denied by policy: {ruling.reason}"
                )
            return ToolOutcome(
                f"denied by policy (rule {ruling.rule or 'default'}): {ruling.reason}",
                True,
                data={"decision": "deny"},
            )
        if ruling.outcome == "require_approval":
            verdict = await request_approval(
                ctx,
                agent=call_ctx.agent,
                tool=tool.qualified,
                arguments=arguments,
                reason=ruling.reason,
                rule=ruling.rule,
                human_only=ruling.human_only,
                ttl_s=ruling.approval_ttl_s,
                step_id=call_ctx.step_id,
            )
            if not verdict.approved:
                if gate.stop_on_denied:
                    raise GuardrailTripped(
                        "approval_denied", f"{tool.qualified} was not approved: {verdict.reason}"
                    )
                return ToolOutcome(
                    f"not approved ({verdict.channel}): {verdict.reason or 'denied'}; do not try it again",
                    True,
                    data={"decision": "denied", "channel": verdict.channel},
                )
        if call_ctx.in_flight and not retry_safe:
            skipped = await _in_flight(ctx, tool, arguments, call_ctx)
            if skipped is not None:
                return skipped
        while True:
            # recorded before the call: if the server dies during it, the resumed run knows it may have happened
            await ctx.record(
                "tool_call_started",
                {
                    "agent": call_ctx.agent,
                    "tool": tool.qualified,
                    "call_id": call_ctx.call_id,
                    "retry_safe": retry_safe,
                },
                step_id=call_ctx.step_id,
            )
            t0 = time.perf_counter()
            try:
                text, is_error = await ctx.engine.toolbox.call(tool, arguments)
            except ToolCallLost:  # its worker died during it (Temporal): a human decides, as after a restart
                skipped = await _in_flight(ctx, tool, arguments, call_ctx)
                if skipped is not None:
                    return skipped
                continue
            except ToolServerError as exc:
                return ToolOutcome(exc.message, True, data={"server_error": True})
            break
        return ToolOutcome(
            text, is_error, data={"tool_latency_ms": round((time.perf_counter() - t0) * 1000, 3)}
        )

    spec = ToolSpec(tool.model_name, tool.description or tool.qualified, tool.input_schema)
    return AgentTool(spec, call)


IN_FLIGHT_SKIPPED = (
    "this tool call was interrupted by a server restart and may or may not have happened; it was not repeated"
)


async def _in_flight(
    ctx: RunContext, tool: RemoteTool, arguments: dict[str, Any], call_ctx: ToolCallContext
) -> ToolOutcome | None:
    """A call with side effects that the server died during: a human decides whether to call it again (None)
    or skip it (the outcome the model is told). Never repeated silently."""
    if not ctx.can_ask_human:
        return ToolOutcome(
            IN_FLIGHT_SKIPPED + " (nobody could be asked)", True, data={"in_flight": "skipped"}
        )
    shown = json.dumps(arguments, default=str, ensure_ascii=False)
    verdict = await request_approval(
        ctx,
        agent=call_ctx.agent,
        tool=tool.qualified,
        arguments=arguments,
        reason=f"the server stopped during {tool.qualified} {shown[:400]}; it may or may not have happened: "
        "approve to retry it, deny to skip it",
        rule="in_flight",
        human_only=True,
        ttl_s=ctx.budget.limits.run_timeout_s,
        step_id=call_ctx.step_id,
    )
    if verdict.approved:
        return None
    return ToolOutcome(
        IN_FLIGHT_SKIPPED + f" (skipped: {verdict.reason or 'a human chose not to retry it'})",
        True,
        data={"in_flight": "skipped", "channel": verdict.channel},
    )
