"""End to end over stdio: `concertmaster serve` in a subprocess, driven by the `mcp` client."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp_types import CreateMessageResult, TextContent

pytestmark = pytest.mark.anyio

CONFIG = """
[agents.helper]
description = "Answers on the client's model"
instructions = "Be brief."
model = "sampling"

[agents.slow]
description = "A slow scripted agent"
instructions = "Take your time."
model = "scripted"
scripted = { latency_ms = 2000, replies = ["slow answer"] }
"""


def params(tmp_path: Path) -> tuple[StdioServerParameters, Path]:
    config = tmp_path / "concertmaster.toml"
    config.write_text(CONFIG)
    db = tmp_path / "audit.db"
    env = {**os.environ, "CONCERTMASTER_DB": str(db), "CONCERTMASTER_CONFIG": str(config)}
    env.pop("ANTHROPIC_API_KEY", None)
    return StdioServerParameters(command=sys.executable, args=["-m", "server", "serve"], env=env), db


async def answer(context: Any, params: Any) -> CreateMessageResult:
    return CreateMessageResult(
        role="assistant",
        content=TextContent(type="text", text="hello from the client"),
        model="stdio-client-model",
    )


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_stdio_session_end_to_end(tmp_path: Path, mode: str) -> None:
    server, db = params(tmp_path)
    async with Client(server, mode=mode, sampling_callback=answer) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"delegate_task", "get_run", "list_runs", "cancel_run", "list_agents"} <= tools

        sampled = (
            await client.call_tool("delegate_task", {"agent": "helper", "task": "greet"})
        ).structured_content
        assert sampled["status"] == "succeeded" and sampled["output"] == "hello from the client"

        slow = await client.call_tool("delegate_task", {"agent": "slow", "task": "wait", "wait_seconds": 0.2})
        slow_id = slow.structured_content["run_id"]
        assert slow.structured_content["status"] == "running"
        followed = (
            await client.call_tool("get_run", {"run_id": slow_id, "wait_seconds": 10})
        ).structured_content
        assert followed["status"] == "succeeded" and followed["output"] == "slow answer"

        doomed = await client.call_tool(
            "delegate_task", {"agent": "slow", "task": "stop me", "wait_seconds": 0.2}
        )
        cancelled = await client.call_tool("cancel_run", {"run_id": doomed.structured_content["run_id"]})
        assert cancelled.structured_content["status"] == "cancelled"

        bad = await client.call_tool("delegate_task", {"agent": "nobody", "task": "x"})
        assert bad.is_error and "known agents: helper, slow" in bad.content[0].text

    conn = sqlite3.connect(db)
    try:
        statuses = dict(conn.execute("select input, status from runs").fetchall())
        models = dict(conn.execute("select agent, model from steps where status = 'succeeded'").fetchall())
    finally:
        conn.close()
    assert statuses == {"greet": "succeeded", "wait": "succeeded", "stop me": "cancelled"}
    assert models == {"helper": "stdio-client-model", "slow": "scripted"}
    verify = await anyio.run_process([sys.executable, "-m", "server", "--db", str(db), "audit", "verify"])
    assert "audit chain OK" in verify.stdout.decode()
