"""Agents on the client's model (`sampling`) on Temporal: the workflow asks the server that started the run, on
its own queue, which asks the client through its session (both protocol eras)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from server.app import build_server
from server.settings import Settings
from tests.server.test_delegate import ERAS, TEAM, refuse, rows, sampling_answer
from tests.temporal.conftest import on_temporal, worker

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", ERAS)
async def test_a_sampling_agent_runs_on_the_clients_model(db: Path, temporal_address: str, mode: str) -> None:
    config = on_temporal(TEAM, temporal_address)
    callback = sampling_answer(usage={"inputTokens": 11, "outputTokens": 7})
    async with (
        worker(config),
        Client(
            build_server(Settings(db=db, default_wait_seconds=30), config=config),
            mode=mode,
            sampling_callback=callback,
        ) as client,
    ):
        result = await client.call_tool("delegate_task", {"agent": "sampler", "task": "say hi"})
        run = result.structured_content
        while not run["done"]:
            run = (
                await client.call_tool("get_run", {"run_id": run["run_id"], "wait_seconds": 30})
            ).structured_content
    assert run["status"] == "succeeded" and run["output"] == "sampled answer", run
    assert (run["usage"]["input_tokens"], run["usage"]["output_tokens"]) == (11, 7)
    (params,) = callback.calls
    assert params.system_prompt == "Answer briefly." and params.messages[-1].content.text == "say hi"
    (step,) = rows(db, "select provider, model from steps where run_id = ?", run["run_id"])
    assert tuple(step) == ("sampling", "client-model-x")


async def test_a_refused_sampling_request_fails_the_step_with_the_reason(
    db: Path, temporal_address: str
) -> None:
    config = on_temporal(TEAM, temporal_address)
    async with (
        worker(config),
        Client(
            build_server(Settings(db=db, default_wait_seconds=30), config=config),
            mode="legacy",
            sampling_callback=refuse,
        ) as client,
    ):
        run = (await client.call_tool("delegate_task", {"agent": "sampler", "task": "hi"})).structured_content
    assert run["status"] == "failed" and "user rejected sampling" in run["error"], run


async def test_without_sampling_a_sampling_agent_is_refused_at_start(db: Path, temporal_address: str) -> None:
    config = on_temporal(TEAM, temporal_address)
    async with Client(build_server(Settings(db=db), config=config), mode="legacy") as client:
        result = await client.call_tool("delegate_task", {"agent": "sampler", "task": "hi"})
    assert result.is_error and "did not offer MCP sampling" in result.content[0].text
