"""Budgets reserve the worst case of the next call, and actual use past a budget is recorded."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from orchestration.audit.log import AuditLog
from orchestration.context import Outcome, RunContext
from orchestration.guard import Budget
from orchestration.models.base import Message, ModelRequest, ToolSpec, Usage
from orchestration.models.scripted import ScriptedModel
from orchestration.runtime import Runtime
from policies.limits import Limits
from tests.conftest import team

pytestmark = pytest.mark.anyio


def runtime(db: Path, model: ScriptedModel, max_tokens: int) -> Runtime:
    config = team(a={"model": "scripted", "max_tokens": max_tokens})
    return Runtime(config, AuditLog(db), providers=lambda name, agent, ctx: model)


async def steps(ctx: RunContext) -> Outcome:
    for i in range(3):
        await ctx.step("a", f"turn {i}", key=str(i))
    return Outcome("three turns")


def events(db: Path, kind: str) -> list[dict]:
    conn = sqlite3.connect(db)
    try:
        return [json.loads(p) for (p,) in conn.execute("select payload from events where kind = ?", (kind,))]
    finally:
        conn.close()


async def test_the_projection_counts_the_reply_budget_and_the_tool_schemas() -> None:
    schema = {"type": "object", "properties": {f"field_{i}": {"type": "string"} for i in range(100)}}
    tool = ToolSpec("files__search", "Search the files. " * 20, schema)
    request = ModelRequest(
        system="s" * 400, messages=(Message("user", "u" * 400),), tools=(tool,), max_tokens=1500, agent="a"
    )
    schema_tokens = (len(json.dumps(schema)) + len(tool.description) + len(tool.name)) // 4
    assert Budget(Limits()).projected_tokens(request) >= 1500 + 200 + schema_tokens


async def test_a_call_whose_reply_could_overshoot_the_budget_is_not_made(db: Path) -> None:
    model = ScriptedModel(["never"])
    async with runtime(db, model, max_tokens=2048) as rt:
        run = await rt.wait(await rt.start_run("custom", "t", steps, limits=Limits(max_tokens=1000)), 10)
    assert run["status"] == "stopped" and run["stop_reason"] == "max_tokens"
    assert "needs about 20" in run["error"] and run["input_tokens"] is None  # no call was paid for
    assert events(db, "model_called") == []


async def test_actual_use_past_the_budget_is_recorded_and_stops_the_next_step(db: Path) -> None:
    # the projection (a short prompt + 800) fits 1000; the reply reports 920 + 800 = 1720 tokens
    model = ScriptedModel(["big"], usage=Usage(input_tokens=920, output_tokens=800))
    async with runtime(db, model, max_tokens=800) as rt:
        run = await rt.wait(await rt.start_run("custom", "t", steps, limits=Limits(max_tokens=1000)), 10)
    (exceeded,) = events(db, "budget_exceeded")
    assert exceeded == {"agent": "a", "limit": "max_tokens", "used": 1720, "max": 1000}
    assert run["status"] == "stopped" and run["stop_reason"] == "max_tokens"
    assert run["input_tokens"] + run["output_tokens"] == 1720
