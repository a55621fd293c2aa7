"""Agents' downstream tools on Temporal: listed and called as activities, gated by policy, approved by a signal,
expired by a workflow timer. The same downstream fixture and the same assertions as the embedded engine's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from orchestration.audit.read import verify_chain
from server.app import build_server
from server.settings import Settings
from tests.server.test_governance import DELETE, MAX_WAIT, World, call, delegate
from tests.temporal.conftest import on_temporal, worker

pytestmark = pytest.mark.anyio


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


async def until_done(client: Client, run: dict[str, Any]) -> dict[str, Any]:
    for _ in range(20):
        if run["done"]:
            return run
        run = (
            await client.call_tool("get_run", {"run_id": run["run_id"], "wait_seconds": MAX_WAIT})
        ).structured_content
    raise AssertionError(run)


async def test_a_read_only_tool_runs_as_an_activity(world: World, temporal_address: str) -> None:
    config = on_temporal(world.config([call("read_file", name="a.txt"), "it says hello"]), temporal_address)
    async with worker(config), Client(build_server(Settings(db=world.db), config=config)) as client:
        run = await until_done(client, await delegate(client))
    assert run["status"] == "succeeded" and run["output"] == "it says hello"
    assert world.calls() == ["read_file a.txt"]
    (called,) = world.rows("select payload from events where kind = 'tool_called'")
    assert '"tool":"files__read_file"' in called["payload"] and '"result":"hello"' in called["payload"]
    assert verify_chain(world.db).ok


async def test_a_delete_waits_for_approval_and_runs_once_approved(
    world: World, temporal_address: str
) -> None:
    config = on_temporal(world.config(DELETE), temporal_address)
    async with worker(config), Client(build_server(Settings(db=world.db), config=config)) as client:
        run = await delegate(client, wait_seconds=MAX_WAIT)
        assert run["status"] == "awaiting_approval" and world.calls() == []
        (pending,) = (await client.call_tool("list_pending_approvals", {})).structured_content["approvals"]
        assert pending["tool"] == "files.delete_file"
        decided = await client.call_tool(
            "approve_action", {"action_id": pending["action_id"], "decision": "approve", "reason": "ok by me"}
        )
        assert not decided.is_error, decided.content
        final = await until_done(client, run)
    assert final["status"] == "succeeded"
    assert not (world.dir / "a.txt").exists() and world.calls() == ["delete_file a.txt"]
    (row,) = world.rows("select status, channel, decision_reason, rule from approvals")
    assert tuple(row) == ("approved", "tool", "ok by me", "destructive-needs-approval")
    assert verify_chain(world.db).ok


async def test_an_approval_expires_on_a_workflow_timer(
    world: World, temporal_address: str, tmp_path: Path
) -> None:
    # the expiry is what the test waits for (the run goes on when it passes), not a race against it
    policy = tmp_path / "quick.toml"
    policy.write_text(
        'default = "allow"\n[[rules]]\nname = "quick"\ndecision = "require_approval"\n'
        'tools = ["files.delete_file"]\napproval_ttl_s = 0.5\n'
    )
    config = on_temporal(world.config([*DELETE[:1], "gave up"], policy=str(policy)), temporal_address)
    async with worker(config), Client(build_server(Settings(db=world.db), config=config)) as client:
        run = await until_done(client, await delegate(client))
        (row,) = world.rows("select action_id as id, status from approvals")
        late = await client.call_tool("approve_action", {"action_id": row["id"], "decision": "approve"})
    assert run["status"] == "succeeded" and run["output"] == "gave up"
    assert row["status"] == "expired" and late.is_error and world.calls() == []
