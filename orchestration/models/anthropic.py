"""The `anthropic` provider: Claude through the Anthropic Messages API (`anthropic.AsyncAnthropic`).

`ANTHROPIC_API_KEY` (or `ANTHROPIC_AUTH_TOKEN`) and `ANTHROPIC_BASE_URL` are read by the SDK itself. Tokens come
from the response's usage, cache tokens included; cost from the price table. Errors become `ProviderError`s
whose message says how to fix the problem and never contains the key.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import anyio

from orchestration.errors import ProviderError
from orchestration.models.base import Message, ModelRequest, ModelResponse, ToolCall, Usage
from orchestration.models.pricing import PriceTable, load_prices

# `CredentialsError` (profiles, workload identity) is newer than the oldest SDK we allow; () matches nothing.
CREDENTIALS_ERRORS: tuple[type[Exception], ...] = tuple(
    e for e in (getattr(anthropic, "CredentialsError", None),) if isinstance(e, type)
)


# What a 200 with a body that is not a Messages API reply raises, in the SDK or while reading its fields.
MALFORMED: tuple[type[Exception], ...] = (
    json.JSONDecodeError,
    TypeError,
    AttributeError,
    KeyError,
    ValueError,
)


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
    """The SDK's usage as ours; a count the API did not send stays `None`."""
    return Usage(
        input_tokens=getattr(usage, "input_tokens", None),
        output_tokens=getattr(usage, "output_tokens", None),
        cache_read_tokens=getattr(usage, "cache_read_input_tokens", None),
        cache_write_tokens=getattr(usage, "cache_creation_input_tokens", None),
    )


class AnthropicProvider:
    """Runs agents on Claude. `api_key=None` and `base_url=None` defer to the SDK's environment variables."""

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
        self._max_retries = max_retries
        try:
            self.client = anthropic.AsyncAnthropic(
                api_key=api_key,
                base_url=base_url,
                http_client=http_client,
                timeout=timeout,
                max_retries=max_retries,
            )
        except CREDENTIALS_ERRORS as exc:  # without a key the SDK loads a profile, and may fail doing so
            raise ProviderError(_credentials_help(exc), kind="auth") from None

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """One Messages API call; failures become a `ProviderError` that says how to fix them."""
        if not self._has_credentials():
            # Without this the SDK raises a bare TypeError at request time, which says nothing useful.
            raise ProviderError(
                "no Anthropic credentials: set ANTHROPIC_API_KEY in the server's environment", kind="auth"
            )
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
        # A 200 whose body is not a Messages API reply (a proxy's error page, a cut-off body) is retried like
        # a 5xx, then reported as the API's failure, never as an internal error.
        for attempt in range(self._max_retries + 1):
            try:
                response = await self.client.messages.create(**kwargs)
            except anthropic.APIError as exc:
                message, kind, retryable = self._describe(exc)
                raise ProviderError(self.redact_secret(message), kind=kind, retryable=retryable) from None
            except CREDENTIALS_ERRORS as exc:  # a profile's token that could not be refreshed
                raise ProviderError(self.redact_secret(_credentials_help(exc)), kind="auth") from None
            except MALFORMED as exc:
                problem = exc
            else:
                try:
                    return self._response(response)
                except MALFORMED as exc:
                    problem = exc
            if attempt < self._max_retries:
                await anyio.sleep(0.25 * (attempt + 1))
        raise ProviderError(
            self.redact_secret(
                f"the Anthropic API answered with a malformed reply ({type(problem).__name__}: {problem})"[
                    :300
                ]
                + "; retry later, and check ANTHROPIC_BASE_URL if a proxy is in between"
            ),
            kind="server",
            retryable=True,
        )

    def _response(self, response: Any) -> ModelResponse:
        """The SDK's message as ours; raises one of `MALFORMED` when it is not shaped like a message."""
        text = "".join(b.text for b in response.content if b.type == "text")
        calls = tuple(
            ToolCall(id=b.id, name=b.name, arguments=dict(b.input))
            for b in response.content
            if b.type == "tool_use"
        )
        if not isinstance(text, str) or not isinstance(response.model, str):
            raise TypeError("the reply has no text or model")
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

    def redact_secret(self, text: str) -> str:
        """`text` with the key or token in use replaced by `[redacted]` (a proxy may echo it back)."""
        # The client's attributes, not the constructor argument: by default the SDK reads the key from the
        # environment, and that is the key that must never reach a message.
        for secret in (self._api_key, self.client.api_key, getattr(self.client, "auth_token", None)):
            if secret:
                text = text.replace(secret, "[redacted]")
        return text

    def _has_credentials(self) -> bool:
        return any(getattr(self.client, a, None) for a in ("api_key", "auth_token", "credentials"))

    def _describe(self, exc: anthropic.APIError) -> tuple[str, str, bool]:
        """(message, kind, retryable) for an SDK error; subclasses before their bases."""
        detail = _api_message(exc)
        if isinstance(exc, anthropic.AuthenticationError):
            return "the Anthropic API rejected the API key (401); check ANTHROPIC_API_KEY", "auth", False
        if isinstance(exc, anthropic.PermissionDeniedError):
            return (
                f"the API key may not use {self.model} (403: {detail}); check the key's permissions "
                "in the Anthropic Console or use another model",
                "auth",
                False,
            )
        if isinstance(exc, anthropic.NotFoundError):
            return (
                f"the Anthropic API does not know model {self.model!r} (404); fix the agent's model id",
                "bad_request",
                False,
            )
        if isinstance(exc, anthropic.RateLimitError):
            return (
                "the Anthropic API is rate limiting this key (429); retry later or lower concurrency",
                "rate_limit",
                True,
            )
        if isinstance(exc, anthropic.InternalServerError):  # every 5xx, 529 overloaded included
            status = getattr(exc, "status_code", 500)
            return f"the Anthropic API failed ({status}: {detail}); retry later", "server", True
        # APITimeoutError is an APIConnectionError, so it comes first.
        if isinstance(exc, anthropic.APITimeoutError):
            return (
                "the Anthropic API did not answer in time; retry, or raise the step timeout",
                "timeout",
                True,
            )
        if isinstance(exc, anthropic.APIConnectionError):
            return (
                "cannot reach the Anthropic API; check the network and ANTHROPIC_BASE_URL",
                "unavailable",
                True,
            )
        if isinstance(exc, anthropic.BadRequestError):
            return f"the Anthropic API refused the request (400): {detail}", "bad_request", False
        return f"the Anthropic API failed: {detail}", "error", False


def _api_message(exc: anthropic.APIError) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return str(getattr(exc, "message", "") or type(exc).__name__)


def _credentials_help(exc: Exception) -> str:
    return (
        f"the Anthropic SDK could not load credentials ({exc}); set ANTHROPIC_API_KEY, "
        "or fix ANTHROPIC_PROFILE / ANTHROPIC_CONFIG_DIR"
    )
