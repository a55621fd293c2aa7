"""The `host` provider: the calling assistant's own model plays the agent.

For hosts with no API key and no MCP sampling (Claude Desktop, Claude Code): each model call of a host agent
becomes a pending request of kind `host_step` (the one way to wait, `orchestration.pending`), the run parks as
`awaiting_host`, and the tool result hands the assistant the step (the agent's instructions, its scoped
messages, the tools it may ask for). The assistant answers with `submit_step`; the answer resolves the request
exactly once and becomes this provider's `ModelResponse`. Tool calls in the answer are executed by the step
runner under the agent's policy, like any model's, and their results reach the next host step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestration.errors import ProviderError
from orchestration.models.base import Message, ModelRequest, ModelResponse, ToolCall, Usage

if TYPE_CHECKING:
    from orchestration.journal import Journal
    from orchestration.pending import PendingRequests

HOST_STEP = "host_step"
"""Kind of the pending request a host agent's model call waits on."""

PARK_AS = "awaiting_host"
"""Run status while host steps are open."""


def message_payload(message: Message) -> dict[str, Any]:
    """One message of the agent's scoped context, as the host reads it."""
    item: dict[str, Any] = {"role": message.role}
    if message.text:
        item["text"] = message.text
    if message.tool_calls:
        item["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls
        ]
    if message.tool_results:
        item["tool_results"] = [
            {"call_id": r.call_id, "content": r.content, "is_error": r.is_error} for r in message.tool_results
        ]
    return item


def host_payload(request: ModelRequest) -> dict[str, Any]:
    """The step as the host sees it: exactly what a provider receives (so the control model's visibility
    rules, already applied to `request.messages`, hold), in plain JSON."""
    return {
        "agent": request.agent,
        "instructions": request.system,
        "messages": [message_payload(m) for m in request.messages],
        "tools": [
            {"name": t.name, "description": t.description, "input_schema": t.input_schema}
            for t in request.tools
        ],
        "max_tokens": request.max_tokens,
    }


def host_response(answer: Any) -> ModelResponse:
    """A validated answer (see `orchestration.host_steps.submit_step`) as the provider's response."""
    if not isinstance(answer, dict) or not isinstance(answer.get("output"), str):
        raise ProviderError("the host's answer to the step was malformed", kind="malformed")
    calls = tuple(
        ToolCall(id=str(c["id"]), name=str(c["name"]), arguments=dict(c["arguments"]))
        for c in answer.get("tool_calls") or ()
    )
    return ModelResponse(
        text=answer["output"],
        model=str(answer.get("client") or "unknown client"),
        provider="host",
        usage=Usage(),  # the host's tokens are not reported to us: NULL, never invented
        cost_usd=None,
        tool_calls=calls,
        stop_reason="tool_use" if calls else "end_turn",
    )


class HostProvider:
    """Runs an agent on the calling assistant's model, one `submit_step` per model call."""

    name = "host"

    def __init__(self, pending: PendingRequests | None, *, journal: Journal | None = None) -> None:
        self.pending = pending
        self.journal = journal
        """Set when the run resumed after a restart: a host step it asked before is waited on again."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        if self.pending is None:
            raise ProviderError(
                "model 'host' needs a run started by the concertmaster runtime (the host answers its steps "
                "with submit_step); use another model when calling the core without one",
                kind="unavailable",
            )
        answer, _channel = await self.pending.ask(
            request.run_id,
            HOST_STEP,
            host_payload(request),
            step_id=request.step_id or None,
            park_as=PARK_AS,
            adopt=self._asked_before(request),
        )
        return host_response(answer)

    def _asked_before(self, request: ModelRequest) -> dict[str, Any] | None:
        """The open host step of this run's step asked before a restart (its step_id stays valid for the host).
        Only an open one: a step's answered turns are replayed from its recorded replies, never from here."""
        if self.pending is None or self.journal is None or not request.step_id:
            return None
        from orchestration.audit.read import AuditReader

        with AuditReader(self.pending.audit.path) as reader:
            rows = reader.query(
                "select * from pending_requests where run_id = ? and step_id = ? and kind = ? and status = 'pending'"
                " order by created_at desc limit 1",
                (request.run_id, request.step_id, HOST_STEP),
            )
        if not rows or rows[0]["id"] in self.journal.adopted_requests:
            return None
        self.journal.adopted_requests.add(rows[0]["id"])
        return rows[0]
