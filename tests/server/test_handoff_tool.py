"""Handoffs through MCP: delegate_task(allow_handoffs=true) and run_handoff."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from mcp import Client

from orchestration.config import TeamConfig
from server.app import build_server
from server.settings import Settings

pytestmark = pytest.mark.anyio


def config() -> TeamConfig:
    def agent(replies: list) -> dict:
        return {
            "description": "d",
            "instructions": "i",
            "model": "scripted",
            "scripted": {"replies": replies},
        }

    return TeamConfig.model_validate(
        {
            "agents": {
                "triage": agent(
                    [{"tool_calls": [{"name": "transfer_to_billing", "arguments": {"message": "refund"}}]}]
                ),
                "billing": agent(["refund issued"]),
                "pinger": agent(
                    [{"tool_calls": [{"name": "transfer_to_ponger", "arguments": {"message": "yours"}}]}] * 5
                ),
                "ponger": agent(
                    [{"tool_calls": [{"name": "transfer_to_pinger", "arguments": {"message": "no, yours"}}]}]
                    * 5
                ),
            }
        }
    )


async def test_delegate_with_handoffs_follows_the_transfer(db: Path) -> None:
    async with Client(build_server(Settings(db=db), config=config())) as client:
        result = await client.call_tool(
            "delegate_task", {"agent": "triage", "task": "I was charged twice", "allow_handoffs": True}
        )
    run = result.structured_content
    assert run["status"] == "succeeded" and run["output"] == "refund issued" and run["pattern"] == "handoff"
    conn = sqlite3.connect(db)
    agents = [
        r[0]
        for r in conn.execute("select agent from steps where run_id = ? order by rowid", (run["run_id"],))
    ]
    control = conn.execute("select control from runs where id = ?", (run["run_id"],)).fetchone()[0]
    conn.close()
    assert agents == ["triage", "billing"] and control == "decentralized"


async def test_run_handoff_escalates_a_ping_pong(db: Path) -> None:
    async with Client(build_server(Settings(db=db), config=config())) as client:
        result = await client.call_tool(
            "run_handoff", {"agent": "pinger", "task": "who owns this?", "agents": ["pinger", "ponger"]}
        )
        bad = await client.call_tool(
            "run_handoff", {"agent": "pinger", "task": "t", "control": "centralized"}
        )
    run = result.structured_content
    assert run["status"] == "stopped" and run["stop_reason"] == "loop_detected"
    assert "pinger -> ponger -> pinger -> ponger" in run["error"]
    assert bad.is_error and "control" in bad.content[0].text
