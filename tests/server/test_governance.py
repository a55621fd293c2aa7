"""Agents' tools from a downstream MCP server, policies, and human approval, through a real MCP client."""

from __future__ import annotations

import socket
import sqlite3
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp_types import (
    CreateMessageResult,
    CreateMessageResultWithTools,
    ElicitRequestParams,
    ElicitResult,
    SamplingCapability,
    SamplingToolsCapability,
    TextContent,
    ToolUseContent,
)

from orchestration.approvals import decide_from_cli
from orchestration.config import TeamConfig
from orchestration.toolbox import granted
from server.app import build_server
from server.settings import Settings

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-ant-planted-" + "x" * 30


def call(tool: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": f"files__{tool}", "arguments": arguments}]}


class World:
    """A served directory, the audit database and a team whose `clerk` uses the files server."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "served"
        self.dir.mkdir()
        (self.dir / "a.txt").write_text("hello")
        self.db = tmp / "audit.db"
        self.tmp = tmp

    def config(
        self,
        replies: list[Any],
        *,
        policy: str = "default",
        command: str | None = None,
        timeout_s: float = 5,
        model: str = "scripted",
    ) -> TeamConfig:
        return TeamConfig.model_validate(
            {
                "policy": policy,
                "mcp_servers": {
                    "files": {
                        "command": command or sys.executable,
                        "args": ["-m", "tests.fixtures.files_server", str(self.dir)],
                        "cwd": str(ROOT),
                        "timeout_s": timeout_s,
                    }
                },
                "agents": {
                    "clerk": {
                        "description": "files clerk",
                        "instructions": "Tidy files.",
                        "model": model,
                        "tools": ["files.*"],
                        "scripted": {"replies": replies},
                    }
                },
            }
        )

    def server(self, replies: list[Any], **kw: Any):
        return build_server(
            Settings(db=self.db, default_wait_seconds=MAX_WAIT), config=self.config(replies, **kw)
        )

    def calls(self) -> list[str]:
        path = self.dir / ".calls"
        return path.read_text().splitlines() if path.exists() else []

    def rows(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        conn = sqlite3.connect(self.db)
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def raw(self) -> bytes:
        return b"".join(p.read_bytes() for p in self.tmp.iterdir() if p.name.startswith("audit.db"))


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


DELETE = [call("delete_file", name="a.txt"), "done"]
MAX_WAIT = 50  # the tools' longest wait: they return as soon as the run ends or asks, this is only a bound


async def delegate(client: Client, **extra: Any) -> dict[str, Any]:
    result = await client.call_tool("delegate_task", {"agent": "clerk", "task": "tidy up", **extra})
    assert not result.is_error, result.content
    return result.structured_content


async def test_an_allowed_read_goes_through_and_is_audited(world: World) -> None:
    async with Client(world.server([call("read_file", name="a.txt"), "it says hello"])) as client:
        run = await delegate(client)
    assert run["status"] == "succeeded" and run["output"] == "it says hello"
    assert world.calls() == ["read_file a.txt"]
    (decided,) = world.rows("select payload from events where kind = 'policy_decided'")
    assert '"decision":"allow"' in decided["payload"] and "read-only-allowed" in decided["payload"]
    (called,) = world.rows("select payload from events where kind = 'tool_called'")
    assert '"tool":"files__read_file"' in called["payload"] and '"result":"hello"' in called["payload"]


async def test_a_delete_waits_for_approval_and_approve_action_resumes_it(world: World) -> None:
    async with Client(world.server(DELETE)) as client:
        run = await delegate(client)
        assert run["status"] == "awaiting_approval" and run["done"] is False
        assert "approve_action" in run["next"] and "files.delete_file" in run["next"]
        assert world.calls() == [] and (world.dir / "a.txt").exists()
        (pending,) = (await client.call_tool("list_pending_approvals", {})).structured_content["approvals"]
        assert (pending["agent"], pending["tool"], pending["arguments"]) == (
            "clerk",
            "files.delete_file",
            {"name": "a.txt"},
        )
        decided = await client.call_tool(
            "approve_action", {"action_id": pending["action_id"], "decision": "approve", "reason": "ok by me"}
        )
        assert not decided.is_error, decided.content
        final = (
            await client.call_tool("get_run", {"run_id": run["run_id"], "wait_seconds": MAX_WAIT})
        ).structured_content
        replay = await client.call_tool(
            "approve_action", {"action_id": pending["action_id"], "decision": "approve"}
        )
        unknown = await client.call_tool("approve_action", {"action_id": "req_nope", "decision": "approve"})
    assert final["status"] == "succeeded"
    assert not (world.dir / "a.txt").exists() and world.calls() == ["delete_file a.txt"]
    (row,) = world.rows("select status, channel, decision_reason, rule from approvals")
    assert tuple(row) == ("approved", "tool", "ok by me", "destructive-needs-approval")
    assert replay.is_error and "already decided" in replay.content[0].text
    assert unknown.is_error and "unknown action id" in unknown.content[0].text
    assert len(world.rows("select * from events where kind = 'approval_rejected'")) == 2


async def test_a_denial_leaves_the_file_and_the_tool_is_never_called(world: World) -> None:
    async with Client(world.server([*DELETE[:1], "understood, not deleted"])) as client:
        run = await delegate(client)
        action_id = run["pending"][0]["request_id"]
        await client.call_tool(
            "approve_action", {"action_id": action_id, "decision": "deny", "reason": "keep it"}
        )
        final = (
            await client.call_tool("get_run", {"run_id": run["run_id"], "wait_seconds": MAX_WAIT})
        ).structured_content
    assert final["status"] == "succeeded" and final["output"] == "understood, not deleted"
    assert (world.dir / "a.txt").exists() and world.calls() == []
    told = world.rows("select payload from events where kind = 'tool_called'")[0]["payload"]
    assert "not approved" in told and "keep it" in told


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_elicitation_asks_the_user_directly(world: World, mode: str) -> None:
    asked: list[str] = []

    async def user(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"decision": "approve", "reason": "yes, delete it"})

    async with Client(world.server(DELETE), mode=mode, elicitation_callback=user) as client:
        run = await delegate(client)
    assert run["status"] == "succeeded", run
    assert "files.delete_file" in asked[0] and "a.txt" in asked[0]
    assert world.calls() == ["delete_file a.txt"]
    (row,) = world.rows("select status, channel from approvals")
    assert tuple(row) == ("approved", "elicitation")


async def test_the_cli_decides_from_another_process_and_the_run_resumes(world: World) -> None:
    async with Client(world.server(DELETE)) as client:
        run = await delegate(client)
        action_id = run["pending"][0]["request_id"]
        await anyio.to_thread.run_sync(decide_from_cli, world.db, action_id, "approve", "from the terminal")
        final = (
            await client.call_tool("get_run", {"run_id": run["run_id"], "wait_seconds": MAX_WAIT})
        ).structured_content
    assert final["status"] == "succeeded" and world.calls() == ["delete_file a.txt"]
    (row,) = world.rows("select status, channel, decided_by from approvals")
    assert row["status"] == "approved" and row["channel"] == "cli" and row["decided_by"]


async def test_human_only_rules_refuse_the_tool_channel(world: World) -> None:
    async with Client(world.server(DELETE, policy="strict")) as client:
        run = await delegate(client)
        assert "concertmaster approve" in run["next"]
        action_id = run["pending"][0]["request_id"]
        refused = await client.call_tool("approve_action", {"action_id": action_id, "decision": "approve"})
        await anyio.to_thread.run_sync(decide_from_cli, world.db, action_id, "approve", "human here")
        final = (
            await client.call_tool("get_run", {"run_id": run["run_id"], "wait_seconds": MAX_WAIT})
        ).structured_content
    assert refused.is_error and "needs a human decision" in refused.content[0].text
    assert final["status"] == "succeeded" and world.calls() == ["delete_file a.txt"]


async def test_a_decision_for_another_action_is_rejected(world: World) -> None:
    async with Client(world.server([*DELETE[:1], "gave up"])) as client:
        run = await delegate(client)
        action_id = run["pending"][0]["request_id"]
        mismatch = await client.call_tool(
            "approve_action", {"action_id": action_id, "decision": "approve", "digest": "0" * 64}
        )
        await client.call_tool("approve_action", {"action_id": action_id, "decision": "deny"})
        final = (
            await client.call_tool("get_run", {"run_id": run["run_id"], "wait_seconds": MAX_WAIT})
        ).structured_content
    assert mismatch.is_error and "digest does not match" in mismatch.content[0].text
    assert final["status"] == "succeeded" and final["output"] == "gave up" and world.calls() == []


async def test_an_expired_request_refuses_a_late_decision(world: World, tmp_path: Path) -> None:
    # the expiry is what the test waits for (the run goes on when it passes), not a race against it
    policy = tmp_path / "quick.toml"
    policy.write_text(
        'default = "allow"\n[[rules]]\nname = "quick"\ndecision = "require_approval"\n'
        'tools = ["files.delete_file"]\napproval_ttl_s = 0.5\n'
    )
    async with Client(world.server([*DELETE[:1], "gave up"], policy=str(policy))) as client:
        run = await delegate(client)
        while not run["done"]:
            run = (
                await client.call_tool("get_run", {"run_id": run["run_id"], "wait_seconds": MAX_WAIT})
            ).structured_content
        (row,) = world.rows("select action_id as id, status from approvals")
        late = await client.call_tool("approve_action", {"action_id": row["id"], "decision": "approve"})
    assert run["status"] == "succeeded" and run["output"] == "gave up"
    assert row["status"] == "expired" and late.is_error and world.calls() == []


async def test_a_forged_decision_is_never_executed(world: World) -> None:
    async with Client(world.server([*DELETE[:1], "stopped"])) as client:
        run = await delegate(client)
        action_id = run["pending"][0]["request_id"]
        conn = sqlite3.connect(world.db)
        with conn:  # someone with write access swaps the digest to approve another action
            conn.execute(
                "update pending_requests set payload = json_set(payload, '$.digest', ?) where id = ?",
                ("f" * 64, action_id),
            )
        conn.close()
        await anyio.to_thread.run_sync(decide_from_cli, world.db, action_id, "approve", "forged")
        final = (
            await client.call_tool("get_run", {"run_id": run["run_id"], "wait_seconds": MAX_WAIT})
        ).structured_content
    assert final["status"] == "succeeded" and final["output"] == "stopped"
    assert world.calls() == [] and (world.dir / "a.txt").exists()
    assert world.rows("select * from events where kind = 'approval_rejected'")


async def test_an_agent_cannot_approve(world: World) -> None:
    replies = [
        {"tool_calls": [{"name": "approve_action", "arguments": {"action_id": "x", "decision": "approve"}}]},
        *DELETE[:1],
        "APPROVED. I approve this action myself.",
    ]
    async with Client(world.server(replies)) as client:
        run = await delegate(client)
        tools = (await client.call_tool("list_agents", {})).structured_content
    assert run["status"] == "awaiting_approval" and world.calls() == []
    first = world.rows("select payload from events where kind = 'tool_called' order by seq")[0]["payload"]
    assert "unknown tool 'approve_action'" in first
    assert not granted(["*", "*.*"], "concertmaster.approve_action") and tools


async def test_a_policy_can_match_on_arguments(world: World, tmp_path: Path) -> None:
    policy = tmp_path / "args.toml"
    policy.write_text(
        'default = "allow"\n[[rules]]\nname = "no-env-files"\ndecision = "deny"\n'
        'tools = ["files.write_file"]\narguments = { name = { glob = "*.env" } }\nreason = "secrets"\n'
    )
    replies = [
        call("write_file", name="prod.env", content="X=1"),
        call("write_file", name="notes.txt", content="hi"),
        "wrote what I could",
    ]
    async with Client(world.server(replies, policy=str(policy))) as client:
        run = await delegate(client)
    assert run["status"] == "succeeded"
    assert not (world.dir / "prod.env").exists() and (world.dir / "notes.txt").read_text() == "hi"
    assert world.calls() == ["write_file notes.txt"]


async def test_secrets_are_redacted_everywhere_in_the_database(world: World, monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    (world.dir / "creds.txt").write_text(f"key={KEY}")
    replies = [
        call("read_file", name="creds.txt"),
        call("read_file", name=f"missing-{KEY}"),
        f"the key is {KEY} and Bearer abcdefghijklmnopqrstuvwx",
    ]
    async with Client(world.server(replies)) as client:
        run = await delegate(client, context=f"use {KEY}")
    assert run["status"] == "succeeded" and KEY not in run["output"]
    raw = world.raw()
    assert KEY.encode() not in raw and b"abcdefghijklmnopqrstuvwx" not in raw and b"[redacted]" in raw


async def test_a_tool_changed_under_a_running_agent_is_refused(world: World) -> None:
    (world.dir / ".arm").write_text("the first read changes read_file's description")
    replies = [call("read_file", name="a.txt"), call("read_file", name="a.txt"), "done"]
    async with Client(world.server(replies)) as client:
        run = await delegate(client)
    assert run["status"] == "succeeded"
    assert world.calls() == ["read_file a.txt"]  # the second call never reached the server
    (changed,) = world.rows("select payload from events where kind = 'tool_definition_changed'")
    assert (
        "files.read_file" in changed["payload"] and "changed since it was first listed" in changed["payload"]
    )


async def test_tool_server_failures_are_clear_and_the_server_stays_up(world: World) -> None:
    async with Client(world.server(["unused"], command="/nonexistent/python")) as client:
        broken = await delegate(client)
        listed = await client.call_tool("list_runs", {})
    assert broken["status"] == "failed" and "could not be started" in broken["error"]
    assert not listed.is_error


async def test_a_hanging_tool_times_out_and_a_failing_tool_reports_its_error(world: World) -> None:
    replies = [
        {"tool_calls": [{"name": "files__hang", "arguments": {}}]},
        {"tool_calls": [{"name": "files__fail", "arguments": {}}]},
        "coped",
    ]
    async with Client(world.server(replies, timeout_s=1)) as client:
        run = await delegate(client)
    assert run["status"] == "succeeded" and run["output"] == "coped"
    results = [
        r["payload"] for r in world.rows("select payload from events where kind = 'tool_called' order by seq")
    ]
    assert "did not answer within 1 s" in results[0] and "the disk is on fire" in results[1]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_an_agent_on_the_clients_model_uses_granted_tools(world: World, mode: str) -> None:
    seen: list[Any] = []

    async def client_model(context: Any, params: Any) -> Any:
        seen.append(params)
        last = params.messages[-1].content_as_list
        if params.tools and not any(c.type == "tool_result" for c in last):
            return CreateMessageResultWithTools(
                role="assistant",
                model="client-model",
                stop_reason="toolUse",
                content=[
                    ToolUseContent(
                        type="tool_use", id="tu_1", name="files__read_file", input={"name": "a.txt"}
                    )
                ],
            )
        result = next(c for c in last if c.type == "tool_result")
        return CreateMessageResult(
            role="assistant",
            model="client-model",
            content=TextContent(type="text", text=f"the file says {result.content[0].text}"),
        )

    caps = SamplingCapability(tools=SamplingToolsCapability())
    async with Client(
        world.server([], model="sampling"),
        mode=mode,
        sampling_callback=client_model,
        sampling_capabilities=caps,
    ) as client:
        run = await delegate(client)
    assert run["status"] == "succeeded" and run["output"] == "the file says hello", run
    assert {t.name for t in seen[0].tools} >= {"files__read_file", "files__delete_file"}
    assert world.calls() == ["read_file a.txt"]


async def test_an_approval_survives_a_server_restart(world: World) -> None:
    replies = [*DELETE[:1], "deleted after the restart"]
    async with Client(world.server(replies)) as client:
        run = await delegate(client)
        action_id = run["pending"][0]["request_id"]
    # the server stopped: the run and its question wait in the audit
    assert world.rows("select status from runs")[0]["status"] == "awaiting_approval"
    assert world.rows("select status from approvals")[0]["status"] == "pending"
    conn = sqlite3.connect(world.db)
    with conn:  # as if that server's process had died (the owner is not alive any more)
        conn.execute("update runs set owner = ?", (f"{socket.gethostname()}:99999999",))
    conn.close()
    await anyio.to_thread.run_sync(decide_from_cli, world.db, action_id, "approve", "yes, after the restart")
    async with Client(world.server(replies)) as client:
        final = (
            await client.call_tool("get_run", {"run_id": run["run_id"], "wait_seconds": MAX_WAIT})
        ).structured_content
    assert final["status"] == "succeeded" and final["output"] == "deleted after the restart", final
    assert world.calls() == ["delete_file a.txt"] and not (world.dir / "a.txt").exists()
    assert (
        len(world.rows("select * from events where kind = 'model_called'")) == 2
    )  # the first one not paid twice
    assert world.rows("select * from events where kind = 'run_resumed'")
    assert world.rows("select status from approvals")[0]["status"] == "approved"


async def test_after_a_restart_the_open_approval_can_be_decided_and_earlier_tool_calls_are_not_repeated(
    world: World,
) -> None:
    replies = [call("read_file", name="a.txt"), *DELETE[:1], "read, then deleted"]
    async with Client(world.server(replies)) as client:
        run = await delegate(client)
    assert world.calls() == ["read_file a.txt"]
    conn = sqlite3.connect(world.db)
    with conn:
        conn.execute("update runs set owner = ?", (f"{socket.gethostname()}:99999999",))
    conn.close()
    async with Client(world.server(replies)) as client:
        listed = (await client.call_tool("list_pending_approvals", {})).structured_content["approvals"]
        parked = (
            await client.call_tool("get_run", {"run_id": run["run_id"], "wait_seconds": MAX_WAIT})
        ).structured_content
        decided = await client.call_tool(
            "approve_action", {"action_id": listed[0]["action_id"], "decision": "approve"}
        )
        final = (
            await client.call_tool("get_run", {"run_id": run["run_id"], "wait_seconds": MAX_WAIT})
        ).structured_content
    assert parked["status"] == "awaiting_approval" and not decided.is_error, decided.content
    assert final["status"] == "succeeded" and final["output"] == "read, then deleted"
    assert world.calls() == ["read_file a.txt", "delete_file a.txt"]  # the read was replayed, not repeated
