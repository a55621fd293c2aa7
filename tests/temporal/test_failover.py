"""Runs on Temporal survive their worker, their server and wait for humans durably; cancel and timeouts.

Waits are for events (a held model call reached, a status reached), bounded by generous caps; nothing asserts
on time.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from orchestration.audit.read import verify_chain
from orchestration.config import TeamConfig, load_config
from orchestration.context import RunContext
from orchestration.models.base import ModelRequest, ModelResponse, Usage
from server.app import build_server
from server.settings import Settings
from tests.temporal.conftest import on_temporal, worker
from tests.temporal.fakes import fake_api

pytestmark = pytest.mark.anyio
KEY = "sk-ant-failover-" + "k" * 24


def write_config(tmp_path: Path, address: str, agents: dict[str, dict[str, Any]]) -> Path:
    lines = [
        "[engine]",
        'kind = "temporal"',
        f'address = "{address}"',
        f'task_queue = "f-{uuid.uuid4().hex[:10]}"',
        "heartbeat_s = 10",
    ]
    for name, spec in agents.items():
        lines += [f"[agents.{name}]", f'description = "{name}"', f'instructions = "You are {name}."']
        lines += [f"{k} = {json.dumps(v)}" for k, v in spec.items() if k != "scripted"]
        if "scripted" in spec:
            lines += [f"[agents.{name}.scripted]", f"replies = {json.dumps(spec['scripted'])}"]
    path = tmp_path / "concertmaster.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def worker_process(config: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`concertmaster worker` in a subprocess, returned once it says it is ready."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "worker", "--config", str(config)], env=env, stderr=out
        )
    try:
        for _ in range(1200):  # a cap, not a timing assumption: the loop ends when the worker says ready
            if b"ready" in log.read_bytes() or process.poll() is not None:
                break
            import time

            time.sleep(0.1)
        assert process.poll() is None, log.read_text()
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


async def until_done(client: Client, run_id: str) -> dict[str, Any]:
    for _ in range(20):
        run = (await client.call_tool("get_run", {"run_id": run_id, "wait_seconds": 30})).structured_content
        if run["done"]:
            return run
    raise AssertionError(f"run {run_id} did not end: {run}")


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


async def test_a_killed_worker_s_run_finishes_on_another_and_no_recorded_call_is_repeated(
    tmp_path: Path, temporal_address: str
) -> None:
    agents = {f"a{i}": {"model": "anthropic:claude-test"} for i in range(1, 5)}
    config_file = write_config(tmp_path, temporal_address, agents)
    db = tmp_path / "audit.db"
    with fake_api() as (url, api):
        env = {**os.environ, "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": url}
        api.hold_call = 3  # the third model call is in flight when its worker is killed
        server = build_server(Settings(db=db), config=load_config(config_file))
        async with Client(server) as client:
            with worker_process(config_file, env, tmp_path / "w1.log") as first:
                started = await client.call_tool(
                    "run_sequential", {"agents": list(agents), "task": "write it", "wait_seconds": 0}
                )
                run_id = started.structured_content["run_id"]
                assert await anyio.to_thread.run_sync(api.held.wait, 120)
                first.kill()
            api.release.set()
            with worker_process(config_file, env, tmp_path / "w2.log"):
                run = await until_done(client, run_id)
    assert run["status"] == "succeeded", run
    assert run["output"].startswith("You are a4. did:")
    recorded = rows(db, "select count(*) from events where run_id = ? and kind = 'model_called'", run_id)[0][
        0
    ]
    assert recorded == 4
    # five calls for four steps: the one in flight when its worker died was asked again, no recorded one was
    assert len(api.seen) == 5 and api.seen[2] == api.seen[3], api.seen
    assert len(set(api.seen)) == 4
    assert [s for (s,) in rows(db, "select status from steps where run_id = ? order by rowid", run_id)] == [
        "succeeded"
    ] * 4
    assert verify_chain(db).ok


class GatedModel:
    """A model whose `gate_at`-th call waits for `gate` (so the test acts while a run is mid-flight)."""

    name = "scripted"

    def __init__(self, shared: dict[str, Any]) -> None:
        self.shared = shared

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.shared["calls"] += 1
        if self.shared["calls"] == self.shared["gate_at"]:
            self.shared["reached"].set()
            await self.shared["gate"].wait()
        return ModelResponse(f"{request.agent} done", "gated", "scripted", Usage(3, 4), 0.0)


async def test_the_audit_owner_stopped_and_restarted_mid_run_catches_up(
    tmp_path: Path, temporal_address: str
) -> None:
    config = on_temporal(TeamConfig.model_validate({"agents": _scripted("a", "b", "c")}), temporal_address)
    shared: dict[str, Any] = {"calls": 0, "gate_at": 2, "gate": anyio.Event(), "reached": anyio.Event()}

    def providers(name: str, agent: Any, ctx: RunContext) -> GatedModel:
        return GatedModel(shared)

    db = tmp_path / "audit.db"
    async with worker(config, providers):
        async with Client(build_server(Settings(db=db), config=config)) as client:
            started = await client.call_tool(
                "run_sequential", {"agents": ["a", "b", "c"], "task": "t", "wait_seconds": 0}
            )
            run_id = started.structured_content["run_id"]
            await shared["reached"].wait()
        # the server is gone: the run goes on, its audit writes wait for the server to come back
        shared["gate"].set()
        async with Client(build_server(Settings(db=db), config=config)) as client:
            run = await until_done(client, run_id)
    assert run["status"] == "succeeded" and run["output"] == "c done"
    assert shared["calls"] == 3
    assert rows(db, "select count(*) from events where run_id = ? and kind = 'model_called'", run_id) == [
        (3,)
    ]
    assert verify_chain(db).ok


def _scripted(*names: str, **extra: Any) -> dict[str, Any]:
    return {
        n: {"description": n, "instructions": f"You are {n}.", "model": "scripted", **extra} for n in names
    }


@pytest.mark.parametrize("channel", ["approve_action", "cli"])
async def test_an_approval_reaches_the_run_while_its_worker_restarts(
    tmp_path: Path, temporal_address: str, channel: str
) -> None:
    agents = {
        "v1": {"model": "scripted", "scripted": ["Paris"]},
        "v2": {"model": "scripted", "scripted": ["Lyon"]},
    }
    config_file = write_config(tmp_path, temporal_address, agents)
    db = tmp_path / "audit.db"
    env = dict(os.environ)
    async with Client(build_server(Settings(db=db), config=load_config(config_file))) as client:
        with worker_process(config_file, env, tmp_path / "w1.log") as first:
            parked = (
                await client.call_tool(
                    "run_concurrent",
                    {
                        "agents": ["v1", "v2"],
                        "task": "capital?",
                        "reconcile": "majority",
                        "on_disagreement": "escalate",
                        "wait_seconds": 50,
                    },
                )
            ).structured_content
            assert parked["status"] == "awaiting_approval", parked
            first.kill()
        action = parked["pending"][0]["request_id"]
        if channel == "cli":
            await anyio.run_process(
                [sys.executable, "-m", "server", "approve", action, "--db", str(db), "--reason", "ok"]
            )
        else:
            decided = await client.call_tool("approve_action", {"action_id": action, "decision": "approve"})
            assert not decided.is_error, decided.content
            again = await client.call_tool("approve_action", {"action_id": action, "decision": "approve"})
            assert again.is_error and "already decided" in again.content[0].text
        with worker_process(config_file, env, tmp_path / "w2.log"):
            run = await until_done(client, parked["run_id"])
    assert run["status"] == "succeeded" and run["output"] == "Paris", run
    kinds = [k for (k,) in rows(db, "select kind from events where run_id = ?", run["run_id"])]
    assert kinds.count("input_received") == 1 and kinds.count("approval_decided") == 1
    assert rows(db, "select status from pending_requests where id = ?", action) == [("resolved",)]
    assert verify_chain(db).ok


async def test_cancel_run_cancels_the_workflow(tmp_path: Path, temporal_address: str) -> None:
    slow = {"scripted": {"latency_ms": 600_000}}
    config = on_temporal(TeamConfig.model_validate({"agents": _scripted("slow", **slow)}), temporal_address)
    db = tmp_path / "audit.db"
    async with worker(config), Client(build_server(Settings(db=db), config=config)) as client:
        started = await client.call_tool("delegate_task", {"agent": "slow", "task": "t", "wait_seconds": 0})
        run_id = started.structured_content["run_id"]
        for _ in range(600):  # until the step is under way (a cap, not a timing assumption)
            if rows(db, "select count(*) from events where run_id = ? and kind = 'step_started'", run_id)[0][
                0
            ]:
                break
            await anyio.sleep(0.1)
        cancelled = (await client.call_tool("cancel_run", {"run_id": run_id})).structured_content
        run = cancelled if cancelled["done"] else await until_done(client, run_id)
    assert run["status"] == "cancelled" and run["stop_reason"] == "cancelled"
    assert rows(db, "select status from steps where run_id = ?", run_id) == [("cancelled",)]
    assert verify_chain(db).ok


async def test_the_run_timeout_is_a_workflow_timer(tmp_path: Path, temporal_address: str) -> None:
    slow = {"scripted": {"latency_ms": 600_000}}
    config = on_temporal(TeamConfig.model_validate({"agents": _scripted("slow", **slow)}), temporal_address)
    db = tmp_path / "audit.db"
    async with worker(config), Client(build_server(Settings(db=db), config=config)) as client:
        started = await client.call_tool(
            "run_sequential",
            {"agents": ["slow"], "task": "t", "wait_seconds": 0, "limits": {"run_timeout_s": 1}},
        )
        assert not started.is_error, started.content
        run = await until_done(client, started.structured_content["run_id"])
    assert run["status"] == "stopped" and run["stop_reason"] == "run_timeout_s", run


async def test_a_worker_without_the_model_s_key_fails_the_step_once_with_the_fix(
    tmp_path: Path, temporal_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    agents = {"a": {"description": "a", "instructions": "b", "model": "anthropic:claude-test"}}
    config = on_temporal(TeamConfig.model_validate({"agents": agents}), temporal_address)
    db = tmp_path / "audit.db"
    async with worker(config), Client(build_server(Settings(db=db), config=config)) as client:
        started = await client.call_tool("delegate_task", {"agent": "a", "task": "t", "wait_seconds": 0})
        run = await until_done(client, started.structured_content["run_id"])
    assert run["status"] == "failed" and "needs ANTHROPIC_API_KEY" in run["error"], run
