"""The one small interface every model provider implements, and the plain data it speaks.

A provider turns a `ModelRequest` (system prompt, messages, tools) into a `ModelResponse` (text, tool calls,
usage). Providers never touch the audit: the step runner records what they return.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model may call."""

    name: str
    """Name the model uses to call the tool."""
    description: str
    """What the tool does, shown to the model."""
    input_schema: dict[str, Any]
    """JSON schema of the tool's arguments."""


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model asked for."""

    id: str
    """Provider-assigned id, echoed back with the result."""
    name: str
    """The tool's name."""
    arguments: dict[str, Any]
    """The arguments, already parsed from JSON."""


@dataclass(frozen=True)
class ToolResult:
    """The result of a tool call, sent back to the model."""

    call_id: str
    """The `ToolCall.id` this answers."""
    content: str
    """Text of the result."""
    is_error: bool = False
    """True when the tool failed or was refused."""


@dataclass(frozen=True)
class Message:
    """One message of the conversation a model sees."""

    role: Literal["user", "assistant"]
    """Who said it."""
    text: str = ""
    """Plain text content."""
    tool_calls: tuple[ToolCall, ...] = ()
    """Tool calls made by the assistant in this message."""
    tool_results: tuple[ToolResult, ...] = ()
    """Tool results sent by the user side in this message."""


@dataclass(frozen=True)
class ModelRequest:
    """Everything a provider needs for one model call."""

    system: str
    """The agent's instructions."""
    messages: tuple[Message, ...]
    """The conversation so far, oldest first; the last one is from the user."""
    tools: tuple[ToolSpec, ...] = ()
    """Tools the model may call."""
    max_tokens: int = 2048
    """Upper bound on the reply's length in tokens."""
    agent: str = ""
    """Name of the agent making the call (for scripted replies and logs)."""
    run_id: str = ""
    """The run this call belongs to (the sampling provider routes by it)."""
    step_id: str = ""
    """The audit step this call belongs to (the host provider links its pending request to it)."""


@dataclass(frozen=True)
class Usage:
    """Tokens of one model call. `None` means the provider did not say: never invented."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return sum(
            t or 0
            for t in (self.input_tokens, self.output_tokens, self.cache_read_tokens, self.cache_write_tokens)
        )


@dataclass(frozen=True)
class ModelResponse:
    """What a provider returns for one call."""

    text: str
    """The reply's text (may be empty when the model only called tools)."""
    model: str
    """The model that actually answered, as the provider names it."""
    provider: str
    """`anthropic`, `sampling`, `host` or `scripted`."""
    usage: Usage = field(default_factory=Usage)
    """Tokens used, as reported."""
    cost_usd: float | None = None
    """Cost from the price table; `None` when the model's price is unknown or tokens were not reported."""
    tool_calls: tuple[ToolCall, ...] = ()
    """Tool calls the model asked for."""
    stop_reason: str | None = None
    """Why the model stopped (end_turn, tool_use, max_tokens, ...)."""


@runtime_checkable
class ModelProvider(Protocol):
    """A source of model replies."""

    name: str
    """`anthropic`, `sampling`, `host` or `scripted`."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Answer one request, or raise `ProviderError` with a message that says how to fix it."""
        ...


@runtime_checkable
class Replayable(Protocol):
    """A provider with state that follows its replies (the scripted model's position in its script)."""

    def replayed(self, response: ModelResponse) -> None:
        """`response` was replayed from the audit instead of asked for: move past it."""
