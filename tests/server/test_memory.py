"""Runs followed through the MCP server leave nothing per run or per call behind: the runtime's per-run structures
are back to idle and no run context, engine or progress follower is alive (counts; `bench/memory.py` measures
the bytes)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from anyio import wait_all_tasks_blocked
from mcp import Client

from orchestration.config import TeamConfig
from orchestration.context import RunContext, RunEngine
from server.app import AppState, build_server
from server.progress import RunProgress
from server.settings import Settings
from tests.conftest import team
from tests.orchestration.test_memory import IDLE, per_run_state

pytestmark = pytest.mark.anyio

TEAM = team(
    a={"model": "scripted"},
    b={"model": "scripted"},
    slow={"model": "scripted", "scripted": {"latency_ms": 60_000}},
)


def server_with_state(db: Path, config: TeamConfig = TEAM) -> tuple[Any, list[AppState]]:
    """The server, and a list that receives its state (the runtime) when a client connects."""
    server = build_server(Settings(db=db, default_wait_seconds=30), config=config)
    lowlevel = server._lowlevel_server
    inner = lowlevel.lifespan
    states: list[AppState] = []

    @asynccontextmanager
    async def capture(app: Any) -> AsyncIterator[Any]:
        async with inner(app) as state:
            states.append(state)
            yield state

    lowlevel.lifespan = capture
    return server, states


async def live_objects() -> list[object]:
    await wait_all_tasks_blocked()
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, RunContext | RunEngine | RunProgress)]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_followed_runs_leave_no_per_run_state_in_the_server(db: Path, mode: str) -> None:
    server, states = server_with_state(db)
    async with Client(server, mode=mode) as client:
        for _ in range(5):
            result = await client.call_tool("delegate_task", {"agent": "a", "task": "t"})
            assert result.structured_content["status"] == "succeeded"
        for _ in range(3):  # returned at once, then followed with get_run
            started = await client.call_tool("delegate_task", {"agent": "a", "task": "t", "wait_seconds": 0})
            run_id = started.structured_content["run_id"]
            followed = await client.call_tool("get_run", {"run_id": run_id, "wait_seconds": 10})
            assert followed.structured_content["done"]
        fan = await client.call_tool("run_concurrent", {"agents": ["a", "b"], "task": "t"})
        assert fan.structured_content["status"] == "succeeded"
        slow = await client.call_tool("delegate_task", {"agent": "slow", "task": "t", "wait_seconds": 0})
        await client.call_tool("cancel_run", {"run_id": slow.structured_content["run_id"]})
        await client.call_tool("list_runs", {})
        await client.list_resources()

        runtime = states[0].runtime
        assert per_run_state(runtime) == IDLE
        assert await live_objects() == []
