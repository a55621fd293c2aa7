"""Agents on the host's own model (`model = "host"`): a test client plays the host through submit_step, in both
protocol eras, for one agent, parallel branches, a group chat, a plan, and a host agent using a granted tool."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp_types import Implementation

from orchestration.config import TeamConfig
from server.app import build_server
from server.settings import Settings
from tests.conftest import team
from tests.server.test_governance import World
from tests.server.test_http import free_port

pytestmark = pytest.mark.anyio

ERAS = ["legacy", "auto"]  # 2025-11-25 handshake, and the SDK's default negotiation (2026-07-28)
HOST = Implementation(name="test-host", version="1.0")

TEAM = team(
    solo={"model": "host", "instructions": "You are solo. Answer in one word."},
    alpha={"model": "host", "group": "red"},
    beta={"model": "host", "group": "blue"},
    gamma={"model": "host"},
    planner={"model": "host"},
    auto={"model": "auto"},
)

Brain = Callable[[dict[str, Any]], dict[str, Any]]
"""Answers one host step: returns submit_step's `output` (and optionally `tool_calls`)."""


def rows(db: Path, sql: str, *params: Any) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def server(db: Path):
    return build_server(Settings(db=db, default_wait_seconds=30), config=TEAM)


def last_text(step: dict[str, Any]) -> str:
    return str(step["messages"][-1].get("text", ""))


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    return result.structured_content


async def play(client: Client, run: dict[str, Any], brain: Brain) -> tuple[dict[str, Any], list[list[str]]]:
    """Be the host until the run ends: answer every handed-over step (a batch at a time, in parallel, in
    reverse order). Returns the final run and the agents of each batch."""
    batches: list[list[str]] = []
    run_id = run["run_id"]

    async def answer(step: dict[str, Any]) -> None:
        await call(client, "submit_step", run_id=run_id, step_id=step["step_id"], **brain(step))

    while not run["done"]:
        steps = run["host_steps"]
        assert steps, f"the run neither ended nor handed over steps: {run}"
        batches.append([s["agent"] for s in steps])
        async with anyio.create_task_group() as tg:
            for step in reversed(steps):
                tg.start_soon(answer, step)
        run = await call(client, "get_run", run_id=run_id, wait_seconds=30)
    return run, batches


def echo(step: dict[str, Any]) -> dict[str, Any]:
    return {"output": f"{step['agent']} did: {last_text(step)[:40]}"}


@pytest.mark.parametrize("mode", ERAS)
async def test_a_delegated_task_is_handed_to_the_host_and_its_answer_ends_the_run(
    db: Path, mode: str
) -> None:
    async with Client(server(db), mode=mode, client_info=HOST) as client:
        run = await call(client, "delegate_task", agent="solo", task="name a colour")
        assert run["status"] == "awaiting_host" and run["done"] is False
        (step,) = run["host_steps"]
        assert step["agent"] == "solo" and step["instructions"] == "You are solo. Answer in one word."
        assert step["messages"] == [{"role": "user", "text": "name a colour"}] and step["tools"] == []
        assert "submit_step" in run["next"]
        final = await call(
            client, "submit_step", run_id=run["run_id"], step_id=step["step_id"], output="Teal"
        )
    assert final["status"] == "succeeded" and final["output"] == "Teal" and final["host_steps"] == []
    assert final["usage"]["input_tokens"] is None and final["usage"]["cost_usd"] is None
    (row,) = rows(db, "select provider, model, input_tokens, output_tokens, cost_usd, output from steps")
    assert tuple(row) == ("host", "test-host", None, None, None, "Teal")
    (called,) = rows(db, "select payload from events where kind = 'model_called'")
    assert json.loads(called["payload"])["provider"] == "host"
    (request,) = rows(db, "select kind, status, channel, decided_by, step_id from pending_requests")
    assert tuple(request)[:4] == ("host_step", "resolved", "submit_step", "test-host")
    assert request["step_id"] == rows(db, "select id from steps")[0]["id"]
    kinds = [r["kind"] for r in rows(db, "select kind from events order by seq")]
    assert kinds.index("input_requested") < kinds.index("input_received") < kinds.index("run_finished")


async def test_auto_without_key_or_sampling_runs_on_the_host(db: Path, monkeypatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    async with Client(server(db), mode="legacy", client_info=HOST) as client:
        agents = (await call(client, "list_agents"))["agents"]
        run = await call(client, "delegate_task", agent="auto", task="hi")
        final, _ = await play(client, run, echo)
    assert next(a for a in agents if a["name"] == "auto")["runs_on"] == "host"
    assert final["status"] == "succeeded" and final["output"] == "auto did: hi"


@pytest.mark.parametrize("mode", ERAS)
async def test_parallel_branches_are_handed_over_together_and_answered_in_any_order(
    db: Path, mode: str
) -> None:
    async with Client(server(db), mode=mode, client_info=HOST) as client:
        run = await call(
            client,
            "run_concurrent",
            agents=["alpha", "beta", "gamma"],
            task="pick a number",
            reconcile="majority",
        )
        assert run["status"] == "awaiting_host"
        assert sorted(s["agent"] for s in run["host_steps"]) == ["alpha", "beta", "gamma"]
        final, batches = await play(client, run, lambda s: {"output": "7"})
    assert final["status"] == "succeeded" and final["output"] == "7"
    assert len(batches) == 1
    assert {r["model"] for r in rows(db, "select model from steps")} == {"test-host"}


@pytest.mark.parametrize("mode", ERAS)
async def test_a_group_chat_on_the_host_shares_the_transcript_and_ends_on_the_phrase(
    db: Path, mode: str
) -> None:
    seen: list[tuple[str, str]] = []

    def brain(step: dict[str, Any]) -> dict[str, Any]:
        transcript = json.dumps(step["messages"])
        seen.append((step["agent"], transcript))
        if step["agent"] == "alpha":
            return {"output": "I propose Nova."}
        return {"output": "Nova is fine. TERMINATE"}

    async with Client(server(db), mode=mode, client_info=HOST) as client:
        run = await call(client, "start_group_chat", agents=["alpha", "beta"], topic="name the product")
        final, batches = await play(client, run, brain)
    assert final["status"] == "succeeded", final
    assert batches == [["alpha"], ["beta"]]
    assert "I propose Nova." in seen[1][1]  # beta saw alpha's turn on the shared transcript


async def test_a_federated_chat_hands_the_host_only_what_the_agent_may_see(db: Path) -> None:
    seen: dict[str, str] = {}

    def brain(step: dict[str, Any]) -> dict[str, Any]:
        seen.setdefault(step["agent"], json.dumps(step["messages"]))
        if step["agent"] == "alpha":
            return {"output": "red secret: budget 42k\nSHARE: try Nova"}
        return {"output": "Nova it is. TERMINATE"}

    async with Client(server(db), client_info=HOST) as client:
        run = await call(
            client, "start_group_chat", agents=["alpha", "beta"], topic="name it", control="federated"
        )
        final, _ = await play(client, run, brain)
    assert final["status"] == "succeeded", final
    assert "try Nova" in seen["beta"] and "budget 42k" not in seen["beta"]


@pytest.mark.parametrize("mode", ERAS)
async def test_a_plan_on_the_host_runs_independent_subtasks_together(db: Path, mode: str) -> None:
    plan = {
        "subtasks": [
            {"id": "s1", "agent": "alpha", "task": "facts", "depends_on": []},
            {"id": "s2", "agent": "beta", "task": "figures", "depends_on": []},
            {"id": "s3", "agent": "gamma", "task": "write it up", "depends_on": ["s1", "s2"]},
        ]
    }

    def brain(step: dict[str, Any]) -> dict[str, Any]:
        if step["agent"] == "planner":
            return {"output": json.dumps(plan)}
        text = last_text(step)
        if step["agent"] == "gamma":
            assert "alpha's facts" in text and "beta's figures" in text  # its inputs are the others' outputs
            return {"output": "the report"}
        return {"output": f"{step['agent']}'s {'facts' if step['agent'] == 'alpha' else 'figures'}"}

    async with Client(server(db), mode=mode, client_info=HOST) as client:
        run = await call(
            client,
            "plan_and_execute",
            goal="a short report",
            agents=["alpha", "beta", "gamma"],
            planner="planner",
        )
        final, batches = await play(client, run, brain)
    assert final["status"] == "succeeded" and final["output"] == "the report"
    assert [sorted(b) for b in batches] == [["planner"], ["alpha", "beta"], ["gamma"]]


@pytest.mark.parametrize("mode", ERAS)
async def test_a_host_agent_uses_its_granted_tool_after_a_human_approves(tmp_path: Path, mode: str) -> None:
    world = World(tmp_path)
    app = world.server([], model="host")
    async with Client(app, mode=mode, client_info=HOST) as client:
        run = await call(client, "delegate_task", agent="clerk", task="delete a.txt")
        (step,) = run["host_steps"]
        assert {t["name"] for t in step["tools"]} >= {"files__delete_file", "files__read_file"}
        parked = await call(
            client,
            "submit_step",
            run_id=run["run_id"],
            step_id=step["step_id"],
            output="deleting it",
            tool_calls=[{"name": "files__delete_file", "arguments": {"name": "a.txt"}}],
        )
        assert parked["status"] == "awaiting_approval" and parked["host_steps"] == []
        assert world.calls() == [] and (world.dir / "a.txt").exists()
        action_id = parked["pending"][0]["request_id"]
        await call(client, "approve_action", action_id=action_id, decision="approve", reason="fine")
        after = await call(client, "get_run", run_id=run["run_id"], wait_seconds=30)
        (step,) = after["host_steps"]  # the next host step shows the tool's result
        assert step["messages"][-2]["tool_calls"][0]["name"] == "files__delete_file"
        (result,) = step["messages"][-1]["tool_results"]
        assert result["is_error"] is False
        final = await call(
            client, "submit_step", run_id=run["run_id"], step_id=step["step_id"], output="a.txt is gone"
        )
    assert final["status"] == "succeeded" and final["output"] == "a.txt is gone"
    assert world.calls() == ["delete_file a.txt"] and not (world.dir / "a.txt").exists()
    (approval,) = world.rows("select status, channel from approvals")
    assert tuple(approval) == ("approved", "tool")
    (tool,) = world.rows("select payload from events where kind = 'tool_called'")
    assert '"tool":"files__delete_file"' in tool["payload"]
    assert [r["provider"] for r in world.rows("select provider from steps")] == ["host"]


async def test_the_status_follows_what_a_mixed_run_still_waits_for(tmp_path: Path) -> None:
    world = World(tmp_path)
    config = world.config([], model="host").model_dump()
    config["agents"]["helper"] = {"description": "d", "instructions": "Help.", "model": "host"}
    app = build_server(
        Settings(db=world.db, default_wait_seconds=30), config=TeamConfig.model_validate(config)
    )
    async with Client(app, client_info=HOST) as client:
        run = await call(client, "run_concurrent", agents=["clerk", "helper"], task="tidy up")
        steps = {s["agent"]: s["step_id"] for s in run["host_steps"]}
        delete = [{"name": "files__delete_file", "arguments": {"name": "a.txt"}}]
        both = await call(
            client, "submit_step", run_id=run["run_id"], step_id=steps["clerk"], output="", tool_calls=delete
        )
        assert both["status"] == "awaiting_host" and [p["kind"] for p in both["pending"]] == [
            "host_step",
            "approval",
        ]
        assert "submit_step" in both["next"] and "approve_action" in both["next"]
        human = await call(
            client, "submit_step", run_id=run["run_id"], step_id=steps["helper"], output="helped"
        )
        assert human["status"] == "awaiting_approval" and human["host_steps"] == []
        await call(client, "approve_action", action_id=human["pending"][0]["request_id"], decision="approve")
        last = await call(client, "get_run", run_id=run["run_id"], wait_seconds=30)
        assert last["status"] == "awaiting_host"
        final, _ = await play(client, last, lambda s: {"output": "deleted"})
    assert final["status"] == "succeeded" and world.calls() == ["delete_file a.txt"]


@pytest.mark.parametrize("mode", ERAS)
async def test_wrong_duplicate_late_and_oversized_answers_are_refused_and_the_run_goes_on(
    db: Path, mode: str
) -> None:
    async def refused(client: Client, **arguments: Any) -> str:
        result = await client.call_tool("submit_step", arguments)
        assert result.is_error, result.structured_content
        return result.content[0].text  # type: ignore[union-attr]

    async with Client(server(db), mode=mode, client_info=HOST) as client:
        run = await call(client, "run_concurrent", agents=["alpha", "beta"], task="t")
        run_id = run["run_id"]
        first, second = run["host_steps"]
        other = await call(client, "delegate_task", agent="solo", task="u")
        (elsewhere,) = other["host_steps"]

        unknown = await refused(client, run_id=run_id, step_id="req_nope", output="x")
        crossed = await refused(client, run_id=run_id, step_id=elsewhere["step_id"], output="x")
        huge = await refused(client, run_id=run_id, step_id=first["step_id"], output="x" * 100_001)
        tool = await refused(
            client,
            run_id=run_id,
            step_id=first["step_id"],
            output="x",
            tool_calls=[{"name": "rm", "arguments": {}}],
        )
        blank = await refused(client, run_id=run_id, step_id=first["step_id"], output="  ")
        malformed = await refused(
            client, run_id=run_id, step_id=first["step_id"], output="x", tool_calls=[{"tool": "rm"}]
        )
        no_run = await refused(client, run_id="run_nope", step_id=first["step_id"], output="x")
        # nothing above touched the run: both steps are still open
        assert {s["step_id"] for s in (await call(client, "get_run", run_id=run_id))["host_steps"]} == {
            first["step_id"],
            second["step_id"],
        }
        await call(client, "submit_step", run_id=run_id, step_id=first["step_id"], output="yes")
        duplicate = await refused(client, run_id=run_id, step_id=first["step_id"], output="no")
        final = await call(client, "submit_step", run_id=run_id, step_id=second["step_id"], output="yes")

        cancelled = await call(client, "cancel_run", run_id=other["run_id"])
        late = await refused(client, run_id=other["run_id"], step_id=elsewhere["step_id"], output="x")

    assert f"run {run_id!r} has no host step 'req_nope'" in unknown and second["step_id"] in unknown
    assert f"belongs to run {other['run_id']!r}" in crossed
    assert "output" in huge and "100000" in huge.replace(",", "")
    assert "tool 'rm' is not offered" in tool and "none" in tool
    assert "blank" in blank
    assert "tool_calls[0] must be" in malformed and "unknown key(s) tool" in malformed
    assert "no run with id 'run_nope'" in no_run
    assert "already answered (duplicate refused)" in duplicate
    assert final["status"] == "succeeded" and final["output"] == "## alpha\nyes\n\n## beta\nyes"
    assert cancelled["status"] == "cancelled"
    assert "is cancelled" in late and "no longer awaited" in late
    answers = rows(db, "select status, count(*) as n from pending_requests group by status order by status")
    assert [(r["status"], r["n"]) for r in answers] == [("cancelled", 1), ("resolved", 2)]
    assert len(rows(db, "select * from events where kind = 'input_received'")) == 2


async def test_a_host_agent_hands_off_with_a_tool_call(db: Path) -> None:
    def brain(step: dict[str, Any]) -> dict[str, Any]:
        if step["agent"] == "solo":
            assert "transfer_to_beta" in {t["name"] for t in step["tools"]}
            return {
                "output": "",
                "tool_calls": [{"name": "transfer_to_beta", "arguments": {"message": "yours"}}],
            }
        return {"output": "beta finished it"}

    async with Client(server(db), client_info=HOST) as client:
        run = await call(client, "delegate_task", agent="solo", task="t", allow_handoffs=True)
        final, batches = await play(client, run, brain)
    assert final["status"] == "succeeded" and final["output"] == "beta finished it"
    assert batches == [["solo"], ["beta"]]
    assert rows(db, "select count(*) as n from events where kind = 'handoff'")[0]["n"] == 1


async def test_host_steps_survive_a_server_restart_with_their_step_ids(db: Path) -> None:
    async with Client(server(db), client_info=HOST) as client:
        run = await call(client, "run_concurrent", agents=["alpha", "beta"], task="t", reconcile="all")
        first, second = sorted(run["host_steps"], key=lambda s: s["agent"])
        await call(
            client, "submit_step", run_id=run["run_id"], step_id=first["step_id"], output="alpha's part"
        )
    # the server stopped: the run and its open host step wait in the audit
    assert rows(db, "select status from runs")[0]["status"] == "awaiting_host"
    conn = sqlite3.connect(db)
    with conn:  # as if that server's process had died (the owner is not alive any more)
        conn.execute("update runs set owner = ?", (f"{socket.gethostname()}:99999999",))
    conn.close()
    async with Client(server(db), client_info=HOST) as client:
        again = await call(client, "get_run", run_id=run["run_id"], wait_seconds=30)
        (step,) = again["host_steps"]
        assert (step["step_id"], step["agent"]) == (second["step_id"], "beta")
        final = await call(
            client, "submit_step", run_id=run["run_id"], step_id=step["step_id"], output="beta's part"
        )
    assert final["status"] == "succeeded"
    assert final["output"] == "## alpha\nalpha's part\n\n## beta\nbeta's part"
    assert len(rows(db, "select * from events where kind = 'input_readopted'")) == 1
    assert len(rows(db, "select * from pending_requests")) == 2  # nothing asked twice


HOST_CONFIG = """
[agents.left]
description = "d"
instructions = "You are left."
model = "host"

[agents.right]
description = "d"
instructions = "You are right."
model = "auto"
"""


def served_env(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "concertmaster.toml"
    config.write_text(HOST_CONFIG)
    env = {**os.environ, "CONCERTMASTER_DB": str(tmp_path / "audit.db"), "CONCERTMASTER_CONFIG": str(config)}
    env.pop("ANTHROPIC_API_KEY", None)
    env.pop("ANTHROPIC_AUTH_TOKEN", None)
    return env


async def play_both_branches(client: Client) -> dict[str, Any]:
    run = await call(client, "run_concurrent", agents=["left", "right"], task="which side?", reconcile="all")
    assert sorted(s["agent"] for s in run["host_steps"]) == ["left", "right"]
    final, batches = await play(client, run, lambda s: {"output": f"{s['agent']} side"})
    assert len(batches) == 1
    return final


@pytest.mark.parametrize("mode", ERAS)
async def test_host_steps_over_stdio(tmp_path: Path, mode: str) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "server", "serve"], env=served_env(tmp_path)
    )
    async with Client(params, mode=mode, client_info=HOST) as client:
        final = await play_both_branches(client)
    assert final["status"] == "succeeded" and final["output"] == "## left\nleft side\n\n## right\nright side"
    models = rows(tmp_path / "audit.db", "select provider, model from steps")
    assert {tuple(r) for r in models} == {("host", "test-host")}


@pytest.fixture
def http_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--http", "--port", str(port)],
        env=served_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("mode", ERAS)
async def test_host_steps_over_streamable_http(http_url: str, tmp_path: Path, mode: str) -> None:
    async with Client(http_url, mode=mode, client_info=HOST) as client:
        final = await play_both_branches(client)
    assert final["status"] == "succeeded" and "right side" in final["output"]
    assert {tuple(r) for r in rows(tmp_path / "audit.db", "select provider, model from steps")} == {
        ("host", "test-host")
    }


def wait_for_port(port: int) -> None:
    """Until the server listens (bounded generously: a loaded machine starts Python slowly)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
