"""run_concurrent end to end through an MCP client, in-process: the audit shows parallel sibling steps and
the vote; an escalated tie waits for the user's decision through approve_action."""

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
ERAS = ["legacy", "auto"]


def voter(reply: str) -> dict[str, Any]:
    return {"model": "scripted", "scripted": {"replies": [reply], "latency_ms": 100}}


TEAM = team(
    v1=voter("Paris"),
    v2=voter("It is Paris.\nFINAL ANSWER: paris."),
    v3=voter("Lyon"),
    v4=voter("Lyon"),
)


def rows(db: Path, sql: str, *params: Any) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def server(db: Path):
    return build_server(Settings(db=db, default_wait_seconds=10), config=TEAM)


@pytest.mark.parametrize("mode", ERAS)
async def test_run_concurrent_runs_sibling_steps_at_once_and_records_the_vote(db: Path, mode: str) -> None:
    async with Client(server(db), mode=mode) as client:
        result = await client.call_tool(
            "run_concurrent",
            {"agents": ["v1", "v2", "v3"], "task": "capital of France?", "reconcile": "majority"},
        )
    assert not result.is_error, result.content
    run = result.structured_content
    assert run["status"] == "succeeded" and run["pattern"] == "concurrent" and run["output"] == "Paris"
    steps = rows(db, "select * from steps where run_id = ? order by key", run["run_id"])
    assert [(s["key"], s["agent"], s["parent_step_id"]) for s in steps] == [
        ("0.v1", "v1", None),
        ("1.v2", "v2", None),
        ("2.v3", "v3", None),
    ]
    # in parallel: every step started before any of them ended
    assert max(s["started_at"] for s in steps) < min(s["ended_at"] for s in steps)
    (event,) = rows(
        db, "select payload, seq from events where run_id = ? and kind = 'reconciled'", run["run_id"]
    )
    payload = json.loads(event["payload"])
    assert payload["rule"] == "majority" and payload["votes"] == {"paris": 2, "lyon": 1}
    assert payload["winner"] == "v1" and [a["agent"] for a in payload["answers"]] == ["v1", "v2", "v3"]
    last_step_event = rows(
        db, "select max(seq) from events where run_id = ? and kind = 'step_finished'", run["run_id"]
    )[0][0]
    assert event["seq"] > last_step_event  # reconciled after every answer was in


async def test_an_escalated_tie_waits_for_the_users_decision(db: Path) -> None:
    async with Client(server(db)) as client:
        run = (
            await client.call_tool(
                "run_concurrent",
                {
                    "agents": ["v1", "v3", "v2", "v4"],
                    "task": "capital of France?",
                    "reconcile": "majority",
                    "on_disagreement": "escalate",
                },
            )
        ).structured_content
        assert run["status"] == "awaiting_approval" and run["done"] is False
        (pending,) = (await client.call_tool("list_pending_approvals", {})).structured_content["approvals"]
        assert (pending["agent"], pending["tool"]) == ("v1", "concurrent.accept_answer")
        assert pending["arguments"]["answer"] == "Paris" and "tie" in pending["reason"]
        decided = await client.call_tool(
            "approve_action", {"action_id": pending["action_id"], "decision": "approve", "reason": "Paris"}
        )
        assert not decided.is_error, decided.content
        final = (
            await client.call_tool("get_run", {"run_id": run["run_id"], "wait_seconds": 5})
        ).structured_content
    assert final["status"] == "succeeded" and final["output"] == "Paris"
