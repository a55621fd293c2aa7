"""The Anthropic provider against the real `anthropic` SDK, its HTTP answered locally (no network)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest

from orchestration.errors import ProviderError
from orchestration.models.anthropic import AnthropicProvider
from orchestration.models.base import Message, ModelRequest, ToolCall, ToolResult, ToolSpec, Usage
from orchestration.models.pricing import load_prices

pytestmark = pytest.mark.anyio

KEY = "sk-ant-test-" + "k" * 30


def reply(
    content: list[dict[str, Any]],
    *,
    model: str = "claude-sonnet-4-5-20250929",
    stop: str = "end_turn",
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 1000, "output_tokens": 200},
    }


class Server:
    """A local stand-in for the Messages API: records requests, answers from a queue."""

    def __init__(self, *answers: tuple[int, dict[str, Any]] | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx2.Request] = []

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, body = answer
        return httpx2.Response(status, json=body, headers={"request-id": "req_1"})

    def body(self, i: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[i].content)


def provider(server: Server, model: str = "claude-sonnet-4-5-20250929", **kw: Any) -> AnthropicProvider:
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(server.handler))
    return AnthropicProvider(model, api_key=KEY, http_client=client, max_retries=0, **kw)


REQUEST = ModelRequest(system="You are terse.", messages=(Message("user", "hi"),), max_tokens=300, agent="a")


async def test_a_text_reply_with_usage_and_cost() -> None:
    server = Server(
        (
            200,
            reply(
                [{"type": "text", "text": "hello"}],
                usage={
                    "input_tokens": 1000,
                    "output_tokens": 200,
                    "cache_read_input_tokens": 500,
                    "cache_creation_input_tokens": 100,
                },
            ),
        )
    )
    response = await provider(server).complete(REQUEST)
    assert response.text == "hello" and response.provider == "anthropic"
    assert response.model == "claude-sonnet-4-5-20250929" and response.stop_reason == "end_turn"
    assert response.usage == Usage(1000, 200, 500, 100)
    # 1000*3 + 200*15 + 500*0.3 + 100*3.75 per million
    assert response.cost_usd == pytest.approx((3000 + 3000 + 150 + 375) / 1e6)
    sent = server.body()
    assert sent["model"] == "claude-sonnet-4-5-20250929" and sent["system"] == "You are terse."
    assert sent["max_tokens"] == 300 and sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    ]
    headers = server.requests[0].headers
    assert KEY in (headers.get("x-api-key") or headers.get("authorization") or "")


async def test_tool_use_is_parsed_and_results_are_sent_back() -> None:
    server = Server(
        (
            200,
            reply(
                [
                    {"type": "text", "text": "let me look"},
                    {"type": "tool_use", "id": "tu_1", "name": "files__read", "input": {"name": "a"}},
                ],
                stop="tool_use",
            ),
        )
    )
    tools = (
        ToolSpec(
            "files__read", "Read a file", {"type": "object", "properties": {"name": {"type": "string"}}}
        ),
    )
    response = await provider(server).complete(ModelRequest("s", (Message("user", "read a"),), tools))
    assert response.tool_calls == (ToolCall("tu_1", "files__read", {"name": "a"}),)
    assert server.body()["tools"][0]["name"] == "files__read"
    follow_up = ModelRequest(
        "s",
        (
            Message("user", "read a"),
            Message("assistant", "let me look", tool_calls=response.tool_calls),
            Message("user", tool_results=(ToolResult("tu_1", "contents", is_error=False),)),
        ),
    )
    server.answers.append((200, reply([{"type": "text", "text": "done"}])))
    await provider(server).complete(follow_up)
    messages = server.body()["messages"]
    assert messages[1]["content"][1] == {
        "type": "tool_use",
        "id": "tu_1",
        "name": "files__read",
        "input": {"name": "a"},
    }
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "tu_1", "content": "contents", "is_error": False}
    ]


async def test_an_unknown_model_costs_null() -> None:
    server = Server((200, reply([{"type": "text", "text": "x"}], model="claude-future-9")))
    response = await provider(server, model="claude-future-9").complete(REQUEST)
    assert response.cost_usd is None and response.usage.input_tokens == 1000


def error(status: int, kind: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"type": "error", "error": {"type": kind, "message": message}}


@pytest.mark.parametrize(
    ("answer", "kind", "fragment"),
    [
        (error(401, "authentication_error", f"invalid x-api-key {KEY}"), "auth", "check ANTHROPIC_API_KEY"),
        (error(403, "permission_error", "no access"), "auth", "403"),
        (error(404, "not_found_error", "model: nope"), "bad_request", "does not know model"),
        (error(429, "rate_limit_error", "slow down"), "rate_limit", "429"),
        (error(500, "api_error", "boom"), "server", "500"),
        (error(529, "overloaded_error", "overloaded"), "server", "529"),
        (error(400, "invalid_request_error", "max_tokens too large"), "bad_request", "max_tokens too large"),
        (httpx2.ReadTimeout("slow"), "timeout", "did not answer in time"),
        (httpx2.ConnectError("refused"), "unavailable", "ANTHROPIC_BASE_URL"),
    ],
)
async def test_api_errors_become_provider_errors_without_the_key(
    answer: Any, kind: str, fragment: str
) -> None:
    with pytest.raises(ProviderError) as info:
        await provider(Server(answer)).complete(REQUEST)
    assert info.value.kind == kind and fragment in info.value.message
    assert KEY not in info.value.message


async def test_anthropic_base_url_is_honoured(monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/proxy")
    server = Server((200, reply([{"type": "text", "text": "via proxy"}])))
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(server.handler))
    response = await AnthropicProvider(
        "claude-haiku-4-5", api_key=KEY, http_client=client, max_retries=0
    ).complete(REQUEST)
    assert response.text == "via proxy"
    assert str(server.requests[0].url).startswith("http://127.0.0.1:9/proxy/")


def test_prices_longest_prefix_and_override(tmp_path: Path, monkeypatch) -> None:
    table = load_prices()
    assert table.price("claude-opus-4-5-20251101").input == 5.0  # not the claude-opus-4 row
    assert table.price("claude-opus-4-20250514").input == 15.0
    assert table.cost("gpt-5", Usage(10, 10)) is None
    assert table.cost("claude-haiku-4-5", Usage(None, 10)) is None
    override = tmp_path / "prices.toml"
    override.write_text('["claude-haiku-4-5"]\ninput = 2.0\noutput = 4.0\ncache_write = 0\ncache_read = 0\n')
    monkeypatch.setenv("CONCERTMASTER_PRICES", str(override))
    assert load_prices().cost("claude-haiku-4-5", Usage(1_000_000, 0)) == 2.0
