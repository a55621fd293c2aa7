"""run_magentic end to end through an in-process MCP client."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from orchestration.config import TeamConfig
from server.app import build_server
from server.settings import Settings
from tests.conftest import team

pytestmark = pytest.mark.anyio

LEDGER = {"facts": ["a poem is wanted"], "guesses": [], "plan": ["writer drafts", "reviewer checks"]}


def progress(speaker: str, satisfied: bool = False) -> str:
    return json.dumps(
        {
            "is_request_satisfied": satisfied,
            "is_in_loop": False,
            "is_progress_being_made": True,
            "next_speaker": speaker,
            "instruction": f"{speaker}: your part",
            "reason": "next step of the plan",
        }
    )


TEAM = team(
    planner={
        "model": "scripted",
        "scripted": {
            "replies": [
                json.dumps(LEDGER),
                progress("writer"),
                progress("reviewer"),
                progress("reviewer", satisfied=True),
                "Roses are red.",
            ]
        },
    },
    writer={"model": "scripted", "scripted": {"replies": ["Roses are red (draft)."]}},
    reviewer={"model": "scripted", "scripted": {"replies": ["Good."]}},
)
NO_PLANNER = team(writer={"model": "scripted"}, reviewer={"model": "scripted"})


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


async def call(db: Path, arguments: dict[str, Any], mode: str = "auto", config: TeamConfig = TEAM) -> Any:
    async with Client(
        build_server(Settings(db=db, default_wait_seconds=10), config=config), mode=mode
    ) as client:
        return await client.call_tool("run_magentic", arguments)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_the_planner_manages_every_other_agent_by_default(db: Path, mode: str) -> None:
    result = await call(db, {"goal": "a poem about roses"}, mode)
    assert not result.is_error, result.content
    run = result.structured_content
    assert run["status"] == "succeeded" and run["output"] == "Roses are red." and run["pattern"] == "magentic"
    agents = [
        a for (a,) in rows(db, "select agent from steps where run_id = ? order by rowid", run["run_id"])
    ]
    assert agents == ["planner", "planner", "writer", "planner", "reviewer", "planner", "planner"]
    events = [
        (kind, json.loads(payload))
        for kind, payload in rows(
            db, "select kind, payload from events where run_id = ? order by seq", run["run_id"]
        )
    ]
    (task,) = [p for k, p in events if k == "task_ledger"]
    assert task["ledger"] == LEDGER
    ledgers = [p for k, p in events if k == "progress_ledger"]
    assert [p["ledger"]["next_speaker"] for p in ledgers] == ["writer", "reviewer", "reviewer"]
    assert ledgers[-1]["ledger"]["is_request_satisfied"] is True
    options = json.loads(rows(db, "select options from runs where id = ?", run["run_id"])[0][0])
    assert options["manager"] == "planner" and options["agents"] == ["writer", "reviewer"]
    assert (options["max_stalls"], options["max_resets"], options["max_rounds"]) == (3, 2, None)


async def test_max_rounds_stops_the_run_with_a_partial_answer(db: Path) -> None:
    result = await call(db, {"goal": "a poem", "max_rounds": 1})
    run = result.structured_content
    assert run["status"] == "stopped" and run["stop_reason"] == "max_rounds" and run["done"]
    assert "max_rounds=1" in run["error"]


@pytest.mark.parametrize(
    ("arguments", "config", "fragment"),
    [
        ({"goal": "g"}, NO_PLANNER, "manager: name the manager agent"),
        ({"goal": "g", "manager": "ghost"}, TEAM, "unknown agent 'ghost'"),
        ({"goal": "g", "agents": ["writer", "ghost"]}, TEAM, "unknown agent 'ghost'"),
        ({"goal": "g", "agents": ["planner", "writer"]}, TEAM, "'planner' is the manager"),
        ({"goal": "g", "agents": []}, TEAM, "at least one agent"),
        ({"goal": "   "}, TEAM, "goal"),
        ({"goal": "g", "max_rounds": 0}, TEAM, "max_rounds"),
        ({"goal": "g", "max_stalls": -1}, TEAM, "max_stalls"),
    ],
)
async def test_bad_arguments_are_clear_tool_errors(
    db: Path, arguments: dict[str, Any], config: TeamConfig, fragment: str
) -> None:
    result = await call(db, arguments, config=config)
    assert result.is_error and fragment in result.content[0].text, result.content[0].text
