"""Every pattern tool end to end through an MCP client, with the audit showing who did what under whom."""

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

pytestmark = pytest.mark.anyio


def agent(replies: list[Any] | None = None, group: str | None = None, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"description": "an agent", "instructions": "Do it.", "model": "scripted", **extra}
    if replies is not None:
        spec["scripted"] = {"replies": replies}
    if group:
        spec["group"] = group
    return spec


PLAN = json.dumps(
    {
        "subtasks": [
            {"id": "s1", "agent": "writer", "task": "draft", "depends_on": []},
            {"id": "s2", "agent": "reviewer", "task": "review", "depends_on": ["s1"]},
        ]
    }
)
CONFIG = TeamConfig.model_validate(
    {
        "agents": {
            "writer": agent(),
            "reviewer": agent(),
            "voter1": agent(["Paris"]),
            "voter2": agent(["paris."]),
            "voter3": agent(["Lyon"]),
            "planner": agent([PLAN]),
            "manager": agent(
                [
                    json.dumps({"facts": [], "guesses": [], "plan": ["write"]}),
                    json.dumps(
                        {
                            "is_request_satisfied": False,
                            "is_in_loop": False,
                            "is_progress_being_made": True,
                            "next_speaker": "writer",
                            "instruction": "write it",
                            "reason": "",
                        }
                    ),
                    json.dumps({"is_request_satisfied": True, "next_speaker": "writer"}),
                    "the final answer",
                ]
            ),
        },
        "teams": {
            "duo": {
                "description": "writer then reviewer",
                "pattern": "sequential",
                "agents": ["writer", "reviewer"],
            }
        },
    }
)


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


async def call(db: Path, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    async with Client(build_server(Settings(db=db, default_wait_seconds=10), config=CONFIG)) as client:
        result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    return result.structured_content


async def test_all_pattern_tools_are_listed(db: Path) -> None:
    async with Client(build_server(Settings(db=db), config=CONFIG)) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert {
        "run_sequential",
        "run_concurrent",
        "run_handoff",
        "start_group_chat",
        "run_magentic",
        "plan_and_execute",
        "approve_action",
        "list_pending_approvals",
    } <= names


async def test_run_sequential_with_a_team_nests_its_steps(db: Path) -> None:
    run = await call(
        db, "run_sequential", {"agents": ["writer", "duo"], "task": "a haiku", "control": "hierarchical"}
    )
    assert run["status"] == "succeeded" and run["pattern"] == "sequential"
    steps = {
        key: (agent, parent)
        for key, agent, parent in rows(
            db, "select key, agent, parent_step_id from steps where run_id = ?", run["run_id"]
        )
    }
    team_id = rows(db, "select id from steps where key = '1.duo'")[0][0]
    assert steps["1.duo/0.writer"] == ("writer", team_id) and steps["1.duo/1.reviewer"] == (
        "reviewer",
        team_id,
    )
    assert rows(db, "select control from runs where id = ?", run["run_id"])[0][0] == "hierarchical"


async def test_run_concurrent_votes(db: Path) -> None:
    run = await call(
        db,
        "run_concurrent",
        {"agents": ["voter1", "voter2", "voter3"], "task": "capital of France?", "reconcile": "majority"},
    )
    assert run["status"] == "succeeded" and run["output"] == "Paris"
    parents = rows(db, "select distinct parent_step_id from steps where run_id = ?", run["run_id"])
    assert parents == [(None,)]
    (payload,) = rows(
        db, "select payload from events where run_id = ? and kind = 'reconciled'", run["run_id"]
    )[0]
    assert json.loads(payload)["votes"] == {"paris": 2, "lyon": 1}


async def test_start_group_chat_stops_at_max_turns(db: Path) -> None:
    run = await call(
        db, "start_group_chat", {"agents": ["writer", "reviewer"], "topic": "naming", "max_turns": 3}
    )
    assert run["status"] == "stopped" and run["stop_reason"] == "max_turns" and run["done"]
    assert [
        a for (a,) in rows(db, "select agent from steps where run_id = ? order by rowid", run["run_id"])
    ] == ["writer", "reviewer", "writer"]


async def test_run_magentic_records_its_ledgers(db: Path) -> None:
    run = await call(db, "run_magentic", {"goal": "write a poem", "agents": ["writer"], "manager": "manager"})
    assert run["status"] == "succeeded" and run["output"] == "the final answer"
    kinds = [k for (k,) in rows(db, "select kind from events where run_id = ?", run["run_id"])]
    assert "task_ledger" in kinds and kinds.count("progress_ledger") == 2


async def test_plan_and_execute_runs_the_plan_and_dry_run_does_not(db: Path) -> None:
    run = await call(db, "plan_and_execute", {"goal": "an essay", "agents": ["writer", "reviewer"]})
    assert run["status"] == "succeeded"
    assert [
        k for (k,) in rows(db, "select key from steps where run_id = ? order by rowid", run["run_id"])
    ] == ["r0.plan", "r0.s1", "r0.s2"]
    dry = await call(
        db, "plan_and_execute", {"goal": "an essay", "agents": ["writer", "reviewer"], "dry_run": True}
    )
    assert dry["stop_reason"] == "dry_run" and '"estimate"' in dry["output"]
    assert rows(db, "select count(*) from steps where run_id = ?", dry["run_id"]) == [(1,)]


@pytest.mark.parametrize(
    ("tool", "arguments", "fragment"),
    [
        ("run_sequential", {"agents": [], "task": "t"}, "agents"),
        ("run_sequential", {"agents": ["writer", "ghost"], "task": "t"}, "unknown agent 'ghost'"),
        ("run_sequential", {"agents": ["writer", "writer"], "task": "t"}, "more than once"),
        ("run_concurrent", {"agents": ["writer"], "task": "t", "reconcile": "judge"}, "judge"),
        ("start_group_chat", {"agents": ["writer"], "topic": "t"}, "at least 2"),
        ("start_group_chat", {"agents": ["writer", "reviewer"], "topic": "t", "max_turns": 0}, "max_turns"),
        ("run_magentic", {"goal": "g", "manager": "nobody"}, "unknown agent 'nobody'"),
        ("plan_and_execute", {"goal": "g", "threshold": 2}, "threshold"),
        ("run_sequential", {"agents": ["writer"], "task": "t", "limits": {"max_steps": 0}}, "max_steps"),
        ("run_sequential", {"agents": ["writer"], "task": "t", "control": "anarchic"}, "control"),
    ],
)
async def test_bad_pattern_arguments_are_clear_tool_errors(
    db: Path, tool: str, arguments: dict[str, Any], fragment: str
) -> None:
    async with Client(build_server(Settings(db=db), config=CONFIG)) as client:
        result = await client.call_tool(tool, arguments)
        still_up = await client.call_tool("list_runs", {})
    assert result.is_error and fragment in result.content[0].text, result.content[0].text
    assert not still_up.is_error
