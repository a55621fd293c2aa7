"""Bad calls get a tool error naming the field and the fix; the server stays up and loses nothing."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from server.app import build_server
from server.settings import Settings
from tests.conftest import team

pytestmark = pytest.mark.anyio

TEAM = team(writer={"model": "scripted"}, researcher={"model": "scripted"})


def server(db: Path):
    return build_server(Settings(db=db), config=TEAM)


def count(db: Path, table: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"select count(*) from {table}").fetchone()[0]
    finally:
        conn.close()


BAD_CALLS: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "delegate_task",
        {"agent": "resercher", "task": "t"},
        ["unknown agent 'resercher'", "known agents: researcher, writer"],
    ),
    ("delegate_task", {"agent": "writer", "task": ""}, ["task", "at least 1 character"]),
    ("delegate_task", {"agent": "writer", "task": "   \n "}, ["task is blank"]),
    ("delegate_task", {"agent": "writer", "task": "x" * 100_001}, ["task", "at most 100000 characters"]),
    ("delegate_task", {"agent": "writer", "task": 42}, ["task", "valid string"]),
    ("delegate_task", {"agent": "writer"}, ["task", "required field is missing"]),
    (
        "delegate_task",
        {"agent": "writer", "task": "t", "priority": "high"},
        [
            "unknown argument(s) 'priority'",
            "valid arguments: agent, allow_handoffs, context, task, wait_seconds",
        ],
    ),
    (
        "delegate_task",
        {"agent": "writer", "task": "t", "wait_seconds": 600},
        ["wait_seconds", "less than or equal to 50"],
    ),
    (
        "delegate_task",
        {"agent": "writer", "task": "t", "wait_seconds": "soon"},
        ["wait_seconds", "valid number"],
    ),
    ("get_run", {"run_id": "run_doesnotexist"}, ["no run with id 'run_doesnotexist'", "list_runs"]),
    ("get_run", {"run_id": ""}, ["run_id", "at least 1 character"]),
    ("cancel_run", {"run_id": "nope"}, ["no run with id 'nope'"]),
    ("list_runs", {"limit": 0}, ["limit", "greater than or equal to 1"]),
    ("list_runs", {"status": "sleeping"}, ["status", "'running'"]),
]


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"), BAD_CALLS, ids=[f"{t}-{i}" for i, (t, _, _) in enumerate(BAD_CALLS)]
)
async def test_bad_call_is_a_tool_error_that_says_what_and_how(
    db: Path, tool: str, arguments: dict[str, Any], expected: list[str]
) -> None:
    async with Client(server(db)) as client:
        before = (
            await client.call_tool("delegate_task", {"agent": "writer", "task": "first"})
        ).structured_content
        result = await client.call_tool(tool, arguments)
        assert result.is_error, result
        text = result.content[0].text
        for fragment in expected:
            assert fragment in text, text
        # the server is still up, and what it recorded before is intact
        after = await client.call_tool("get_run", {"run_id": before["run_id"]})
        assert after.structured_content["status"] == "succeeded"
    assert count(db, "runs") == 1


async def test_api_keys_never_reach_the_audit_or_an_answer(db: Path, monkeypatch) -> None:
    secret = "sk-ant-api03-" + "Z" * 40
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    bearer = "Bearer abcdefghijklmnop1234567890"
    async with Client(server(db)) as client:
        run = (
            await client.call_tool(
                "delegate_task", {"agent": "writer", "task": f"use key {secret} and header {bearer}"}
            )
        ).structured_content
        missing = await client.call_tool("get_run", {"run_id": secret})
    assert secret not in str(run) and secret not in missing.content[0].text
    raw = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))
    assert secret.encode() not in raw
    assert b"abcdefghijklmnop1234567890" not in raw
    assert b"[redacted]" in raw
    os.environ.pop("ANTHROPIC_API_KEY", None)
