"""delegate_task and run control through a real MCP client, in-process, in both protocol eras."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_types import CreateMessageResult, ErrorData, TextContent

from server.app import build_server
from server.settings import Settings
from tests.conftest import team

pytestmark = pytest.mark.anyio

ERAS = ["legacy", "auto"]  # 2025-11-25 handshake, and the SDK's default negotiation (2026-07-28)

TEAM = team(
    scripted={
        "model": "scripted",
        "scripted": {"replies": ["scripted reply"], "input_tokens": 5, "output_tokens": 9},
    },
    slow={"model": "scripted", "scripted": {"latency_ms": 1500}},
    sampler={"model": "sampling", "instructions": "Answer briefly."},
    auto={"model": "auto"},
)


def sampling_answer(text: str = "sampled answer", usage: dict[str, int] | None = None):
    calls: list[Any] = []

    async def callback(context: Any, params: Any) -> CreateMessageResult | ErrorData:
        calls.append(params)
        meta = {"usage": usage} if usage else None
        return CreateMessageResult(
            role="assistant", content=TextContent(type="text", text=text), model="client-model-x", _meta=meta
        )

    callback.calls = calls  # type: ignore[attr-defined]
    return callback


async def refuse(context: Any, params: Any) -> ErrorData:
    return ErrorData(code=-1, message="user rejected sampling")


def rows(db: Path, sql: str, *params: Any) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def server(db: Path):
    return build_server(Settings(db=db, default_wait_seconds=10), config=TEAM)


async def test_tools_are_listed_with_schemas_and_annotations(db: Path) -> None:
    async with Client(server(db)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert {"list_agents", "delegate_task", "get_run", "list_runs", "cancel_run"} <= set(tools)
    delegate = tools["delegate_task"]
    assert delegate.output_schema is not None and "run_id" in delegate.output_schema["properties"]
    assert delegate.input_schema["required"] == ["agent", "task"]
    assert delegate.annotations is not None and delegate.annotations.read_only_hint is False
    assert tools["get_run"].annotations.read_only_hint is True
    assert tools["cancel_run"].annotations.destructive_hint is True


@pytest.mark.parametrize("mode", ERAS)
async def test_delegate_to_scripted_agent_records_run_steps_and_events(db: Path, mode: str) -> None:
    async with Client(server(db), mode=mode) as client:
        result = await client.call_tool("delegate_task", {"agent": "scripted", "task": "summarise X"})
    assert not result.is_error
    run = result.structured_content
    assert run["status"] == "succeeded" and run["done"] is True
    assert run["output"] == "scripted reply"
    assert run["usage"]["input_tokens"] == 5 and run["usage"]["output_tokens"] == 9
    assert run["usage"]["latency_ms"] is not None
    (row,) = rows(db, "select * from runs where id = ?", run["run_id"])
    assert (row["status"], row["pattern"], row["output"]) == ("succeeded", "delegate", "scripted reply")
    (step,) = rows(db, "select * from steps where run_id = ?", run["run_id"])
    assert (step["agent"], step["provider"], step["model"], step["status"]) == (
        "scripted",
        "scripted",
        "scripted",
        "succeeded",
    )
    kinds = [
        r["kind"] for r in rows(db, "select kind from events where run_id = ? order by seq", run["run_id"])
    ]
    assert kinds == ["run_started", "step_started", "model_called", "step_finished", "run_finished"]


@pytest.mark.parametrize("mode", ERAS)
async def test_sampling_agent_runs_on_the_clients_model(db: Path, mode: str) -> None:
    callback = sampling_answer(usage={"inputTokens": 11, "outputTokens": 7})
    async with Client(server(db), mode=mode, sampling_callback=callback) as client:
        result = await client.call_tool("delegate_task", {"agent": "sampler", "task": "say hi"})
    run = result.structured_content
    assert run["status"] == "succeeded", run
    assert run["output"] == "sampled answer"
    assert (run["usage"]["input_tokens"], run["usage"]["output_tokens"]) == (11, 7)
    assert run["usage"]["cost_usd"] is None  # the client's price is unknown: never invented
    (params,) = callback.calls
    assert params.system_prompt == "Answer briefly."
    assert params.messages[-1].content.text == "say hi"
    (step,) = rows(db, "select provider, model from steps where run_id = ?", run["run_id"])
    assert tuple(step) == ("sampling", "client-model-x")


@pytest.mark.parametrize("mode", ERAS)
async def test_sampling_without_reported_usage_records_null_tokens(db: Path, mode: str) -> None:
    async with Client(server(db), mode=mode, sampling_callback=sampling_answer()) as client:
        run = (await client.call_tool("delegate_task", {"agent": "sampler", "task": "hi"})).structured_content
    assert run["usage"]["input_tokens"] is None and run["usage"]["output_tokens"] is None
    (call,) = rows(db, "select input_tokens, output_tokens from model_calls where run_id = ?", run["run_id"])
    assert tuple(call) == (None, None)


async def test_modern_sampling_request_rides_the_next_get_run(db: Path) -> None:
    """On 2026-07-28 a run that needs the client's model after delegate_task returned waits for get_run."""
    callback = sampling_answer()
    async with Client(server(db), sampling_callback=callback) as client:
        first = (
            await client.call_tool("delegate_task", {"agent": "sampler", "task": "later", "wait_seconds": 0})
        ).structured_content
        assert first["done"] is False and first["next"]
        followed = await client.call_tool("get_run", {"run_id": first["run_id"], "wait_seconds": 10})
    assert followed.structured_content["status"] == "succeeded"
    assert followed.structured_content["output"] == "sampled answer"
    assert len(callback.calls) == 1
    (req,) = rows(db, "select kind, status, channel from pending_requests where run_id = ?", first["run_id"])
    assert tuple(req) == ("sampling", "resolved", "input_required")


async def test_legacy_client_refusing_sampling_fails_the_run_with_the_reason(db: Path) -> None:
    async with Client(server(db), mode="legacy", sampling_callback=refuse) as client:
        run = (await client.call_tool("delegate_task", {"agent": "sampler", "task": "hi"})).structured_content
    assert run["status"] == "failed"
    assert "refused the sampling request" in run["error"] and "ANTHROPIC_API_KEY" in run["error"]
    (step,) = rows(db, "select status, error from steps where run_id = ?", run["run_id"])
    assert step["status"] == "failed" and "refused" in step["error"]


async def test_get_run_follows_a_run_past_wait_seconds(db: Path) -> None:
    async with Client(server(db)) as client:
        first = await client.call_tool("delegate_task", {"agent": "slow", "task": "t", "wait_seconds": 0.1})
        assert first.structured_content["status"] == "running"
        assert first.structured_content["done"] is False
        run_id = first.structured_content["run_id"]
        peek = (await client.call_tool("get_run", {"run_id": run_id})).structured_content
        assert peek["status"] == "running"
        done = (await client.call_tool("get_run", {"run_id": run_id, "wait_seconds": 10})).structured_content
        listed = (await client.call_tool("list_runs", {"limit": 5})).structured_content["runs"]
    assert done["status"] == "succeeded" and done["done"] is True
    assert listed[0]["run_id"] == run_id and listed[0]["agents"] == "slow"


async def test_progress_notifications_are_sent_while_waiting(db: Path) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with Client(server(db), mode="legacy") as client:
        await client.call_tool("delegate_task", {"agent": "slow", "task": "t"}, progress_callback=on_progress)
    values = [p for p, _, _ in seen]
    assert values == sorted(set(values)) and values[-1] == 1  # strictly increasing, one step
    assert all(total == 1 for _, total, _ in seen)
    assert seen[0][2].startswith("slow is working") and seen[-1][2].startswith("slow finished")
    assert "tokens" in seen[-1][2] and "so far" in seen[-1][2]


async def test_cancel_run_stops_it_and_keeps_what_was_recorded(db: Path) -> None:
    async with Client(server(db)) as client:
        started = await client.call_tool("delegate_task", {"agent": "slow", "task": "t", "wait_seconds": 0.2})
        run_id = started.structured_content["run_id"]
        cancelled = (await client.call_tool("cancel_run", {"run_id": run_id})).structured_content
        again = (await client.call_tool("cancel_run", {"run_id": run_id})).structured_content
    assert cancelled["status"] == "cancelled" and cancelled["done"] is True
    assert again["status"] == "cancelled"
    (step,) = rows(db, "select status from steps where run_id = ?", run_id)
    assert step["status"] == "cancelled"
    assert [r["kind"] for r in rows(db, "select kind from events where run_id = ? order by seq", run_id)][
        -1
    ] == ("run_finished")


async def test_run_is_readable_as_a_resource(db: Path) -> None:
    async with Client(server(db)) as client:
        run = (await client.call_tool("delegate_task", {"agent": "scripted", "task": "t"})).structured_content
        resource = await client.read_resource(f"concertmaster://runs/{run['run_id']}")
    text = resource.contents[0].text
    assert run["run_id"] in text and "model_called" in text
