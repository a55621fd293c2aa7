"""Runs on Temporal followed through the MCP server leave nothing per run in the server (counts, not bytes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from orchestration.temporal.runtime import TemporalRuntime
from tests.conftest import team
from tests.server.test_memory import server_with_state
from tests.temporal.conftest import on_temporal, worker

pytestmark = pytest.mark.anyio


async def test_followed_runs_leave_no_listeners_or_waiters_in_the_server(
    db: Path, temporal_address: str
) -> None:
    config = on_temporal(team(a={"model": "scripted"}), temporal_address)
    server, states = server_with_state(db, config)
    async with worker(config), Client(server) as client:
        for _ in range(3):
            result = await client.call_tool("delegate_task", {"agent": "a", "task": "t"})
            assert result.structured_content["status"] == "succeeded", result.content
        runtime = states[0].runtime
        assert isinstance(runtime, TemporalRuntime)
        # an empty list per followed run used to stay for the server's life
        assert runtime._listeners == {}
        assert runtime._changed == {}
        assert runtime._samplers == {}
