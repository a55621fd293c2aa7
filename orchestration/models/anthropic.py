"""The `anthropic` provider: Claude through the Anthropic Messages API (`anthropic.AsyncAnthropic`).

`ANTHROPIC_API_KEY` (or `ANTHROPIC_AUTH_TOKEN`) and `ANTHROPIC_BASE_URL` are read by the SDK itself. Tokens come
from the response's usage, cache tokens included; cost from the price table. Errors become `ProviderError`s
whose message says how to fix the problem and never contains the key.
"""

from __future__ import annotations

from typing import Any

import anthropic

from orchestration.errors import ProviderError
from orchestration.models.base import Message, ModelRequest, ModelResponse, ToolCall, Usage
from orchestration.models.pricing import PriceTable, load_prices


def to_api_messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Our messages as Messages API messages (tool calls as tool_use blocks, results as tool_result blocks)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        blocks: list[dict[str, Any]] = []
        for r in m.tool_results:
            blocks.append(
                {
                    "type": "tool_result",
                    "tool_use_id": r.call_id,
                    "content": r.content,
                    "is_error": r.is_error,
                }
            )
        if m.text:
            blocks.append({"type": "text", "text": m.text})
        for c in m.tool_calls:
            blocks.append({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments})
        out.append({"role": m.role, "content": blocks or [{"type": "text", "text": "(empty)"}]})
    return out


def usage_of(usage: Any) -> Usage:
    return Usage(
        input_tokens=getattr(usage, "input_tokens", None),
        output_tokens=getattr(usage, "output_tokens", None),
        cache_read_tokens=getattr(usage, "cache_read_input_tokens", None),
        cache_write_tokens=getattr(usage, "cache_creation_input_tokens", None),
    )


class AnthropicProvider:
    """Runs agents on Claude."""

    name = "anthropic"

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        http_client: Any = None,
        timeout: float = 120.0,
        max_retries: int = 2,
        prices: PriceTable | None = None,
    ) -> None:
        self.model = model
        self.prices = prices or load_prices()
        self._api_key = api_key
        self.client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            http_client=http_client,
            timeout=timeout,
            max_retries=max_retries,
        )

    async def complete(self, request: ModelRequest) -> ModelResponse:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "system": request.system,
            "messages": to_api_messages(request.messages),
        }
        if request.tools:
            kwargs["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.input_schema}
                for t in request.tools
            ]
        try:
            response = await self.client.messages.create(**kwargs)
        except anthropic.APIError as exc:
            raise self._error(exc) from None
        text = "".join(b.text for b in response.content if b.type == "text")
        calls = tuple(
            ToolCall(id=b.id, name=b.name, arguments=dict(b.input))
            for b in response.content
            if b.type == "tool_use"
        )
        usage = usage_of(response.usage)
        return ModelResponse(
            text=text,
            model=response.model,
            provider=self.name,
            usage=usage,
            cost_usd=self.prices.cost(response.model, usage),
            tool_calls=calls,
            stop_reason=response.stop_reason,
        )

    def _error(self, exc: anthropic.APIError) -> ProviderError:
        detail = _api_message(exc)
        if isinstance(exc, anthropic.AuthenticationError):
            err = ProviderError(
                "the Anthropic API rejected the API key (401); check ANTHROPIC_API_KEY", kind="auth"
            )
        elif isinstance(exc, anthropic.PermissionDeniedError):
            err = ProviderError(f"the API key may not use {self.model} (403): {detail}", kind="auth")
        elif isinstance(exc, anthropic.NotFoundError):
            err = ProviderError(
                f"the Anthropic API does not know model {self.model!r} (404); fix the agent's model id",
                kind="bad_request",
            )
        elif isinstance(exc, anthropic.RateLimitError):
            err = ProviderError(
                "the Anthropic API is rate limiting this key (429); retry later or lower concurrency",
                kind="rate_limit",
                retryable=True,
            )
        elif isinstance(exc, anthropic.InternalServerError):
            status = getattr(exc, "status_code", 500)
            err = ProviderError(
                f"the Anthropic API failed ({status}: {detail}); retry later", kind="server", retryable=True
            )
        elif isinstance(exc, anthropic.APITimeoutError):
            err = ProviderError(
                "the Anthropic API did not answer in time; retry, or raise the step timeout",
                kind="timeout",
                retryable=True,
            )
        elif isinstance(exc, anthropic.APIConnectionError):
            err = ProviderError(
                "cannot reach the Anthropic API; check the network and ANTHROPIC_BASE_URL",
                kind="unavailable",
                retryable=True,
            )
        elif isinstance(exc, anthropic.BadRequestError):
            err = ProviderError(f"the Anthropic API refused the request (400): {detail}", kind="bad_request")
        else:
            err = ProviderError(f"the Anthropic API failed: {detail}", kind="error")
        if self._api_key:  # paranoia: a key echoed back by a proxy must not reach a message
            err.message = err.message.replace(self._api_key, "[redacted]")
        return err


def _api_message(exc: anthropic.APIError) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return str(getattr(exc, "message", "") or type(exc).__name__)
