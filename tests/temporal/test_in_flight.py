"""A side-effecting tool call whose worker is SIGKILLed during it: on Temporal as on the embedded engine, the run
parks for a human (rule `in_flight`, human only), and an approval calls the tool again, once.

The worker is a real `concertmaster worker` process; the tool is the files fixture's `append_line`, which waits
for a gate file, so the kill lands while it is in flight. Waits are for events (a line in the call log, a run
status), bounded by generous caps; nothing asserts on time.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import anyio
import pytest
from mcp import Client

from orchestration.audit.read import verify_chain
from orchestration.config import load_config
from server.app import build_server
from server.settings import Settings
from tests.server.test_governance import World
from tests.temporal.conftest import worker
from tests.temporal.test_failover import until_done, worker_process

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
LINE = "append_line log.txt paid invoice 7"


def write_config(world: World, address: str) -> Path:
    """A team whose clerk appends a line through the files server, with every tool call allowed by policy (so
    the only question asked is the in-flight one)."""
    policy = world.tmp / "allow.toml"
    policy.write_text('default = "allow"\n')
    call = '{ tool_calls = [{ name = "files__append_line", arguments = { name = "log.txt", line = "paid invoice 7" } }] }'
    lines = [
        f'policy = "{policy}"',
        "[engine]",
        'kind = "temporal"',
        f'address = "{address}"',
        f'task_queue = "i-{uuid.uuid4().hex[:10]}"',
        "heartbeat_s = 10",
        "[mcp_servers.files]",
        f'command = "{sys.executable}"',
        f'args = ["-m", "tests.fixtures.files_server", "{world.dir}"]',
        f'cwd = "{ROOT}"',
        "timeout_s = 600",
        "[agents.clerk]",
        'description = "files clerk"',
        'instructions = "Tidy files."',
        'model = "scripted"',
        'tools = ["files.*"]',
        "[agents.clerk.scripted]",
        f'replies = [{call}, "logged"]',
    ]
    path = world.tmp / "concertmaster.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def until(what: str, condition: object) -> None:
    for _ in range(3000):  # a cap, not a timing assumption: the loop ends on the condition
        if condition():  # type: ignore[operator]
            return
        await anyio.sleep(0.05)
    raise AssertionError(f"never saw {what}")


async def test_a_side_effect_in_flight_on_a_killed_worker_is_retried_only_once_a_human_approves(
    tmp_path: Path, temporal_address: str
) -> None:
    world = World(tmp_path)
    config_file = write_config(world, temporal_address)
    config = load_config(config_file)
    async with Client(build_server(Settings(db=world.db), config=config)) as client:
        with worker_process(config_file, dict(os.environ), tmp_path / "w1.log") as first:
            started = await client.call_tool(
                "delegate_task", {"agent": "clerk", "task": "log the payment", "wait_seconds": 0}
            )
            assert not started.is_error, started.content
            run_id = started.structured_content["run_id"]
            await until("the tool call in flight", lambda: LINE in world.calls())
            first.kill()  # SIGKILL, mid-call
        await until("the orphaned call given up", lambda: f"abandoned {LINE}" in world.calls())
        (world.dir / ".gate").write_text("open")  # calls from now on go through at once

        async with worker(config):
            run: dict[str, object] = {}
            for _ in range(20):
                run = (
                    await client.call_tool("get_run", {"run_id": run_id, "wait_seconds": 30})
                ).structured_content
                if run["status"] == "awaiting_approval":
                    break
            assert run["status"] == "awaiting_approval", run
            (question,) = (await client.call_tool("list_pending_approvals", {})).structured_content[
                "approvals"
            ]
            assert question["rule"] == "in_flight" and question["human_only"], question
            assert question["tool"] == "files.append_line"
            assert question["arguments"] == {"name": "log.txt", "line": "paid invoice 7"}
            assert "the server stopped during files.append_line" in question["reason"]
            assert "may or may not have happened: approve to retry it, deny to skip it" in question["reason"]
            assert world.calls().count(LINE) == 1  # not retried while the human thinks

            refused = await client.call_tool(
                "approve_action", {"action_id": question["action_id"], "decision": "approve"}
            )
            assert refused.is_error and "needs a human decision" in refused.content[0].text
            approved = await anyio.run_process(  # the human, at a terminal
                [
                    sys.executable,
                    *("-m", "server", "approve", question["action_id"]),
                    *("--db", str(world.db), "--reason", "it did not go through"),
                ],
                cwd=str(ROOT),
                check=False,
            )
            assert approved.returncode == 0, approved.stderr
            final = await until_done(client, run_id)

    assert final["status"] == "succeeded" and final["output"] == "logged", final
    assert world.calls().count(LINE) == 2  # called again, once, after the approval
    assert [c for c in world.calls() if c.startswith("appended")] == ["appended log.txt paid invoice 7"]
    assert (world.dir / "log.txt").read_text() == "paid invoice 7\n"
    (asked,) = world.rows("select status, channel, rule from approvals where run_id = ?", run_id)
    assert tuple(asked) == ("approved", "cli", "in_flight")
    (called,) = world.rows("select payload from events where run_id = ? and kind = 'tool_called'", run_id)
    assert '"result":"appended to log.txt"' in called["payload"]
    assert (
        len(world.rows("select 1 from events where run_id = ? and kind = 'tool_call_started'", run_id)) == 2
    )
    assert verify_chain(world.db).ok
