"""The `host` provider from the core library: which model `auto` picks, what the host is shown, and answering a
host step through `orchestration.host_steps` without MCP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestration.audit.log import AuditLog
from orchestration.context import RunContext, RunEngine
from orchestration.errors import InvalidInputError, ProviderError
from orchestration.guard import Budget
from orchestration.host_steps import HostCall, open_steps, submit_step, wait_settled
from orchestration.models.base import Message, ModelRequest, ToolCall, ToolResult, ToolSpec
from orchestration.models.host import HostProvider, host_payload
from orchestration.patterns.delegate import delegate
from orchestration.providers import DefaultProviders
from orchestration.runtime import Runtime
from policies.limits import Limits
from tests.conftest import team

pytestmark = pytest.mark.anyio

TEAM = team(h={"model": "host"}, a={"model": "auto"})


class Sampler:
    supports_tools = False

    async def sample(self, params: Any, *, run_id: str) -> Any:
        raise AssertionError("not called")


def provider_name(monkeypatch: pytest.MonkeyPatch, *, key: bool, sampler: bool) -> str:
    if key:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    else:
        monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
        monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    engine = RunEngine(
        audit=AuditLog(Path("unused.db")),
        providers=DefaultProviders(),
        sampler=Sampler() if sampler else None,
    )
    ctx = RunContext(run_id="r", config=TEAM, budget=Budget(Limits()), engine=engine)
    return ctx.provider("a").name


async def test_auto_is_anthropic_with_a_key_else_sampling_when_offered_else_the_host(monkeypatch) -> None:
    assert provider_name(monkeypatch, key=True, sampler=True) == "anthropic"
    assert provider_name(monkeypatch, key=False, sampler=True) == "sampling"
    assert provider_name(monkeypatch, key=False, sampler=False) == "host"


async def test_the_host_is_shown_exactly_what_a_provider_receives() -> None:
    request = ModelRequest(
        system="Be careful.",
        messages=(
            Message("user", "delete x"),
            Message("assistant", "ok", tool_calls=(ToolCall("c1", "files__rm", {"name": "x"}),)),
            Message("user", tool_results=(ToolResult("c1", "denied", True),)),
        ),
        tools=(ToolSpec("files__rm", "Remove a file", {"type": "object"}),),
        agent="clerk",
    )
    assert host_payload(request) == {
        "agent": "clerk",
        "instructions": "Be careful.",
        "messages": [
            {"role": "user", "text": "delete x"},
            {
                "role": "assistant",
                "text": "ok",
                "tool_calls": [{"id": "c1", "name": "files__rm", "arguments": {"name": "x"}}],
            },
            {"role": "user", "tool_results": [{"call_id": "c1", "content": "denied", "is_error": True}]},
        ],
        "tools": [{"name": "files__rm", "description": "Remove a file", "input_schema": {"type": "object"}}],
        "max_tokens": 2048,
    }


async def test_without_a_runtime_the_host_provider_says_why() -> None:
    with pytest.raises(ProviderError, match="needs a run started by the concertmaster runtime"):
        await HostProvider(None).complete(ModelRequest(system="", messages=(Message("user", "hi"),)))


async def test_a_library_caller_can_play_the_host(db: Path) -> None:
    async with Runtime(TEAM, AuditLog(db)) as rt:
        run_id = await rt.start_run("delegate", "hi", delegate("h", "hi"))
        await wait_settled(rt, run_id, 30)
        (step,) = open_steps(rt.pending, run_id)
        assert step.payload["messages"] == [{"role": "user", "text": "hi"}]
        with pytest.raises(InvalidInputError, match="offered: none"):
            await submit_step(rt.pending, rt.reader, run_id, step.id, "x", [HostCall("rm", {})], client="lib")
        step.payload["tools"] = [{"name": "rm"}]  # as if the step offered a tool: the size limits still hold
        big = HostCall("rm", {"text": "x" * 100_001})
        with pytest.raises(InvalidInputError, match="over the limit of 100,000; pass less per call"):
            await submit_step(rt.pending, rt.reader, run_id, step.id, "x", [big], client="lib")
        with pytest.raises(InvalidInputError, match="33 tool calls in one answer, over the limit of 32"):
            await submit_step(
                rt.pending, rt.reader, run_id, step.id, "x", [HostCall("rm", {})] * 33, client="lib"
            )
        with pytest.raises(InvalidInputError, match="100,001 characters, over the limit of 100,000"):
            await submit_step(rt.pending, rt.reader, run_id, step.id, "x" * 100_001, client="lib")
        step.payload["tools"] = []
        await submit_step(rt.pending, rt.reader, run_id, step.id, "hello", client="lib")
        with anyio.fail_after(30):
            run = await rt.wait(run_id, 30)
    assert (run["status"], run["output"]) == ("succeeded", "hello")
