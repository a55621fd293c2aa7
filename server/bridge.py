"""How a run reaches the client's model through MCP sampling, in both protocol eras.

- Up to 2025-11-25 the server may send `sampling/createMessage` to the client at any time over the session:
  `SessionSampler` does that, even after the tool call that started the run has returned.
- From 2026-07-28 there is no back-channel: `PendingSampler` records a pending request and parks the run;
  the next run-following tool call (`delegate_task` still waiting, or `get_run`) returns it to the client as an
  `input_required` result, and the client's retry carries the answer back (`carry_pending` / `accept_answers`).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from mcp.server.elicitation import AcceptedElicitation, DeclinedElicitation, render_elicitation_schema
from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    CreateMessageResultWithTools,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    InputRequest,
    InputRequiredResult,
)
from pydantic import BaseModel, Field, ValidationError

from orchestration.approvals import Choice
from orchestration.errors import InvalidInputError, ProviderError
from orchestration.models.sampling import Sampler
from orchestration.pending import PendingRequests
from orchestration.runtime import Runtime

MODERN_ERA = "2026-07-28"


def is_modern(ctx: Context[Any, Any]) -> bool:
    """True on a 2026-07-28 (or later) connection: no server-to-client requests mid-call."""
    version = ctx.protocol_version or ""
    return version >= MODERN_ERA


def client_offers_sampling(ctx: Context[Any, Any]) -> bool:
    caps = ctx.client_capabilities
    return caps is not None and caps.sampling is not None


def client_offers_elicitation(ctx: Context[Any, Any]) -> bool:
    caps = ctx.client_capabilities
    return caps is not None and caps.elicitation is not None


class ApprovalForm(BaseModel):
    """What the user answers when asked to approve an action through elicitation."""

    decision: Literal["approve", "deny"] = Field(description="Approve or deny this exact action.")
    reason: str = Field("", description="Why (recorded in the audit).")


class SessionSampler:
    """2025-era sampling: a `sampling/createMessage` request over the client session."""

    def __init__(self, session: Any, supports_tools: bool = False) -> None:
        self.session = session
        self.supports_tools = supports_tools

    async def sample(
        self, params: CreateMessageRequestParams, *, run_id: str
    ) -> CreateMessageResult | CreateMessageResultWithTools:
        try:
            result: CreateMessageResult | CreateMessageResultWithTools = await self.session.create_message(
                params.messages,
                max_tokens=params.max_tokens,
                system_prompt=params.system_prompt,
                include_context=params.include_context,
                metadata=params.metadata,
                tools=params.tools,
            )
        except MCPError as exc:
            raise ProviderError(
                f"the client refused the sampling request ({exc.error.message}); allow sampling in the client, "
                "or set ANTHROPIC_API_KEY so agents run on the Anthropic API",
                kind="refused",
            ) from None
        except Exception as exc:
            raise ProviderError(
                f"the client's model could not be reached through sampling ({type(exc).__name__}: {exc}); "
                "is the client still connected?",
                kind="unavailable",
            ) from None
        return result


class PendingSampler:
    """2026-era sampling: a pending request that the next run-following tool call carries to the client."""

    def __init__(self, pending: PendingRequests, timeout: float, supports_tools: bool = False) -> None:
        self.pending = pending
        self.timeout = timeout
        self.supports_tools = supports_tools

    async def sample(
        self, params: CreateMessageRequestParams, *, run_id: str
    ) -> CreateMessageResult | CreateMessageResultWithTools:
        payload = params.model_dump(mode="json", by_alias=True, exclude_none=True)
        try:
            answer, _channel = await self.pending.ask(run_id, "sampling", payload, timeout=self.timeout)
        except TimeoutError:
            raise ProviderError(
                f"no answer from the client's model within {self.timeout:g} s; the request is carried by the next "
                "get_run call for this run, so keep following the run with get_run",
                kind="timeout",
            ) from None
        if isinstance(answer, dict) and "error" in answer:
            raise ProviderError(
                f"the client refused the sampling request ({answer['error']}); allow sampling in the client, or "
                "set ANTHROPIC_API_KEY so agents run on the Anthropic API",
                kind="refused",
            )
        return answer  # type: ignore[no-any-return]


def sampler_for(ctx: Context[Any, Any], pending: PendingRequests, timeout: float) -> Sampler | None:
    """The sampler for runs started by this tool call, or None when the client offers no sampling."""
    if not client_offers_sampling(ctx):
        return None
    caps = ctx.client_capabilities
    tools = caps is not None and caps.sampling is not None and caps.sampling.tools is not None
    if is_modern(ctx):
        return PendingSampler(pending, timeout, supports_tools=tools)
    return SessionSampler(ctx.session, supports_tools=tools)


def carry_pending(
    ctx: Context[Any, Any], pending: PendingRequests, run_id: str
) -> InputRequiredResult | None:
    """On a modern connection, the run's open questions for the client as an `input_required` result:
    sampling requests, and approvals when the client can elicit (else None)."""
    if not is_modern(ctx):
        return None
    requests: dict[str, InputRequest] = {}
    for r in pending.open_for(run_id, "sampling"):
        requests[r.id] = CreateMessageRequest(params=CreateMessageRequestParams.model_validate(r.payload))
    if client_offers_elicitation(ctx):
        for r in pending.open_for(run_id, "approval"):
            requests[r.id] = ElicitRequest(
                params=ElicitRequestFormParams(
                    message=r.payload["question"], requested_schema=render_elicitation_schema(ApprovalForm)
                )
            )
    if not requests:
        return None
    return InputRequiredResult(input_requests=requests, request_state=json.dumps({"run_id": run_id}))


async def elicit_approvals(ctx: Context[Any, Any], rt: Runtime, run_id: str) -> bool:
    """On a 2025-era connection with elicitation, ask the user about the run's open approvals now.
    True if a decision was made (the caller keeps waiting for the run)."""
    if is_modern(ctx) or not client_offers_elicitation(ctx):
        return False
    decided = False
    for request in rt.pending.open_for(run_id, "approval"):
        result = await ctx.elicit(request.payload["question"], schema=ApprovalForm)
        if isinstance(result, AcceptedElicitation):
            choice, reason = result.data.decision, result.data.reason
        elif isinstance(result, DeclinedElicitation):
            choice, reason = "deny", "declined in the client"
        else:
            return decided  # dismissed: leave it pending for approve_action or the CLI
        try:
            await rt.approvals.decide(
                request.id, choice, reason, channel="elicitation", decided_by="user (elicitation)"
            )
        except InvalidInputError:
            pass  # decided meanwhile elsewhere (the CLI, another client): refused and audited by decide()
        decided = True
    return decided


def state_run_id(ctx: Context[Any, Any]) -> str | None:
    """The run id a retried tool call is following (from the `request_state` we sent), if any."""
    if not ctx.request_state:
        return None
    try:
        value = json.loads(ctx.request_state)
    except json.JSONDecodeError:
        return None
    run_id = value.get("run_id") if isinstance(value, dict) else None
    return run_id if isinstance(run_id, str) else None


async def accept_answers(ctx: Context[Any, Any], rt: Runtime) -> None:
    """Hand the client's answers (a retried call's `input_responses`) to the runs waiting on them."""
    pending = rt.pending
    for request_id, response in (ctx.input_responses or {}).items():
        request = pending.get(request_id)
        if request is None:
            continue  # answered already (exactly once) or not ours: ignore the duplicate
        if request.kind == "approval":
            await _accept_elicited_approval(rt, request_id, response)
            continue
        if request.kind != "sampling":
            continue
        try:
            if isinstance(response, CreateMessageResult | CreateMessageResultWithTools):
                answer: Any = response
            elif isinstance(response, dict) and isinstance(response.get("content"), list):
                answer = CreateMessageResultWithTools.model_validate(response)
            else:
                answer = CreateMessageResult.model_validate(response)
        except ValidationError as exc:
            answer = {"error": f"the client's sampling answer was malformed: {exc.errors()[0]['msg']}"}
        try:
            await pending.resolve(request_id, answer, channel="input_required")
        except InvalidInputError:
            continue


async def _accept_elicited_approval(rt: Runtime, request_id: str, response: Any) -> None:
    try:
        result = response if isinstance(response, ElicitResult) else ElicitResult.model_validate(response)
    except ValidationError:
        return
    if result.action == "cancel":
        return  # dismissed: it stays pending for approve_action or the CLI
    content = result.content or {}
    choice: Choice = "deny"
    if result.action == "accept":
        if content.get("decision") not in ("approve", "deny"):
            return
        choice = "approve" if content.get("decision") == "approve" else "deny"
    reason = str(content.get("reason") or ("declined in the client" if result.action == "decline" else ""))
    try:
        await rt.approvals.decide(
            request_id, choice, reason, channel="elicitation", decided_by="user (elicitation)"
        )
    except InvalidInputError:
        return  # refused and audited by decide()
