"""The Anthropic provider against the real `anthropic` SDK, its HTTP answered locally (no network)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest

from orchestration.errors import ConfigError, ProviderError
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
            Message(
                "user",
                tool_results=(
                    ToolResult("tu_1", "contents", is_error=False),
                    ToolResult("tu_2", "denied by policy", is_error=True),
                ),
            ),
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
    assert messages[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "tu_1", "content": "contents", "is_error": False},
            {"type": "tool_result", "tool_use_id": "tu_2", "content": "denied by policy", "is_error": True},
        ],
    }


async def test_an_unknown_model_costs_null() -> None:
    server = Server((200, reply([{"type": "text", "text": "x"}], model="claude-future-9")))
    response = await provider(server, model="claude-future-9").complete(REQUEST)
    assert response.cost_usd is None and response.usage.input_tokens == 1000


def error(status: int, kind: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"type": "error", "error": {"type": kind, "message": message}}


@pytest.mark.parametrize(
    ("answer", "kind", "retryable", "fragment"),
    [
        (
            error(401, "authentication_error", f"invalid x-api-key {KEY}"),
            "auth",
            False,
            "check ANTHROPIC_API_KEY",
        ),
        (error(403, "permission_error", "no access"), "auth", False, "403"),
        (error(404, "not_found_error", "model: nope"), "bad_request", False, "does not know model"),
        (error(429, "rate_limit_error", "slow down"), "rate_limit", True, "429"),
        (error(500, "api_error", "boom"), "server", True, "500"),
        (error(529, "overloaded_error", "overloaded"), "server", True, "529"),
        (
            error(400, "invalid_request_error", "max_tokens too large"),
            "bad_request",
            False,
            "max_tokens too large",
        ),
        (httpx2.ReadTimeout("slow"), "timeout", True, "did not answer in time"),
        (httpx2.ConnectError("refused"), "unavailable", True, "ANTHROPIC_BASE_URL"),
    ],
)
async def test_api_errors_become_provider_errors_without_the_key(
    answer: Any, kind: str, retryable: bool, fragment: str
) -> None:
    with pytest.raises(ProviderError) as info:
        await provider(Server(answer)).complete(REQUEST)
    assert info.value.kind == kind and info.value.retryable is retryable
    assert fragment in info.value.message
    assert KEY not in str(info.value) and KEY not in repr(info.value.args)


async def test_a_404_names_the_unknown_model() -> None:
    server = Server(error(404, "not_found_error", "model: claude-nope"))
    with pytest.raises(ProviderError) as info:
        await provider(server, model="claude-nope").complete(REQUEST)
    assert "'claude-nope'" in info.value.message and "model id" in info.value.message


@pytest.mark.parametrize("status", [400, 500])
async def test_a_key_echoed_by_the_api_is_redacted(status: int) -> None:
    server = Server(error(status, "api_error", f"bad header x-api-key: {KEY}"))
    with pytest.raises(ProviderError) as info:
        await provider(server).complete(REQUEST)
    assert "x-api-key: [redacted]" in info.value.message
    assert KEY not in str(info.value) and KEY not in repr(info.value.args)


async def test_a_key_from_the_environment_is_redacted_too(monkeypatch) -> None:
    # The server builds AnthropicProvider(model): the SDK reads the key from the environment.
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    server = Server(error(400, "invalid_request_error", f"echo {KEY}"))
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(server.handler))
    with pytest.raises(ProviderError) as info:
        await AnthropicProvider("claude-haiku-4-5", http_client=client, max_retries=0).complete(REQUEST)
    headers = server.requests[0].headers
    assert KEY in (headers.get("x-api-key") or headers.get("authorization") or "")
    assert KEY not in str(info.value) and "[redacted]" in info.value.message


def no_credentials_in(monkeypatch, home: Path) -> None:
    """An environment with no Anthropic key, token, profile or workload identity."""
    for var in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_PROFILE",
        "ANTHROPIC_CONFIG_DIR",
        "ANTHROPIC_IDENTITY_TOKEN",
        "ANTHROPIC_IDENTITY_TOKEN_FILE",
        "ANTHROPIC_FEDERATION_RULE_ID",
        "ANTHROPIC_ORGANIZATION_ID",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))  # no ~/.config/anthropic profile either


async def test_no_credentials_at_all_says_which_variable_to_set(tmp_path: Path, monkeypatch) -> None:
    no_credentials_in(monkeypatch, tmp_path)
    server = Server()
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(server.handler))
    with pytest.raises(ProviderError) as info:
        await AnthropicProvider("claude-haiku-4-5", http_client=client, max_retries=0).complete(REQUEST)
    assert info.value.kind == "auth" and "ANTHROPIC_API_KEY" in info.value.message
    assert server.requests == []


def test_a_broken_profile_is_an_auth_error(tmp_path: Path, monkeypatch) -> None:
    no_credentials_in(monkeypatch, tmp_path)
    monkeypatch.setenv("ANTHROPIC_CONFIG_DIR", str(tmp_path / "empty"))  # set, so the SDK insists on it
    with pytest.raises(ProviderError) as info:
        AnthropicProvider("claude-haiku-4-5")
    assert info.value.kind == "auth" and "ANTHROPIC_CONFIG_DIR" in info.value.message


async def test_anthropic_base_url_is_honoured(monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/proxy")
    server = Server((200, reply([{"type": "text", "text": "via proxy"}])))
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(server.handler))
    response = await AnthropicProvider(
        "claude-haiku-4-5", api_key=KEY, http_client=client, max_retries=0
    ).complete(REQUEST)
    assert response.text == "via proxy"
    assert str(server.requests[0].url) == "http://127.0.0.1:9/proxy/v1/messages"


# --- the price table ---------------------------------------------------------------------------------------


def test_the_longest_prefix_wins() -> None:
    table = load_prices()
    assert table.price("claude-opus-4-5-20251101").input == 5.0  # not the claude-opus-4 row
    assert table.price("claude-opus-4-1-20250805").input == 15.0
    assert table.price("claude-opus-4-20250514").input == 15.0
    assert table.price("claude-sonnet-4-5-20250929") == table.price("claude-sonnet-4-5")
    assert table.price("claude-3-5-haiku-20241022").output == 4.0


def test_unknown_models_and_unreported_tokens_cost_none() -> None:
    table = load_prices()
    assert table.price("gpt-5") is None and table.cost("gpt-5", Usage(10, 10)) is None
    assert table.cost("claude-haiku-4-5", Usage(None, 10)) is None
    assert table.cost("claude-haiku-4-5", Usage(10, None)) is None


def test_cost_counts_cache_tokens_and_is_rounded() -> None:
    table = load_prices()
    # 7*1 + 3*5 + 11*0.1 + 13*1.25 = 39.35 USD per million
    assert table.cost("claude-haiku-4-5-20251001", Usage(7, 3, 11, 13)) == round(39.35 / 1e6, 8)
    assert table.cost("claude-haiku-4-5", Usage(1, 0)) == 0.000001


def write(path: Path, model: str, input_price: float) -> Path:
    path.write_text(f'["{model}"]\ninput = {input_price}\noutput = 4.0\ncache_write = 0\ncache_read = 0\n')
    return path


def test_the_env_override_is_merged_over_the_packaged_table(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CONCERTMASTER_PRICES", str(write(tmp_path / "p.toml", "claude-haiku-4-5", 2.0)))
    table = load_prices()
    assert table.cost("claude-haiku-4-5", Usage(1_000_000, 0)) == 2.0  # replaced
    assert table.price("claude-opus-4-5") is not None  # kept


def test_an_explicit_path_replaces_the_packaged_table(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("CONCERTMASTER_PRICES", raising=False)
    table = load_prices(write(tmp_path / "p.toml", "my-model", 1.0))
    assert table.price("my-model-2") is not None and table.price("claude-opus-4-5") is None


def test_an_invalid_price_file_is_a_config_error(tmp_path: Path, monkeypatch) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('["claude-x"]\ninput = 1.0\n')
    monkeypatch.setenv("CONCERTMASTER_PRICES", str(bad))
    with pytest.raises(ConfigError, match="output"):
        load_prices()


class Malformed(Server):
    """Answers 200 with a body that is not a Messages API reply, then from the queue."""

    def __init__(self, bodies: list[bytes], *answers: tuple[int, dict[str, Any]]) -> None:
        super().__init__(*answers)
        self.bodies = bodies

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        if self.bodies:
            self.requests.append(request)
            return httpx2.Response(
                200, content=self.bodies.pop(0), headers={"content-type": "application/json"}
            )
        return super().handler(request)


@pytest.mark.parametrize(
    "body", [b"{not json", b"", b"[]", b'{"id": "msg_1"}', b'{"content": "x", "model": 1}']
)
async def test_a_malformed_200_is_a_clear_retryable_provider_error(body: bytes) -> None:
    with pytest.raises(ProviderError) as info:
        await provider(Malformed([body])).complete(REQUEST)
    error = info.value
    assert error.kind == "server" and error.retryable
    assert error.message.startswith("the Anthropic API answered with a malformed reply (")
    assert "retry later" in error.message and KEY not in error.message


async def test_a_malformed_200_is_retried_like_a_server_error() -> None:
    server = Malformed([b"{not json"], (200, reply([{"type": "text", "text": "second try"}])))
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(server.handler))
    response = await AnthropicProvider("m", api_key=KEY, http_client=client, max_retries=1).complete(REQUEST)
    assert response.text == "second try" and len(server.requests) == 2
