"""How a run reaches the client's model through MCP sampling, in both protocol eras.

- Up to 2025-11-25 the server may send `sampling/createMessage` to the client at any time over the session:
  `SessionSampler` does that, even after the tool call that started the run has returned.
- From 2026-07-28 there is no back-channel: `PendingSampler` records a pending request and parks the run;
  the next run-following tool call (`delegate_task` still waiting, or `get_run`) returns it to the client as an
  `input_required` result, and the client's retry carries the answer back (`carry_pending` / `accept_answers`).
"""

from __future__ import annotations

import json
from typing import Any

from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    CreateMessageResultWithTools,
    InputRequiredResult,
)
from pydantic import ValidationError

from orchestration.errors import InvalidInputError, ProviderError
from orchestration.models.sampling import Sampler
from orchestration.pending import PendingRequests

MODERN_ERA = "2026-07-28"


def is_modern(ctx: Context[Any, Any]) -> bool:
    """True on a 2026-07-28 (or later) connection: no server-to-client requests mid-call."""
    version = ctx.protocol_version or ""
    return version >= MODERN_ERA


def client_offers_sampling(ctx: Context[Any, Any]) -> bool:
    caps = ctx.client_capabilities
    return caps is not None and caps.sampling is not None


class SessionSampler:
    """2025-era sampling: a `sampling/createMessage` request over the client session."""

    def __init__(self, session: Any) -> None:
        self.session = session

    async def sample(
        self, params: CreateMessageRequestParams, *, run_id: str
    ) -> CreateMessageResult | CreateMessageResultWithTools:
        try:
            result: CreateMessageResult = await self.session.create_message(
                params.messages,
                max_tokens=params.max_tokens,
                system_prompt=params.system_prompt,
                include_context=params.include_context,
                metadata=params.metadata,
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

    def __init__(self, pending: PendingRequests, timeout: float) -> None:
        self.pending = pending
        self.timeout = timeout

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
    if is_modern(ctx):
        return PendingSampler(pending, timeout)
    return SessionSampler(ctx.session)


def carry_pending(
    ctx: Context[Any, Any], pending: PendingRequests, run_id: str
) -> InputRequiredResult | None:
    """On a modern connection, the run's open sampling requests as an `input_required` result (else None)."""
    if not is_modern(ctx):
        return None
    open_requests = pending.open_for(run_id, "sampling")
    if not open_requests:
        return None
    return InputRequiredResult(
        input_requests={
            r.id: CreateMessageRequest(params=CreateMessageRequestParams.model_validate(r.payload))
            for r in open_requests
        },
        request_state=json.dumps({"run_id": run_id}),
    )


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


async def accept_answers(ctx: Context[Any, Any], pending: PendingRequests) -> None:
    """Hand the client's answers (a retried call's `input_responses`) to the runs waiting on them."""
    for request_id, response in (ctx.input_responses or {}).items():
        request = pending.get(request_id)
        if request is None or request.kind != "sampling":
            continue  # answered already (exactly once) or not ours: ignore the duplicate
        try:
            if isinstance(response, CreateMessageResult | CreateMessageResultWithTools):
                answer: Any = response
            else:
                answer = CreateMessageResult.model_validate(response)
        except ValidationError as exc:
            answer = {"error": f"the client's sampling answer was malformed: {exc.errors()[0]['msg']}"}
        try:
            await pending.resolve(request_id, answer, channel="input_required")
        except InvalidInputError:
            continue
