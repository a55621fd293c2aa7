"""Handoffs: transfers, consults, routes, loop detection and max_handoffs escalation."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from orchestration.audit.log import AuditLog
from orchestration.config import TeamConfig
from orchestration.models.scripted import Reply, ScriptedModel
from orchestration.patterns.handoff import handoff, repeated_cycle
from orchestration.runtime import Runtime
from policies.limits import Limits

pytestmark = pytest.mark.anyio


def config(**routes: list[str]) -> TeamConfig:
    groups = {"a": "north", "b": "north", "c": "south"}
    return TeamConfig.model_validate(
        {
            "agents": {
                n: {
                    "description": f"{n} agent",
                    "instructions": f"You are {n}.",
                    "model": "scripted",
                    "group": groups[n],
                    "routes": routes.get(n, ["*"]),
                }
                for n in ("a", "b", "c")
            }
        }
    )


def transfer(to: str, message: str = "over to you") -> Reply:
    return Reply("", ((f"transfer_to_{to}", {"message": message}),))


async def run(
    db: Path,
    cfg: TeamConfig,
    models: dict[str, ScriptedModel],
    *,
    control: str = "decentralized",
    limits: Limits | None = None,
    start: str = "a",
) -> dict:
    async with Runtime(cfg, AuditLog(db), providers=lambda n, a, c: models[n]) as rt:
        body = handoff(start, "fix the bug", members=list(cfg.agents))
        run_id = await rt.start_run("handoff", "fix the bug", body, control=control, limits=limits)
        return await rt.wait(run_id, 10)


def events(db: Path, run_id: str, kind: str) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [
            r[0]
            for r in conn.execute(
                "select payload from events where run_id = ? and kind = ? order by seq", (run_id, kind)
            )
        ]
    finally:
        conn.close()


def test_repeated_cycle_finds_ping_pong_and_longer_loops() -> None:
    assert repeated_cycle(["a", "b", "a", "b"]) == ["a", "b"]
    assert repeated_cycle(["a", "b", "c", "a", "b", "c"]) == ["a", "b", "c"]
    assert repeated_cycle(["a", "b", "a", "c"]) is None
    assert repeated_cycle(["a", "b", "a"]) is None


async def test_a_transfer_hands_the_task_over_and_the_target_answers(db: Path) -> None:
    models = {
        "a": ScriptedModel([transfer("b", "needs the database expert")]),
        "b": ScriptedModel(["fixed"]),
        "c": ScriptedModel(),
    }
    result = await run(db, config(), models)
    assert result["status"] == "succeeded" and result["output"] == "fixed"
    offered = {t.name for t in models["a"].requests[0].tools}
    assert {"transfer_to_b", "transfer_to_c", "consult_b", "consult_c"} == offered
    b_prompt = models["b"].requests[0].messages[-1].text
    assert "a handed this task to you: needs the database expert" in b_prompt
    assert '"to":"b"' in events(db, result["id"], "handoff")[0]


async def test_a_consult_returns_the_answer_and_nests_under_the_caller(db: Path) -> None:
    models = {
        "a": ScriptedModel([Reply("", (("consult_c", {"message": "which index?"}),)), "done with c's help"]),
        "b": ScriptedModel(),
        "c": ScriptedModel(["use the btree index"]),
    }
    result = await run(db, config(), models)
    assert result["status"] == "succeeded" and result["output"] == "done with c's help"
    tool_result = models["a"].requests[1].messages[-1].tool_results[0]
    assert tool_result.content == "use the btree index"
    conn = sqlite3.connect(db)
    rows = dict(
        conn.execute("select agent, parent_step_id from steps where run_id = ?", (result["id"],)).fetchall()
    )
    a_id = conn.execute("select id from steps where agent = 'a'").fetchone()[0]
    conn.close()
    assert rows["c"] == a_id


async def test_ping_pong_is_caught_before_max_handoffs_and_escalated(db: Path) -> None:
    models = {
        "a": ScriptedModel(respond=lambda r: transfer("b")),
        "b": ScriptedModel(respond=lambda r: transfer("a")),
        "c": ScriptedModel(),
    }
    result = await run(db, config(), models, limits=Limits(max_handoffs=6))
    assert result["status"] == "stopped" and result["stop_reason"] == "loop_detected"
    assert "a -> b -> a -> b" in result["error"] and "escalated back to you" in result["error"]
    assert len(events(db, result["id"], "handoff")) == 3  # caught at the third, limit was six


async def test_max_handoffs_escalates_with_the_partial_result(db: Path) -> None:
    models = {
        "a": ScriptedModel([transfer("b", "step 1")]),
        "b": ScriptedModel([transfer("c", "step 2")]),
        "c": ScriptedModel([transfer("a", "step 3")]),
    }
    result = await run(db, config(), models, limits=Limits(max_handoffs=2))
    assert result["status"] == "stopped" and result["stop_reason"] == "max_handoffs"
    assert result["output"] == "step 3"


async def test_routes_limit_who_is_offered(db: Path) -> None:
    models = {"a": ScriptedModel(["alone"]), "b": ScriptedModel(), "c": ScriptedModel()}
    await run(db, config(a=["c"]), models)
    assert {t.name for t in models["a"].requests[0].tools} == {"transfer_to_c", "consult_c"}


async def test_federated_control_keeps_routes_inside_the_group_unless_listed(db: Path) -> None:
    models = {"a": ScriptedModel(["alone"]), "b": ScriptedModel(), "c": ScriptedModel()}
    await run(db, config(), models, control="federated")
    assert {t.name for t in models["a"].requests[0].tools} == {"transfer_to_b", "consult_b"}
    models = {"a": ScriptedModel(["alone"]), "b": ScriptedModel(), "c": ScriptedModel()}
    await run(db, config(a=["*", "group:south"]), models, control="federated")
    assert "transfer_to_c" in {t.name for t in models["a"].requests[0].tools}


async def test_federated_handoff_passes_only_the_handover_note_across_groups(db: Path) -> None:
    secret = "north-only salary table"
    models = {
        "a": ScriptedModel([transfer("b", f"see {secret}")]),
        "b": ScriptedModel([transfer("c", "please review the fix")]),
        "c": ScriptedModel(["reviewed"]),
    }
    result = await run(db, config(b=["*", "c"]), models, control="federated")
    assert result["status"] == "succeeded"
    seen_by_c = (
        " ".join(m.text for req in models["c"].requests for m in req.messages)
        + models["c"].requests[0].system
    )
    assert secret not in seen_by_c and "please review the fix" in seen_by_c


async def test_a_handoff_rebuilt_from_its_recipe_starts_with_the_same_agent_and_context(db: Path) -> None:
    from orchestration.patterns.handoff import recipe
    from orchestration.patterns.registry import build

    models = {"a": ScriptedModel(), "b": ScriptedModel(["b answers"]), "c": ScriptedModel()}
    spec = recipe("b", ["a", "b", "c"], "the logs say X")
    assert spec["members"] == ["b", "a", "c"]
    async with Runtime(config(), AuditLog(db), providers=lambda n, a, c: models[n]) as rt:
        body = build(spec["pattern"], spec["members"], "fix it", spec["options"])
        result = await rt.wait(await rt.start_run("handoff", "fix it", body, control="decentralized"), 5)
    assert result["output"] == "b answers"
    assert "the logs say X" in models["b"].requests[0].messages[-1].text
