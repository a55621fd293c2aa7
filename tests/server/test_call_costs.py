"""What one `delegate_task` call costs the server, as counts: notifications sent, audit reads, connections.

Each notification is a write on the client's pipe (two thread hops over stdio) and each progress update reads
the audit; a call that asked for neither progress nor log messages gets neither, and its follower reads only
what the answer needs.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp_types import LoggingMessageNotificationParams

import orchestration.audit.read as read
from server.app import build_server
from server.settings import Settings
from tests.conftest import team

pytestmark = pytest.mark.anyio
ERAS = ["legacy", "auto"]
TEAM = team(a={"model": "scripted"})


class Traced:
    """Every connection the audit readers open from now on, and every statement run on them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened = 0
        self.statements: list[str] = []
        connect = read.connect

        def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn = connect(*args, **kwargs)
            conn.set_trace_callback(self.statements.append)
            self.opened += 1
            return conn

        monkeypatch.setattr(read, "connect", traced)

    def about(self, run_id: str) -> list[str]:
        """The statements that read this run (the list-change watcher's ticks name no run)."""
        return [s for s in self.statements if run_id in s]


@pytest.mark.parametrize("mode", ERAS)
async def test_delegate_task_without_a_progress_token_sends_nothing_and_reads_the_audit_4_times(
    db: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    traced = Traced(monkeypatch)
    received: list[Any] = []

    async def on_message(message: Any) -> None:
        received.append(message)

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        received.append(progress)

    server = build_server(Settings(db=db, default_wait_seconds=10), config=TEAM)
    async with Client(server, mode=mode, message_handler=on_message) as client:
        await client.call_tool("delegate_task", {"agent": "a", "task": "warm up"})
        opened, received[:] = traced.opened, []
        quiet = await client.call_tool("delegate_task", {"agent": "a", "task": "t"})
        quiet_received = list(received)
        asked = await client.call_tool(
            "delegate_task", {"agent": "a", "task": "t"}, progress_callback=on_progress
        )
    assert quiet.structured_content is not None and asked.structured_content is not None
    assert quiet.structured_content["status"] == asked.structured_content["status"] == "succeeded"
    assert quiet_received == []  # was a log message per event
    assert received  # progress still reaches a call that asked for it: the count above is not vacuous
    assert traced.opened == opened  # no connection opened per call
    assert len(traced.about(quiet.structured_content["run_id"])) <= 4, traced.about(
        quiet.structured_content["run_id"]
    )  # was 10: the run's row, steps and pending once each, and no reads per event


async def test_log_messages_go_to_a_client_that_set_a_level_only(db: Path) -> None:
    heard: list[LoggingMessageNotificationParams] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        heard.append(params)

    server = build_server(Settings(db=db, default_wait_seconds=10), config=TEAM)
    async with Client(server, mode="legacy", logging_callback=on_log) as client:
        await client.call_tool("delegate_task", {"agent": "a", "task": "unasked"})
        unasked = len(heard)
        await client.set_logging_level("info")
        await client.call_tool("delegate_task", {"agent": "a", "task": "asked"})
    assert unasked == 0
    assert [str(p.data).split("] ", 1)[1].split(" · ")[0] for p in heard] == ["a is working", "a finished"]


async def test_over_stdio_a_call_without_a_progress_token_gets_its_answer_and_nothing_else(
    tmp_path: Path,
) -> None:
    config = tmp_path / "concertmaster.toml"
    config.write_text('[agents.a]\ndescription = "a"\ninstructions = "a"\nmodel = "scripted"\n')
    env = {**os.environ, "CONCERTMASTER_DB": str(tmp_path / "audit.db"), "CONCERTMASTER_CONFIG": str(config)}
    params = StdioServerParameters(command=sys.executable, args=["-m", "server", "serve"], env=env)
    received: list[Any] = []

    async def on_message(message: Any) -> None:
        received.append(message)

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        pass

    async with Client(params, mode="legacy", message_handler=on_message) as client:
        for _ in range(3):
            quiet = await client.call_tool("delegate_task", {"agent": "a", "task": "t"})
            assert quiet.structured_content is not None and quiet.structured_content["status"] == "succeeded"
        quiet_received = len(received)
        await client.call_tool("delegate_task", {"agent": "a", "task": "t"}, progress_callback=on_progress)
    assert quiet_received == 0
    assert received  # progress for the call that asked: the count above is not vacuous
