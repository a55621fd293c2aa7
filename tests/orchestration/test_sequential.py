"""Sequential chains, checkpoints, and teams nested as agents (hierarchical)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from orchestration.audit.log import AuditLog
from orchestration.config import TeamConfig
from orchestration.models.base import ModelRequest
from orchestration.models.scripted import ScriptedModel
from orchestration.patterns.sequential import Checkpoint, sequential
from orchestration.runtime import Runtime
from policies.limits import Limits
from tests.conftest import team

pytestmark = pytest.mark.anyio


def echo(request: ModelRequest) -> str:
    return f"{request.agent}<{request.messages[-1].text.splitlines()[0]}>"


class PerAgent:
    """One scripted model per agent, so each agent's calls can be inspected."""

    def __init__(self, **models: ScriptedModel) -> None:
        self.models = models

    def __call__(self, name, agent, ctx):
        return self.models.setdefault(name, ScriptedModel(respond=echo))


async def run(db: Path, config: TeamConfig, body, providers, limits: Limits | None = None) -> dict:
    async with Runtime(config, AuditLog(db), providers=providers) as rt:
        return await rt.wait(await rt.start_run("sequential", "task", body, limits=limits), 10)


def steps(db: Path, run_id: str) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("select * from steps where run_id = ? order by rowid", (run_id,)).fetchall()
    finally:
        conn.close()


TEAM = team(
    a={"model": "scripted"}, b={"model": "scripted"}, c={"model": "scripted"}, check={"model": "scripted"}
)


async def test_each_output_is_the_next_input(db: Path) -> None:
    models = PerAgent()
    result = await run(db, TEAM, sequential(["a", "b", "c"], "write a poem"), models)
    assert result["status"] == "succeeded"
    assert result["output"] == "c<write a poem>"
    b_prompt = models.models["b"].requests[0].messages[-1].text
    assert "a<write a poem>" in b_prompt and '<previous agent="a">' in b_prompt
    assert [s["key"] for s in steps(db, result["id"])] == ["0.a", "1.b", "2.c"]


async def test_a_failed_rule_checkpoint_stops_the_chain_before_the_next_agent(db: Path) -> None:
    models = PerAgent(a=ScriptedModel(["TODO: fill in later"]))
    body = sequential(["a", "b"], "draft", Checkpoint(must_not_match="TODO"))
    result = await run(db, TEAM, body, models)
    assert result["status"] == "stopped" and result["stop_reason"] == "checkpoint_failed"
    assert "matches 'TODO'" in result["error"] and "before b" in result["error"]
    assert result["output"] == "TODO: fill in later"
    assert "b" not in models.models


async def test_a_check_agent_can_fail_an_output(db: Path) -> None:
    models = PerAgent(check=ScriptedModel(["PASS", "FAIL: the numbers do not add up"]))
    body = sequential(["a", "b", "c"], "report", Checkpoint(agent="check"))
    result = await run(db, TEAM, body, models)
    assert result["status"] == "stopped"
    assert "check said: the numbers do not add up" in result["error"] and "before c" in result["error"]
    assert [s["agent"] for s in steps(db, result["id"])] == ["a", "check", "b", "check"]


async def test_a_failing_agent_fails_the_run_with_its_reason(db: Path) -> None:
    class Broken:
        name = "scripted"

        async def complete(self, request):
            from orchestration.errors import ProviderError

            raise ProviderError("the model is down", kind="server")

    models = PerAgent(b=Broken())  # type: ignore[arg-type]
    result = await run(db, TEAM, sequential(["a", "b", "c"], "t"), models)
    assert result["status"] == "failed" and "agent 'b' failed: the model is down" in result["error"]
    assert result["output"] == "a<t>"  # the partial result


NESTED = TeamConfig.model_validate(
    {
        "agents": {
            n: {"description": n, "instructions": n, "model": "scripted"} for n in ("lead", "x", "y", "z")
        },
        "teams": {
            "inner": {"description": "x then y", "pattern": "sequential", "agents": ["x", "y"]},
            "outer": {"description": "inner then z", "pattern": "sequential", "agents": ["inner", "z"]},
        },
    }
)


async def test_a_team_runs_as_one_agent_with_its_steps_nested_under_it(db: Path) -> None:
    models = PerAgent()
    result = await run(db, NESTED, sequential(["lead", "outer"], "plan the launch"), models)
    assert result["status"] == "succeeded", result
    rows = {s["key"]: s for s in steps(db, result["id"])}
    assert set(rows) == {
        "0.lead",
        "1.outer",
        "1.outer/0.inner",
        "1.outer/0.inner/0.x",
        "1.outer/0.inner/1.y",
        "1.outer/1.z",
    }
    assert rows["1.outer"]["provider"] == "team" and rows["1.outer"]["parent_step_id"] is None
    assert rows["1.outer/0.inner"]["parent_step_id"] == rows["1.outer"]["id"]
    assert rows["1.outer/0.inner/0.x"]["parent_step_id"] == rows["1.outer/0.inner"]["id"]
    assert rows["1.outer/1.z"]["parent_step_id"] == rows["1.outer"]["id"]
    # scoped context: the inner team sees only what its parent handed it, not the lead's instructions
    x_request = models.models["x"].requests[0]
    assert x_request.system == "x" and len(x_request.messages) == 1


async def test_max_depth_stops_teams_nested_too_deep(db: Path) -> None:
    result = await run(db, NESTED, sequential(["outer"], "t"), PerAgent(), limits=Limits(max_depth=1))
    assert result["status"] == "stopped" and result["stop_reason"] == "max_depth"
    statuses = {s["key"]: s["status"] for s in steps(db, result["id"])}
    assert statuses["0.outer"] == "stopped"
