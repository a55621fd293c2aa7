"""start_group_chat end to end through an in-process MCP client."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from server.app import build_server
from server.settings import Settings
from tests.conftest import team

pytestmark = pytest.mark.anyio

TEAM = team(
    alice={"model": "scripted", "group": "red", "scripted": {"replies": ["red only: 42k\nSHARE: try Nova"]}},
    bob={"model": "scripted", "group": "blue", "scripted": {"replies": ["Nova works for blue"]}},
    carol={"model": "scripted", "group": "red", "scripted": {"replies": ["Agreed: Nova."]}},
    host={
        "model": "scripted",
        "scripted": {
            "replies": [
                '{"next": "bob", "reason": "blue first"}',
                '{"next": "nobody"}',
                '{"done": true, "conclusion": "The name is Nova."}',
            ]
        },
    },
)


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


async def call(db: Path, arguments: dict[str, Any], mode: str = "auto") -> Any:
    async with Client(
        build_server(Settings(db=db, default_wait_seconds=10), config=TEAM), mode=mode
    ) as client:
        return await client.call_tool("start_group_chat", arguments)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_managed_federated_chat_ends_with_the_conclusion(db: Path, mode: str) -> None:
    result = await call(
        db,
        {
            "agents": ["alice", "bob", "carol"],
            "topic": "name the product",
            "speaker_selection": "manager",
            "manager": "host",
            "control": "federated",
        },
        mode,
    )
    assert not result.is_error, result.content
    run = result.structured_content
    assert (
        run["status"] == "succeeded"
        and run["output"] == "The name is Nova."
        and run["pattern"] == "group_chat"
    )
    selected = [
        json.loads(p)
        for (p,) in rows(
            db, "select payload from events where run_id = ? and kind = 'speaker_selected'", run["run_id"]
        )
    ]
    assert [(e["speaker"], e["how"]) for e in selected] == [
        ("bob", "manager"),
        ("carol", "round_robin_fallback"),
    ]
    agents = [
        a for (a,) in rows(db, "select agent from steps where run_id = ? order by rowid", run["run_id"])
    ]
    assert agents == ["host", "bob", "host", "carol", "host"]
    options = json.loads(rows(db, "select options from runs where id = ?", run["run_id"])[0][0])
    assert options["agents"] == ["alice", "bob", "carol"] and options["manager"] == "host"


async def test_max_turns_stops_with_the_last_proposal(db: Path) -> None:
    result = await call(db, {"agents": ["alice", "bob"], "topic": "name it", "max_turns": 2})
    run = result.structured_content
    assert run["status"] == "stopped" and run["stop_reason"] == "max_turns"
    assert run["output"] == "Nova works for blue" and "last_proposal" in run["error"]


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"agents": ["alice", "bob"], "topic": "t", "speaker_selection": "manager"}, "manager"),
        ({"agents": ["alice", "bob"], "topic": "t", "resolution": "summarize"}, "manager"),
        ({"agents": ["alice"], "topic": "t"}, "at least 2"),
        ({"agents": ["alice", "bob"], "topic": "t", "manager": "ghost"}, "ghost"),
        ({"agents": ["alice", "bob"], "topic": "  "}, "topic"),
        ({"agents": ["alice", "bob"], "topic": "t", "max_turns": 101}, "max_turns"),
    ],
)
async def test_bad_arguments_are_clear_tool_errors(
    db: Path, arguments: dict[str, Any], fragment: str
) -> None:
    result = await call(db, arguments)
    assert result.is_error and fragment in result.content[0].text, result.content[0].text
