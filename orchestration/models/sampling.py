"""The `sampling` provider: the connected client's own model, through MCP sampling.

The provider only converts between our request/response and MCP's `sampling/createMessage`. *How* the
request reaches the client is a `Sampler`, handed over by the server for the connection that started the run:
a mid-call server-to-client request on 2025-era connections, or a pending request that rides the next tool
call as an `input_required` result on 2026-07-28 connections. Sampling is deprecated from 2026-07-28
(SEP-2577), so it is the fallback; the Anthropic API is the main path.
"""

from __future__ import annotations

from typing import Any, Protocol

from mcp_types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    CreateMessageResultWithTools,
    SamplingMessage,
    TextContent,
    Tool,
    ToolResultContent,
    ToolUseContent,
)

from orchestration.models.base import ModelRequest, ModelResponse, ToolCall, Usage


class Sampler(Protocol):
    """Sends one sampling request to the client and returns its answer (or raises `ProviderError`)."""

    supports_tools: bool
    """The client declared `sampling.tools`: tools and tool calls can be sent as such."""

    async def sample(
        self, params: CreateMessageRequestParams, *, run_id: str
    ) -> CreateMessageResult | CreateMessageResultWithTools: ...


def to_sampling_params(request: ModelRequest, *, with_tools: bool = False) -> CreateMessageRequestParams:
    """Our request as MCP sampling parameters. With `with_tools` (the client declared `sampling.tools`) tools,
    tool calls and tool results travel as such; otherwise tool results are folded into text."""
    messages = []
    for message in request.messages:
        if with_tools and message.tool_results:
            content: Any = [
                ToolResultContent(
                    type="tool_result",
                    tool_use_id=r.call_id,
                    is_error=r.is_error,
                    content=[TextContent(type="text", text=r.content)],
                )
                for r in message.tool_results
            ]
        elif with_tools and message.tool_calls:
            content = [TextContent(type="text", text=message.text)] if message.text else []
            content += [
                ToolUseContent(type="tool_use", id=c.id, name=c.name, input=c.arguments)
                for c in message.tool_calls
            ]
        else:
            text = message.text
            if message.tool_results:
                text = "\n".join(
                    [text, *(f"[tool result {r.call_id}] {r.content}" for r in message.tool_results)]
                )
            content = TextContent(type="text", text=text or "(empty)")
        messages.append(SamplingMessage(role=message.role, content=content))
    tools = None
    if with_tools and request.tools:
        tools = [
            Tool(name=t.name, description=t.description, input_schema=t.input_schema) for t in request.tools
        ]
    return CreateMessageRequestParams(
        messages=messages,
        system_prompt=request.system,
        max_tokens=request.max_tokens,
        include_context="none",
        metadata={"agent": request.agent, "run_id": request.run_id},
        tools=tools,
    )


def reported_usage(meta: dict[str, Any] | None) -> Usage:
    """Tokens the client reported in the result's `_meta` (`usage` object), else unknown (`None`)."""
    usage = (meta or {}).get("usage")
    if not isinstance(usage, dict):
        return Usage()

    def pick(*names: str) -> int | None:
        for name in names:
            value = usage.get(name)
            if isinstance(value, int) and value >= 0:
                return value
        return None

    return Usage(
        input_tokens=pick("inputTokens", "input_tokens", "promptTokens"),
        output_tokens=pick("outputTokens", "output_tokens", "completionTokens"),
    )


def from_sampling_result(result: CreateMessageResult | CreateMessageResultWithTools) -> ModelResponse:
    """The client's answer as our response; the model is whatever the client says it used."""
    content = result.content if isinstance(result.content, list) else [result.content]
    text = "".join(block.text for block in content if isinstance(block, TextContent))
    calls = tuple(
        ToolCall(id=b.id, name=b.name, arguments=dict(b.input))
        for b in content
        if isinstance(b, ToolUseContent)
    )
    return ModelResponse(
        text=text,
        model=result.model or "unknown",
        provider="sampling",
        usage=reported_usage(result.meta),
        cost_usd=None,  # the client's model and price are unknown to us: never invented
        tool_calls=calls,
        stop_reason=result.stop_reason,
    )


class SamplingProvider:
    """Runs an agent on the client's model."""

    name = "sampling"

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    async def complete(self, request: ModelRequest) -> ModelResponse:
        with_tools = bool(request.tools) and getattr(self.sampler, "supports_tools", False)
        result = await self.sampler.sample(
            to_sampling_params(request, with_tools=with_tools), run_id=request.run_id
        )
        return from_sampling_result(result)
