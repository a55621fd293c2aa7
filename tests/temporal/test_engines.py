"""Every pattern tool end to end through MCP on both engines: the same results and the same audit rows."""

from __future__ import annotations

import sqlite3
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from orchestration.audit.read import verify_chain
from orchestration.config import TeamConfig
from server.app import build_server
from server.settings import Settings
from tests.server.test_pattern_tools import CONFIG as PATTERNS
from tests.server.test_pattern_tools import agent
from tests.temporal.conftest import on_temporal, worker

pytestmark = pytest.mark.anyio

CONFIG = PATTERNS.model_copy(
    update={
        "agents": {
            **PATTERNS.agents,
            **TeamConfig.model_validate(
                {
                    "agents": {
                        "triage": agent(
                            [{"text": "", "tool_calls": [{"name": "transfer_to_writer", "arguments": {}}]}],
                            routes=["writer"],
                        )
                    }
                }
            ).agents,
        }
    }
)

CASES: list[tuple[str, dict[str, Any]]] = [
    ("delegate_task", {"agent": "writer", "task": "a haiku about rain"}),
    ("run_sequential", {"agents": ["writer", "reviewer"], "task": "a haiku"}),
    ("run_sequential", {"agents": ["writer", "duo"], "task": "a haiku", "control": "hierarchical"}),
    (
        "run_concurrent",
        {"agents": ["voter1", "voter2", "voter3"], "task": "capital of France?", "reconcile": "majority"},
    ),
    ("start_group_chat", {"agents": ["writer", "reviewer"], "topic": "naming", "max_turns": 3}),
    ("run_magentic", {"goal": "write a poem", "agents": ["writer"], "manager": "manager"}),
    ("plan_and_execute", {"goal": "an essay", "agents": ["writer", "reviewer"]}),
    ("run_handoff", {"agent": "triage", "agents": ["triage", "writer"], "task": "a haiku"}),
    ("run_sequential", {"agents": ["writer", "reviewer"], "task": "t", "limits": {"max_steps": 1}}),
]


def audit_of(db: Path, run_id: str) -> dict[str, Any]:
    """What the audit says of a run, without ids, times and latencies (which differ between any two runs)."""
    conn = sqlite3.connect(db)
    try:
        run = conn.execute(
            "select pattern, control, status, stop_reason, output, error, input_tokens, output_tokens"
            " from runs where id = ?",
            (run_id,),
        ).fetchone()
        steps = sorted(
            conn.execute(
                "select key, agent, status, output, error, input_tokens, output_tokens, parent_step_id is null"
                " from steps where run_id = ?",
                (run_id,),
            ).fetchall()
        )
        kinds = Counter(k for (k,) in conn.execute("select kind from events where run_id = ?", (run_id,)))
    finally:
        conn.close()
    return {"run": run, "steps": steps, "events": dict(kinds)}


async def replays_deterministically(address: str, run_id: str) -> None:
    """The run's recorded history replays through the workflow code without a nondeterminism error (what a
    worker taking over a run does)."""
    from temporalio.client import Client as TemporalClient
    from temporalio.worker import Replayer

    from orchestration.temporal.worker import workflow_runner
    from orchestration.temporal.workflow import RunWorkflow

    history = await (await TemporalClient.connect(address)).get_workflow_handle(run_id).fetch_history()
    await Replayer(workflows=[RunWorkflow], workflow_runner=workflow_runner()).replay_workflow(history)


async def call_on(engine: str, db: Path, config: TeamConfig, tool: str, arguments: dict[str, Any]) -> Any:
    async with AsyncExitStack() as stack:
        if engine == "temporal":
            await stack.enter_async_context(worker(config))
        client = await stack.enter_async_context(
            Client(build_server(Settings(db=db, default_wait_seconds=30), config=config))
        )
        result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    return result.structured_content


@pytest.mark.parametrize(("tool", "arguments"), CASES, ids=[f"{t}-{i}" for i, (t, _) in enumerate(CASES)])
async def test_pattern_tools_give_the_same_results_and_audit_on_both_engines(
    tmp_path: Path, temporal_address: str, tool: str, arguments: dict[str, Any]
) -> None:
    seen = {}
    for engine in ("embedded", "temporal"):
        db = tmp_path / f"{engine}.db"
        config = on_temporal(CONFIG, temporal_address) if engine == "temporal" else CONFIG
        run = await call_on(engine, db, config, tool, arguments)
        assert run["done"], run
        audit = audit_of(db, run["run_id"])
        seen[engine] = (
            {k: run[k] for k in ("status", "stop_reason", "output", "error", "pattern", "steps")},
            audit,
        )
        assert verify_chain(db).ok
    assert seen["temporal"] == seen["embedded"]
    await replays_deterministically(temporal_address, run["run_id"])
    if arguments.get("limits"):
        assert seen["temporal"][0]["stop_reason"] == "max_steps"
    else:
        assert seen["temporal"][0]["status"] in ("succeeded", "stopped")


HOST_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("delegate_task", {"agent": "solo", "task": "name a colour"}, "legacy"),
    (
        "run_concurrent",
        {"agents": ["alpha", "beta", "gamma"], "task": "pick a number", "reconcile": "majority"},
        "auto",
    ),
]
"""Runs of `host` agents, in both protocol eras (the host answers every step with submit_step)."""


@pytest.mark.parametrize(("tool", "arguments", "mode"), HOST_CASES, ids=[t for t, _, _ in HOST_CASES])
async def test_host_agents_answered_with_submit_step_give_the_same_results_and_audit_on_both_engines(
    tmp_path: Path, temporal_address: str, tool: str, arguments: dict[str, Any], mode: str
) -> None:
    from tests.server.test_host_model import HOST, TEAM, play

    seen = {}
    for engine in ("embedded", "temporal"):
        db = tmp_path / f"{engine}.db"
        config = on_temporal(TEAM, temporal_address) if engine == "temporal" else TEAM
        async with AsyncExitStack() as stack:
            if engine == "temporal":
                await stack.enter_async_context(worker(config))
            client = await stack.enter_async_context(
                Client(
                    build_server(Settings(db=db, default_wait_seconds=30), config=config),
                    mode=mode,
                    client_info=HOST,
                )
            )
            started = await client.call_tool(tool, arguments)
            assert not started.is_error, started.content
            run = started.structured_content
            assert run["status"] == "awaiting_host", run
            handed = sorted(s["agent"] for s in run["host_steps"])
            final, batches = await play(client, run, lambda step: {"output": "7"})
        conn = sqlite3.connect(db)
        try:
            requests = sorted(
                conn.execute("select kind, status, channel, decided_by from pending_requests").fetchall()
            )
            models = sorted(
                conn.execute("select provider, model from steps where agent != 'team'").fetchall()
            )
        finally:
            conn.close()
        seen[engine] = (
            {k: final[k] for k in ("status", "stop_reason", "output", "error", "pattern", "steps")},
            audit_of(db, final["run_id"]),
            handed,
            batches,
            requests,
            models,
        )
        assert verify_chain(db).ok
    assert seen["temporal"] == seen["embedded"]
    result, _audit, handed, batches, requests, models = seen["temporal"]
    assert result["status"] == "succeeded" and handed == sorted(arguments.get("agents", ["solo"]))
    assert len(batches) == 1  # parallel branches are handed over together, as on the embedded engine
    assert requests == [("host_step", "resolved", "submit_step", "test-host")] * len(handed)
    assert {m for m in models} == {("host", "test-host")}
    await replays_deterministically(temporal_address, final["run_id"])
