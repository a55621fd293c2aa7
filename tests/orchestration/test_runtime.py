"""Runs through the core without MCP: lifecycle, failures, guardrails, restart."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest

from orchestration.audit.log import AuditLog
from orchestration.context import Outcome, RunContext
from orchestration.errors import ProviderError
from orchestration.models.base import ModelRequest, ModelResponse
from orchestration.models.scripted import ScriptedModel
from orchestration.patterns.delegate import delegate
from orchestration.runtime import Runtime
from policies.limits import Limits
from tests.conftest import team

pytestmark = pytest.mark.anyio

TEAM = team(a={"model": "scripted", "max_tokens": 60}, b={"model": "scripted"})  # replies fit budgets


class Failing:
    name = "anthropic"

    def __init__(self, error: ProviderError) -> None:
        self.error = error

    async def complete(self, request: ModelRequest) -> ModelResponse:
        raise self.error


def runtime(db: Path, model: object | None = None) -> Runtime:
    providers = (lambda name, agent, ctx: model) if model is not None else None
    return Runtime(TEAM, AuditLog(db), providers=providers)  # type: ignore[arg-type]


async def test_provider_error_fails_the_run_with_its_message(db: Path) -> None:
    error = ProviderError("the Anthropic API is rate limiting (429); retry later", kind="rate_limit")
    async with runtime(db, Failing(error)) as rt:
        run = await rt.wait(await rt.start_run("delegate", "t", delegate("a", "t")), 5)
    assert run["status"] == "failed" and run["stop_reason"] == "step_failed"
    assert "rate limiting (429)" in run["error"] and "agent 'a' failed" in run["error"]


async def test_step_timeout_fails_the_step_and_the_run_cleanly(db: Path) -> None:
    async with runtime(db, ScriptedModel(latency=5)) as rt:
        limits = Limits(step_timeout_s=0.2)
        run = await rt.wait(await rt.start_run("delegate", "t", delegate("a", "t"), limits=limits), 5)
    assert run["status"] == "failed" and "timed out after 0.2 s" in run["error"]


async def test_run_timeout_stops_the_run_with_the_partial_result(db: Path) -> None:
    async def two_steps(ctx: RunContext) -> Outcome:
        await ctx.step("a", "first", key="1")
        await ctx.step("b", "second", key="2")
        return Outcome("never")

    model = ScriptedModel(["first done"], respond=lambda r: "late", latency=0.3)
    async with runtime(db, model) as rt:
        limits = Limits(run_timeout_s=0.45)
        run = await rt.wait(await rt.start_run("custom", "t", two_steps, limits=limits), 5)
    assert run["status"] == "stopped" and run["stop_reason"] == "run_timeout_s"
    assert run["output"] == "first done"


async def test_max_steps_stops_the_run_with_a_reason_in_the_audit(db: Path) -> None:
    async def loop(ctx: RunContext) -> Outcome:
        for i in range(10):
            await ctx.step("a", f"turn {i}", key=str(i))
        return Outcome("never")

    async with runtime(db, ScriptedModel()) as rt:
        run = await rt.wait(await rt.start_run("custom", "t", loop, limits=Limits(max_steps=3)), 5)
    assert run["status"] == "stopped" and run["stop_reason"] == "max_steps"
    assert "max_steps" in run["error"] and run["output"].endswith("turn 2")
    conn = sqlite3.connect(db)
    assert conn.execute("select count(*) from steps where run_id = ?", (run["id"],)).fetchone()[0] == 3
    conn.close()


async def test_token_budget_stops_the_run(db: Path) -> None:
    async def loop(ctx: RunContext) -> Outcome:
        for i in range(10):
            await ctx.step("a", f"turn {i}", key=str(i))
        return Outcome("never")

    async with runtime(db, ScriptedModel()) as rt:  # 100 tokens per call
        run = await rt.wait(await rt.start_run("custom", "t", loop, limits=Limits(max_tokens=250)), 5)
    assert run["status"] == "stopped" and run["stop_reason"] == "max_tokens"
    # the next call's projected usage is reserved first, so the budget is never overshot
    assert run["input_tokens"] + run["output_tokens"] == 200


async def test_budget_pause_asks_a_human_to_extend_and_resumes(db: Path) -> None:
    async def loop(ctx: RunContext) -> Outcome:
        ctx.budget.on_budget = "ask"
        for i in range(3):
            await ctx.step("a", f"turn {i}", key=str(i))
        return Outcome("all three turns")

    async with runtime(db, ScriptedModel()) as rt:
        run_id = await rt.start_run("custom", "t", loop, limits=Limits(max_tokens=250))
        parked = await rt.wait(run_id, 5, wake_on_pending=("approval",))
        assert parked["status"] == "awaiting_approval"
        (request,) = rt.pending.open_for(run_id, "approval")
        assert (
            request.payload["tool"] == "budget.extend"
            and "extend max_tokens by 250" in request.payload["reason"]
        )
        await rt.approvals.decide(request.id, "approve", "fine", channel="tool")
        run = await rt.wait(run_id, 5)
    assert run["status"] == "succeeded" and run["output"] == "all three turns"


async def test_a_second_server_on_the_same_database_leaves_live_runs_alone(db: Path) -> None:
    async with runtime(db, ScriptedModel(latency=0.5)) as first:
        run_id = await first.start_run("delegate", "t", delegate("a", "t"))
        async with runtime(db, ScriptedModel()) as second:
            assert second.get_run(run_id)["status"] == "running"
        assert (await first.wait(run_id, 5))["status"] == "succeeded"


async def test_a_crashing_pattern_fails_its_run_not_the_runtime(db: Path) -> None:
    async def broken(ctx: RunContext) -> Outcome:
        raise RuntimeError("bug in a pattern")

    async with runtime(db, ScriptedModel()) as rt:
        bad = await rt.wait(await rt.start_run("custom", "t", broken), 5)
        good = await rt.wait(await rt.start_run("delegate", "t", delegate("a", "t")), 5)
    assert bad["status"] == "failed" and "bug in a pattern" in bad["error"]
    assert good["status"] == "succeeded"


async def test_runs_left_running_by_a_crash_are_marked_interrupted(db: Path) -> None:
    async with runtime(db, ScriptedModel(latency=30)) as rt:
        run_id = await rt.start_run("delegate", "t", delegate("a", "t"))
        await rt.wait(run_id, 0.1)
    # leaving the runtime stops the run as "interrupted" (server shutdown)
    async with runtime(db, ScriptedModel()) as rt:
        run = rt.get_run(run_id)
    assert run["status"] == "interrupted" and run["stop_reason"] == "server_shutdown"
    # a row left 'running' by a process that died is marked at the next start
    conn = sqlite3.connect(db)
    with conn:
        # as if a server process that has since died had left it running
        conn.execute(
            "update runs set status = 'running', stop_reason = null, owner = ? where id = ?",
            (f"{socket.gethostname()}:99999999", run_id),
        )
    conn.close()
    async with runtime(db, ScriptedModel()) as rt:
        run = rt.get_run(run_id)
    assert run["status"] == "interrupted" and run["stop_reason"] == "server_restart"
