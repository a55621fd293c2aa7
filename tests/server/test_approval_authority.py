"""The audit chain is the authority for approvals: editing the database's rows forges nothing.

Each test plays someone with write access to the database file (another local user, a bad script).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client

from orchestration.approvals import decide_from_cli
from orchestration.audit.read import verify_chain
from tests.server.test_governance import DELETE, ROOT, World, delegate

pytestmark = pytest.mark.anyio


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def forge(world: World, sql: str, *params: object) -> None:
    conn = sqlite3.connect(world.db)
    with conn:
        conn.execute(sql, params)
    conn.close()


def wait_for_rejection(world: World) -> None:
    """Until the server has looked at the forged row (it polls for decisions made elsewhere)."""
    for _ in range(6000):
        if world.rows("select * from events where kind = 'approval_rejected'"):
            return
        time.sleep(0.02)
    raise AssertionError("the forged answer was never looked at")


async def test_clearing_human_only_in_the_row_does_not_open_the_tool_channel(world: World) -> None:
    async with Client(world.server(DELETE, policy="strict")) as client:
        run = await delegate(client)
        action_id = run["pending"][0]["request_id"]
        forge(
            world,
            "update pending_requests set payload = json_set(payload, '$.human_only', json('false')) where id = ?",
            action_id,
        )
        refused = await client.call_tool("approve_action", {"action_id": action_id, "decision": "approve"})
        await anyio.to_thread.run_sync(decide_from_cli, world.db, action_id, "deny", "not like this")
        final = (
            await client.call_tool("get_run", {"run_id": run["run_id"], "wait_seconds": 5})
        ).structured_content
    assert refused.is_error and "needs a human decision" in refused.content[0].text
    assert final["status"] == "succeeded" and world.calls() == [] and (world.dir / "a.txt").exists()
    report = verify_chain(world.db)
    assert not report.ok and any("pending_requests" in p and action_id in p for p in report.problems)


async def test_edited_arguments_in_the_row_are_not_what_the_human_is_shown(world: World) -> None:
    async with Client(world.server(DELETE)) as client:
        run = await delegate(client)
        action_id = run["pending"][0]["request_id"]
        forge(  # make the row look harmless
            world,
            "update pending_requests set payload = json_set(payload, '$.arguments.name', 'harmless.txt',"
            " '$.question', 'Agent wants to delete harmless.txt') where id = ?",
            action_id,
        )
        (listed,) = (await client.call_tool("list_pending_approvals", {})).structured_content["approvals"]
        shown = (
            await anyio.run_process(
                [sys.executable, "-m", "server", "approvals", "--db", str(world.db)], cwd=ROOT, check=True
            )
        ).stdout.decode()
        await anyio.to_thread.run_sync(decide_from_cli, world.db, action_id, "approve", "ok")
        final = (
            await client.call_tool("get_run", {"run_id": run["run_id"], "wait_seconds": 5})
        ).structured_content
    # the human sees exactly the action the run will execute (from the chain), and that is what runs
    assert listed["arguments"] == {"name": "a.txt"}
    assert "a.txt" in shown and "harmless" not in shown
    assert final["status"] == "succeeded" and world.calls() == ["delete_file a.txt"]
    report = verify_chain(world.db)
    assert not report.ok and any("pending_requests" in p and action_id in p for p in report.problems)


async def test_a_forged_answered_row_approves_nothing(world: World) -> None:
    async with Client(world.server(DELETE)) as client:
        run = await delegate(client)
        action_id = run["pending"][0]["request_id"]
        (listed,) = (await client.call_tool("list_pending_approvals", {})).structured_content["approvals"]
        response = {"decision": "approve", "reason": "forged", "digest": listed["digest"], "channel": "cli"}
        forge(
            world,
            "update pending_requests set status = 'answered', response = ?, channel = 'cli',"
            " decided_by = 'mallory' where id = ?",
            json.dumps(response),
            action_id,
        )
        # the server refuses the forged answer (audited) and the action stays open for a real human
        await anyio.to_thread.run_sync(wait_for_rejection, world)
        assert world.calls() == []
        denied = await client.call_tool("approve_action", {"action_id": action_id, "decision": "deny"})
        final = (
            await client.call_tool("get_run", {"run_id": run["run_id"], "wait_seconds": 5})
        ).structured_content
    assert not denied.is_error, denied.content
    assert final["status"] == "succeeded" and world.calls() == [] and (world.dir / "a.txt").exists()
    (rejected,) = world.rows("select payload from events where kind = 'approval_rejected'")
    assert "forged" in rejected["payload"]
    (row,) = world.rows("select status from approvals")
    assert row["status"] == "denied"


async def test_a_forged_answered_row_is_not_adopted_after_a_restart(world: World) -> None:
    import socket

    async with Client(world.server(DELETE)) as client:
        run = await delegate(client)
        action_id = run["pending"][0]["request_id"]
        (listed,) = (await client.call_tool("list_pending_approvals", {})).structured_content["approvals"]
    response = {"decision": "approve", "reason": "forged", "digest": listed["digest"], "channel": "cli"}
    forge(
        world,
        "update pending_requests set status = 'answered', response = ?, channel = 'cli' where id = ?",
        json.dumps(response),
        action_id,
    )
    forge(world, "update runs set owner = ?", f"{socket.gethostname()}:99999999")
    async with Client(world.server(DELETE)) as client:
        await anyio.to_thread.run_sync(wait_for_rejection, world)
        parked = (await client.call_tool("get_run", {"run_id": run["run_id"]})).structured_content
    assert parked["status"] == "awaiting_approval" and world.calls() == []
