"""Tool results as pydantic models: they become the tools' output schemas."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

TERMINAL_STATUSES = ("succeeded", "failed", "stopped", "cancelled", "interrupted")


class UsageInfo(BaseModel):
    """Tokens, cost and time of a run."""

    input_tokens: int | None = Field(
        None, description="Input tokens of the run's model calls; null when no provider reported any."
    )
    output_tokens: int | None = Field(
        None, description="Output tokens of the run's model calls; null when no provider reported any."
    )
    cost_usd: float | None = Field(
        None, description="Cost in USD from the price table; null when no priced model was called."
    )
    latency_ms: float | None = Field(None, description="Wall time of the run so far, in milliseconds.")


class PendingInfo(BaseModel):
    """Something the run is waiting for."""

    request_id: str = Field(description="Id of the pending request (for approvals: the action_id).")
    kind: str = Field(
        description="What is awaited: `sampling` (the client's model), `approval` (a human), `host_step` (you)."
    )
    created_at: str = Field(description="When it was asked (UTC).")
    question: str | None = Field(None, description="For approvals: what to ask the user.")
    expires_at: str | None = Field(None, description="When the request expires (UTC).")
    human_only: bool = Field(
        False, description="For approvals: only a human channel (elicitation, CLI) may decide."
    )


class HostStep(BaseModel):
    """A step the calling assistant does itself, as the named agent (model `host`)."""

    step_id: str = Field(description="Pass it to submit_step.")
    agent: str = Field(description="The agent to play.")
    instructions: str = Field(description="The agent's instructions (its system prompt).")
    messages: list[dict[str, Any]] = Field(
        description="The agent's context, oldest first: role, text, tool_calls, tool_results."
    )
    tools: list[dict[str, Any]] = Field(
        default_factory=list, description="Tools the agent may call (name, description, input_schema)."
    )


class ApprovalInfo(BaseModel):
    """An action waiting for a human decision."""

    action_id: str = Field(description="Pass it to approve_action.")
    run_id: str
    agent: str = Field(description="The agent that wants to act.")
    tool: str = Field(description="The tool it wants to call (`server.tool`).")
    arguments: dict[str, Any] = Field(description="The exact arguments; the decision is bound to them.")
    reason: str = Field(description="Why the policy asks for approval.")
    rule: str | None = Field(None, description="The policy rule that matched (null: the policy default).")
    digest: str = Field(description="Digest of the exact tool and arguments the decision applies to.")
    human_only: bool = Field(
        description="True when only elicitation or the CLI may decide (not approve_action)."
    )
    expires_at: str | None = Field(None, description="When the request expires (UTC).")


class ApprovalList(BaseModel):
    approvals: list[ApprovalInfo] = Field(description="Pending actions, oldest first.")


class RunResult(BaseModel):
    """A run as the tools report it."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(description="The run's id: pass it to get_run, cancel_run, or SQL over the audit.")
    status: str = Field(
        description="running, awaiting_input, awaiting_approval, awaiting_host (see host_steps), succeeded, failed, "
        "stopped (a guardrail ended "
        "it; output is partial), cancelled or interrupted."
    )
    pattern: str = Field(description="How the agents worked: delegate, sequential, concurrent, ...")
    done: bool = Field(description="True once the run has ended, whatever its status.")
    output: str | None = Field(None, description="The result (partial for stopped runs).")
    error: str | None = Field(None, description="What went wrong, for failed, stopped and cancelled runs.")
    stop_reason: str | None = Field(None, description="Why it ended: completed, a limit's name, cancelled...")
    usage: UsageInfo = Field(description="Tokens, cost and latency.")
    steps: int = Field(0, description="Agent steps so far.")
    pending: list[PendingInfo] = Field(default_factory=list, description="What the run is waiting for.")
    host_steps: list[HostStep] = Field(
        default_factory=list,
        description="Steps for you to do as the named agent; answer each with submit_step.",
    )
    next: str | None = Field(None, description="What to do next, for runs still in progress.")
    diagram: str | None = Field(
        None, description="With get_run(diagram=true): the run as Mermaid (```mermaid blocks) to render."
    )


class DecisionResult(BaseModel):
    action_id: str
    decision: str = Field(description="approve or deny")
    run_id: str
    run: RunResult | None = Field(None, description="The run after the decision (it resumes at once).")


class RunSummary(BaseModel):
    """One line of list_runs."""

    run_id: str
    pattern: str
    status: str
    started_at: str
    ended_at: str | None = None
    agents: str | None = Field(None, description="Agents that took part, comma-separated.")
    steps: int = 0
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    input: str = Field(description="First 200 characters of the task.")


class RunList(BaseModel):
    runs: list[RunSummary] = Field(description="Newest first.")


class AgentInfo(BaseModel):
    name: str
    description: str
    model: str = Field(description="The configured model: anthropic:<id>, sampling, host, scripted or auto.")
    runs_on: str = Field(
        description="What it would run on now for this client: anthropic, sampling, host, scripted "
        "or unavailable (with the reason)."
    )
    group: str | None = None
    tools: list[str] = Field(default_factory=list)


class AgentList(BaseModel):
    agents: list[AgentInfo]
    config: str = Field(description="Where the team comes from (a file path or the built-in default team).")


def run_result(
    run: dict[str, Any],
    *,
    steps: int,
    pending: list[PendingInfo],
    latency_ms: float | None,
    host_steps: list[HostStep] | None = None,
) -> RunResult:
    """Shape an audit `runs` row for a tool answer."""
    status = run["status"]
    done = status in TERMINAL_STATUSES
    hint = None
    if not done:
        hint = (
            f"The run continues in the background. Call get_run(run_id='{run['id']}', wait_seconds=20) to "
            "follow it, or cancel_run to stop it."
        )
        if any(p.kind == "sampling" for p in pending):
            hint += " It needs the client's model: the next get_run call carries that request."
        approvals = [p for p in pending if p.kind == "approval"]
        if approvals:
            first = approvals[0]
            how = (
                f"the user must run `concertmaster approve {first.request_id}` (or deny) in a terminal"
                if first.human_only
                else f"ask the user, then call approve_action(action_id='{first.request_id}', decision='approve' "
                "or 'deny', reason=...)"
            )
            hint = f"The run waits for a human decision. {first.question} To decide, {how}."
        if host_steps:
            hint = (
                "Do each step in host_steps yourself as its agent (follow its instructions, use only its "
                f"messages) and answer with submit_step(run_id='{run['id']}', step_id, output, tool_calls?). "
                "Answer in any order; independent steps can be done in parallel."
            ) + (f" Also: {hint}" if approvals else "")
    return RunResult(
        run_id=run["id"],
        status=status,
        pattern=run["pattern"],
        done=done,
        output=run["output"],
        error=run["error"],
        stop_reason=run["stop_reason"],
        usage=UsageInfo(
            input_tokens=run["input_tokens"],
            output_tokens=run["output_tokens"],
            cost_usd=run["cost_usd"],
            latency_ms=latency_ms,
        ),
        steps=steps,
        pending=pending,
        host_steps=host_steps or [],
        next=hint,
    )


def options_of(run: dict[str, Any]) -> dict[str, Any]:
    """The run's recorded options (JSON in the `options` column)."""
    try:
        value = json.loads(run.get("options") or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
