"""Downstream MCP servers get a minimal environment: the SDK's safe list, their `env`, and `inherit_env`."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest
from mcp import Client

from orchestration.config import TeamConfig
from server.app import build_server
from server.settings import Settings

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
NAMES = ["ANTHROPIC_API_KEY", "CM_TEST_PASSED_ON", "CM_TEST_NOT_NAMED", "CM_TEST_SET_BY_CONFIG", "PATH"]


def team(inherit_env: list[str]) -> TeamConfig:
    return TeamConfig.model_validate(
        {
            "mcp_servers": {
                "env": {
                    "command": sys.executable,
                    "args": ["-m", "tests.fixtures.env_server"],
                    "cwd": str(ROOT),
                    "env": {"CM_TEST_SET_BY_CONFIG": "1"},
                    "inherit_env": inherit_env,
                }
            },
            "agents": {
                "probe": {
                    "description": "asks the tool server what it sees",
                    "instructions": "Probe.",
                    "model": "scripted",
                    "tools": ["env.*"],
                    "scripted": {
                        "replies": [
                            {"tool_calls": [{"name": "env__has_env", "arguments": {"names": NAMES}}]},
                            "done",
                        ]
                    },
                }
            },
        }
    )


def seen(db: Path) -> dict[str, str]:
    conn = sqlite3.connect(db)
    try:
        (payload,) = conn.execute("select payload from events where kind = 'tool_called'").fetchone()
    finally:
        conn.close()
    return dict(line.split("=") for line in json.loads(payload)["result"].splitlines())


async def test_the_api_key_never_reaches_a_tool_server_and_inherit_env_passes_a_named_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-" + "k" * 40)
    monkeypatch.setenv("CM_TEST_PASSED_ON", "1")
    monkeypatch.setenv("CM_TEST_NOT_NAMED", "1")
    db = tmp_path / "audit.db"
    server = build_server(Settings(db=db, default_wait_seconds=10), config=team(["CM_TEST_PASSED_ON"]))
    async with Client(server) as client:
        run = (await client.call_tool("delegate_task", {"agent": "probe", "task": "look"})).structured_content
    assert run["status"] == "succeeded", run
    assert seen(db) == {
        "ANTHROPIC_API_KEY": "no",
        "CM_TEST_PASSED_ON": "yes",
        "CM_TEST_NOT_NAMED": "no",
        "CM_TEST_SET_BY_CONFIG": "yes",
        "PATH": "yes",  # the SDK's safe list
    }


def test_inherit_env_refuses_what_is_not_a_variable_name() -> None:
    with pytest.raises(ValueError, match="not environment variable names: 'A=B'"):
        team(["A=B"])
